"""The callbacks know nothing of Breakout: plain SB3 DQN on CartPole-v1 with all four of them."""

from __future__ import annotations

import csv

from stable_baselines3 import DQN
from stable_baselines3.common.env_util import make_vec_env

from callbacks import (
    CSV_HEADER,
    CSVStatsCallback,
    EpisodeCheckpointCallback,
    StopTrainingOnRunningScore,
    TwoPhaseEpsilonCallback,
    latest_checkpoint,
)
from callbacks.checkpoint import Checkpoint, find_checkpoints


def test_all_callbacks_on_plain_sb3_dqn_cartpole(tmp_path):
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0, monitor_dir=str(tmp_path))
    model = DQN("MlpPolicy", env, buffer_size=5_000, learning_starts=100, seed=0, device="cpu")
    epsilon = TwoPhaseEpsilonCallback(random_steps=500, first_decay_steps=1_000, second_decay_steps=2_000)
    stats = CSVStatsCallback(window=10)  # no folder given: the Monitor's
    stop = StopTrainingOnRunningScore(threshold=1e9, window=10)
    checkpoint = EpisodeCheckpointCallback(save_freq_episodes=20)
    model.learn(4_000, callback=[epsilon, stats, stop, checkpoint])

    with open(tmp_path / "training_stats.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == CSV_HEADER
    assert len(rows) - 1 == stats.episode == stop.episodes == checkpoint.episodes >= 40
    assert int(rows[-1][4]) <= 4_000
    assert float(rows[-1][2]) < 1.0  # epsilon decayed with the env steps of both envs
    checkpoints = find_checkpoints(tmp_path)
    assert len(checkpoints) == 2  # keep_last
    newest = latest_checkpoint(tmp_path)  # the end of training's
    assert newest.num_timesteps == 4_000 and newest.episodes == stats.episode
    assert Checkpoint.read(checkpoints[1]).episodes == stats.episode // 20 * 20  # every 20 episodes before it
    assert DQN.load(newest.model_path, device="cpu").num_timesteps == newest.num_timesteps
