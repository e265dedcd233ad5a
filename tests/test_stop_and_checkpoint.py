"""StopTrainingOnRunningScore and EpisodeCheckpointCallback on the real Breakout env."""

from __future__ import annotations

import csv

import pytest
from stable_baselines3 import DQN

from callbacks import CSVStatsCallback, EpisodeCheckpointCallback, StopTrainingOnRunningScore
from tests.conftest import breakout_env, small_breakout_dqn


def test_stops_with_a_saved_model_when_the_running_score_exceeds_the_threshold(tmp_path):
    env = breakout_env()
    model = small_breakout_dqn(env)
    csv_callback = CSVStatsCallback(log_dir=str(tmp_path), window=2)
    stop = StopTrainingOnRunningScore(threshold=-1.0, window=2, log_dir=str(tmp_path))
    model.learn(5_000, callback=[csv_callback, stop])
    env.close()
    assert stop.solved
    assert stop.episodes == 2
    assert model.num_timesteps < 5_000
    with open(tmp_path / "training_stats.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    # It judged exactly the Running Reward the CSV reports.
    assert len(rows) == 2
    assert float(rows[-1][7]) == pytest.approx(stop.running_score, abs=1e-4)
    saved = DQN.load(tmp_path / "solved_model.zip", device="cpu")
    assert saved.num_timesteps == model.num_timesteps


def test_does_not_stop_below_the_threshold_or_before_a_full_window(tmp_path):
    env = breakout_env()
    model = small_breakout_dqn(env)
    stop = StopTrainingOnRunningScore(threshold=-1.0, window=100, log_dir=str(tmp_path))
    never = StopTrainingOnRunningScore(threshold=1000.0, window=1, log_dir=str(tmp_path), model_name="never.zip")
    model.learn(600, callback=[stop, never])
    env.close()
    assert 0 < stop.episodes < 100
    assert not stop.solved and not never.solved
    assert model.num_timesteps == 600
    assert not (tmp_path / "solved_model.zip").exists()


def test_checkpoints_every_n_games_atomically(tmp_path):
    env = breakout_env()
    model = small_breakout_dqn(env)
    checkpoint = EpisodeCheckpointCallback(save_freq_episodes=2, log_dir=str(tmp_path))
    model.learn(1_200, callback=checkpoint)
    env.close()
    assert checkpoint.episodes >= 4
    names = sorted(p.name for p in tmp_path.iterdir())
    expected = [f"model_episode_{n}.zip" for n in range(2, checkpoint.episodes + 1, 2)]
    assert names == sorted(expected), "no temporary file may be left behind"
    saved = DQN.load(tmp_path / "model_episode_2.zip", device="cpu")
    # The zip holds the target network beside the online one, and the optimizer.
    state = saved.policy.state_dict()
    assert any(k.startswith("q_net_target.") for k in state)
    assert saved.policy.optimizer.state_dict()["state"]
    assert 0 < saved.num_timesteps < model.num_timesteps


def test_a_crash_while_saving_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    env = breakout_env()
    model = small_breakout_dqn(env)
    checkpoint = EpisodeCheckpointCallback(save_freq_episodes=1, log_dir=str(tmp_path))
    model.learn(300, callback=checkpoint)
    first = tmp_path / "model_episode_1.zip"
    before = first.read_bytes()

    def crash(path, *args, **kwargs):
        path.write(b"half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(model, "save", crash)
    checkpoint.episodes = 0  # the next finished game is number 1 again, so it would overwrite the first zip
    with pytest.raises(OSError, match="disk full"):
        model.learn(600, callback=checkpoint, reset_num_timesteps=False)
    env.close()
    assert first.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model_episode_1.zip"]
    assert DQN.load(first, device="cpu").num_timesteps > 0
