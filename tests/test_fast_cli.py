"""The fast configuration through the CLI: train --fast, resume, evaluate, and its statistics beside vanilla's."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from stable_baselines3 import DQN

from breakout_sb3 import ENV_ID
from breakout_sb3.fast import FrameStackReplayBuffer
from callbacks import TwoPhaseEpsilonSchedule, latest_checkpoint, read_replay_buffer
from tests.conftest import run_cli, run_clis_at_once, write_config

FAST_PARAMS = ["-params", "buffer_size:3000", "n_envs:4", "gradient_steps:1"]  # the recipe's ratio with 4 envs


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))[1:]


def fast_runs(log_folder):
    return sorted((log_folder / "fast_dqn").glob(f"{ENV_ID}_*"))


def test_train_fast_resume_and_evaluate(tmp_path):
    result = run_cli("train", "--fast", "-n", "800", "--save-freq", "400", "-f", "logs", *FAST_PARAMS, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = fast_runs(tmp_path / "logs")
    model = DQN.load(run / f"{ENV_ID}.zip", device="cpu")  # plain DQN opens a FastDQN zip
    assert model.num_timesteps == 800
    assert model.n_envs == 4
    # one gradient step per vector step of 4 envs once the replay holds more than 32 transitions
    assert model._n_updates == (800 - 36) // 4 + 1
    checkpoint = latest_checkpoint(run)
    assert checkpoint.num_timesteps == 800 and checkpoint.has_replay_buffer
    replay = read_replay_buffer(checkpoint.replay_path)
    assert isinstance(replay, FrameStackReplayBuffer) and replay.size() * 4 == 800

    result = run_cli("resume", str(run), "-n", "400", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert DQN.load(run / f"{ENV_ID}.zip", device="cpu").num_timesteps == 1200

    result = run_cli("evaluate", str(run), "--episodes", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 games of BreakoutNoFrameskip-v4" in result.stdout


def test_fast_csv_follows_vanillas_statistics(tmp_path):
    """A test-sized check that the fast configuration's CSV has vanilla's statistics for the same schedule."""
    epsilon = {"random_steps": 300, "first_decay_steps": 1_500, "second_decay_steps": 1_500}
    conf = write_config(
        tmp_path,
        callbacks=[{"callbacks.TwoPhaseEpsilonCallback": epsilon}, "callbacks.CSVStatsCallback"],
        fast={"vec_env": "ale", "n_envs": 4, "train_freq": 1, "gradient_steps": 1},
    )
    common = ["--conf-file", str(conf), "-n", "2500", "-params", "buffer_size:2500"]
    commands = [["train", *extra, *common, "-f", name] for name, extra in (("vanilla", []), ("fast", ["--fast"]))]
    for result in run_clis_at_once(*commands, cwd=tmp_path):
        assert result.returncode == 0, result.stderr[-3000:]
    (vanilla_run,) = (tmp_path / "vanilla" / "dqn").glob(f"{ENV_ID}_*")
    (fast_run,) = fast_runs(tmp_path / "fast")
    schedule = TwoPhaseEpsilonSchedule(**epsilon)
    stats = {}
    for name, run, n_envs in (("vanilla", vanilla_run, 1), ("fast", fast_run, 4)):
        rows = read_rows(run / "training_stats.csv")
        frames = np.array([int(r[4]) for r in rows])
        assert len(rows) >= 8
        for row in rows:
            # the epsilon of the step before the game's last: within one vector step of the schedule
            allowed = {round(schedule.value(int(row[4]) - k), 6) for k in range(1, n_envs + 1)}
            assert round(float(row[2]), 6) in allowed
            assert abs(int(row[6]) - (int(row[4]) - 36) / 4) <= n_envs  # one update per 4 agent steps
        # agent steps per game: all envs' steps over the games, each env's unfinished last game counted as half
        stats[name] = (np.mean([float(r[1]) for r in rows]), frames[-1] / (len(rows) + n_envs / 2))
    (vanilla_score, vanilla_length), (fast_score, fast_length) = stats["vanilla"], stats["fast"]
    # mostly random play at this length: about 1.4 points and 180 agent steps per game in both
    assert fast_score == pytest.approx(vanilla_score, abs=1.2)
    assert 110 < vanilla_length < 280 and 110 < fast_length < 280
