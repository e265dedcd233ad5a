"""A run never loses or forks its data: one writer per run folder, a checkpoint at every end of training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from stable_baselines3 import DQN
from stable_baselines3.common.env_util import make_vec_env

from breakout_sb3 import ENV_ID
from breakout_sb3.run_lock import LOCK_FILE
from callbacks import CSVStatsCallback, latest_checkpoint
from callbacks.checkpoint import find_checkpoints
from tests.conftest import run_cli, run_clis_at_once, run_folders
from tests.test_resume import assert_one_run, read_csv, small_run_config, wait_for


def train_args(conf: Path, *args: str) -> list[str]:
    return ["train", "--conf-file", str(conf), "-f", "logs", "--no-progress", *args]


def side_files(run: Path) -> list[str]:
    """The files that rows moved aside would be in."""
    return sorted(p.name for p in run.glob("*.after_*"))


def test_train_end_then_resume_then_resume_continues_each_time(tmp_path):
    """A run that ends normally (here after fewer than 100 games) is a checkpoint, and resume continues from it."""
    conf = small_run_config(tmp_path, save_freq_episodes=100)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}  # where SB3's logger would leave an empty SB3-<date> folder
    result = subprocess.run(
        [sys.executable, "-m", "breakout_sb3", *train_args(conf, "-n", "300")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = run_folders(tmp_path / "logs")
    assert latest_checkpoint(run).num_timesteps == 300
    # the CSV's clock at the end is kept, for the resumed rows' Training Time to continue from it
    (csv_state,) = [s for k, s in latest_checkpoint(run).state.callbacks.items() if k.startswith("CSVStats")]
    last_row_time = float(read_csv(run / "training_stats.csv")[-1][8])
    assert csv_state["training_time"] >= last_row_time > 0
    assert f"Continue this run with: breakout-sb3 resume {run.relative_to(tmp_path)} -n STEPS" in result.stdout

    for start in (300, 500):
        result = run_cli("resume", str(run), "-n", "200", "--no-progress", cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"from step_{start:010d}: step {start}, " in result.stdout
        checkpoint = latest_checkpoint(run)
        assert checkpoint.num_timesteps == start + 200
        assert DQN.load(run / f"{ENV_ID}.zip", device="cpu").num_timesteps == start + 200
    assert side_files(run) == [], "nothing was moved aside"
    assert_one_run(read_csv(run / "training_stats.csv"))
    assert [p.name for p in find_checkpoints(run)] == ["step_0000000700", "step_0000000500", "step_0000000300"]
    # SB3's logger makes a <tmp>/SB3-<date> folder for each learn() it configures (torch keeps one cache folder there)
    assert list(tmp.glob("SB3-*")) == [], "a run writes only into its run folder"

    # Monitor's clock continues over the resumes: load_results sees one run whose times never go back.
    monitor = pd.read_csv(run / "0.monitor.csv", skiprows=1)
    assert len(monitor) >= 2 and np.all(np.diff(monitor["t"]) >= 0)

    # The run reached its total: resume without -n says so in one line.
    result = run_cli("resume", str(run), cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip() == (
        f"breakout-sb3: error: {run} already reached its 700 steps"
    )


def test_a_second_writer_is_refused_and_changes_nothing(tmp_path):
    conf = small_run_config(tmp_path)
    result = run_cli(*train_args(conf, "-n", "200"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = run_folders(tmp_path / "logs")
    first = subprocess.Popen(
        [sys.executable, "-m", "breakout_sb3", "resume", str(run), "-n", "20000", "--no-progress"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # the first writer holds the lock and has written rows and a checkpoint of its own
        wait_for(lambda: latest_checkpoint(run).num_timesteps > 200)
        second = run_cli("resume", str(run), "-n", "100", cwd=tmp_path)
        assert second.returncode == 2
        (line,) = second.stderr.strip().splitlines()
        assert line.startswith(f"breakout-sb3: error: {run} is being written by pid {first.pid} on ")
        assert f"'breakout-sb3 resume {run} -n 20000 --no-progress', since " in line
        assert line.endswith("; one writer per run")
        assert "Resuming" not in second.stdout and side_files(run) == [], "nothing read for resuming, nor moved"

        # kill -9 releases the lock: the run is resumed from its last checkpoint
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        holder = json.loads((run / LOCK_FILE).read_text())
        assert holder["pid"] == first.pid  # the file stays; the kernel's lock is gone
        result = run_cli("resume", str(run), "-n", "100", "--no-progress", cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
    finally:
        first.kill()
        first.communicate()


def test_two_trainings_started_at_once_write_two_run_folders(tmp_path):
    conf = small_run_config(tmp_path)
    results = run_clis_at_once(train_args(conf, "-n", "100"), train_args(conf, "-n", "100"), cwd=tmp_path)
    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]
    runs = run_folders(tmp_path / "logs")
    assert [run.name for run in runs] == [f"{ENV_ID}_1", f"{ENV_ID}_2"]
    for run in runs:
        assert latest_checkpoint(run).num_timesteps == 100
        assert_one_run(read_csv(run / "training_stats.csv"))


def test_rows_of_episodes_ending_in_one_vector_step_have_a_frame_rate(tmp_path):
    """With many envs, several episodes end in the same vector step: each row's rate is over a non-empty interval."""
    env = make_vec_env("CartPole-v1", n_envs=16, seed=0)
    model = DQN("MlpPolicy", env, learning_starts=10_000, buffer_size=1_000, seed=0, device="cpu")
    callback = CSVStatsCallback(log_dir=str(tmp_path), tensorboard_prefix=None)
    model.learn(3_000, callback=callback)
    rows = read_csv(tmp_path / "training_stats.csv")[1:]
    steps = [int(row[4]) for row in rows]
    assert len(steps) - len(set(steps)) >= 5, "some episodes ended in the same vector step"
    assert all(float(row[5]) > 0 for row in rows)
