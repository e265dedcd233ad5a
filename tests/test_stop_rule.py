"""The recipe's stop rule judges what the tutorial judged: the 100-episode mean of clipped reward per life."""

from __future__ import annotations

import csv

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.atari_wrappers import AtariWrapper
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecFrameStack

from callbacks import CSVStatsCallback, StopTrainingOnRunningScore
from tests.conftest import recipe, recipe_kwargs

LIVES = 5
# Frames before a life's first brick: more than AtariWrapper's unseen steps at a game's start (up to 30 no-ops, then
# FIRE and RIGHT) or after a life lost (NOOP, FIRE, RIGHT: 12 frames), so every brick is seen by the learner.
SERVE_FRAMES = 48
# Frames between two bricks: more than one agent step (frame skip 4), so no agent step sums two bricks.
BRICK_FRAMES = 8
BRICK_POINTS = (1, 4, 7)  # Breakout's rows score 1, 4 or 7 points: clipped, each brick counts 1


class _Lives:
    def __init__(self, env: ScriptedBreakout):
        self.env = env

    def lives(self) -> int:
        return self.env.lives


class ScriptedBreakout(gym.Env):
    """
    An Atari-like env with Breakout's interface (210x160 RGB frames, NOOP/FIRE/RIGHT/LEFT, ``ale.lives()``) that
    plays a scripted player, whatever the actions: each life breaks ``bricks_per_life`` bricks, then loses the ball.
    """

    def __init__(self, bricks_per_life: int):
        self.bricks_per_life = bricks_per_life
        self.observation_space = spaces.Box(0, 255, (210, 160, 3), dtype=np.uint8)
        self.action_space = spaces.Discrete(4)
        self.ale = _Lives(self)
        self.lives = LIVES
        self.frame = 0
        self.bricks = 0

    def get_action_meanings(self) -> list[str]:
        return ["NOOP", "FIRE", "RIGHT", "LEFT"]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.lives, self.frame, self.bricks = LIVES, 0, 0
        return self._obs(), {"lives": self.lives}

    def step(self, action):
        self.frame += 1
        reward, terminated = 0.0, False
        since_serve = self.frame - SERVE_FRAMES
        if since_serve >= 0 and since_serve % BRICK_FRAMES == 0:
            if self.bricks < self.bricks_per_life:
                reward = float(BRICK_POINTS[self.bricks % len(BRICK_POINTS)])
                self.bricks += 1
            else:  # the ball is lost
                self.lives -= 1
                self.frame, self.bricks = 0, 0
                terminated = self.lives == 0
        return self._obs(), reward, terminated, False, {"lives": self.lives}

    def _obs(self) -> np.ndarray:
        obs = np.zeros((210, 160, 3), dtype=np.uint8)
        obs[50, : self.bricks + 1] = 200
        return obs


def raw_game_score(bricks_per_life: int) -> float:
    points = [BRICK_POINTS[i % len(BRICK_POINTS)] for i in range(bricks_per_life)]
    return float(sum(points) * LIVES)


def recipe_callback(name: str, **overrides) -> dict:
    """The kwargs hyperparams/dqn.yml gives the callback ``name``."""
    for entry in recipe()["callback"]:
        if isinstance(entry, dict) and f"callbacks.{name}" in entry:
            return {**entry[f"callbacks.{name}"], **overrides}
    raise KeyError(name)


def play(tmp_path, bricks_per_life: int, steps: int):
    """The scripted player through the recipe's AtariWrapper and frame stack, with the recipe's CSV and stop rule."""
    (wrapper,) = recipe()["env_wrapper"]
    env = VecFrameStack(
        make_vec_env(
            lambda: ScriptedBreakout(bricks_per_life),
            monitor_dir=str(tmp_path),
            wrapper_class=AtariWrapper,
            wrapper_kwargs=wrapper["stable_baselines3.common.atari_wrappers.AtariWrapper"],
            seed=42,
        ),
        recipe()["frame_stack"],
    )
    # No learning needed: no gradient step (learning_starts beyond the run), a small replay.
    model = DQN("CnnPolicy", env, **recipe_kwargs(buffer_size=1_000, learning_starts=10**9))
    stats = CSVStatsCallback(**recipe_callback("CSVStatsCallback", tensorboard_prefix=None), log_dir=str(tmp_path))
    stop = StopTrainingOnRunningScore(**recipe_callback("StopTrainingOnRunningScore"), log_dir=str(tmp_path))
    model.learn(steps, callback=[stats, stop])
    env.close()
    with open(tmp_path / "training_stats.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    with open(tmp_path / "0.monitor.csv", newline="") as f:
        games = list(csv.reader(f))[2:]
    return model, stop, rows, games


def test_a_player_of_55_clipped_points_per_life_stops_after_100_lives(tmp_path):
    model, stop, rows, games = play(tmp_path, bricks_per_life=55, steps=50_000)
    assert stop.solved
    assert stop.episodes == 100, "the tutorial's episode is one life: the window is full after 100 lives"
    assert model.num_timesteps < 50_000
    assert (tmp_path / "solved_model.zip").is_file()
    # The CSV is the tutorial's: a row per life, its clipped reward, and the Running Reward the rule judged.
    assert len(rows) == 100
    assert {float(row[1]) for row in rows} == {55.0}
    assert float(rows[-1][7]) == pytest.approx(stop.running_score) == 55.0
    # Monitor's file still has the game score: 20 whole games, raw points.
    assert len(games) == 20
    assert {float(game[0]) for game in games} == {raw_game_score(55)}


def test_a_player_of_12_clipped_points_per_life_trains_on(tmp_path):
    # 12 bricks a life, about 260 points a game: far above a game score of 40, far below 40 clipped points a life.
    steps = 160 * (SERVE_FRAMES + BRICK_FRAMES * 13) // 4  # about 160 lives
    model, stop, rows, games = play(tmp_path, bricks_per_life=12, steps=steps)
    assert not stop.solved
    assert model.num_timesteps == steps
    assert not (tmp_path / "solved_model.zip").exists()
    assert len(rows) >= 150 and stop.episodes == len(rows)
    assert {float(row[1]) for row in rows} == {12.0}
    assert float(rows[-1][7]) == pytest.approx(stop.running_score) == 12.0
    assert len(games) == len(rows) // LIVES
    assert {float(game[0]) for game in games} == {raw_game_score(12)}
    assert raw_game_score(12) > 40
