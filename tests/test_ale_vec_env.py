"""AleVecEnv against SB3's Monitor + AtariWrapper + VecFrameStack(4) stack, and against a frame-by-frame ALE replay."""

from __future__ import annotations

import csv
import json

import ale_py
import cv2
import numpy as np
import pytest
import torch
from ale_py import roms
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecFrameStack

import breakout_sb3.env  # noqa: F401  (registers the ALE environments)
from breakout_sb3 import ENV_ID
from breakout_sb3.fast.ale_vec_env import AleVecEnv

NOOP, FIRE, RIGHT, LEFT = 0, 1, 2, 3  # Breakout's minimal action set
A = ale_py.Action
FULL = {NOOP: A.NOOP, FIRE: A.FIRE, RIGHT: A.RIGHT, LEFT: A.LEFT}
WITH_FIRE = {NOOP: A.FIRE, FIRE: A.FIRE, RIGHT: A.RIGHTFIRE, LEFT: A.LEFTFIRE}


def sb3_stack(max_episode_steps: int = 40_000) -> VecFrameStack:
    """SB3's stack as the recipe builds it, without no-ops so that it is deterministic."""
    venv = make_atari_env(
        ENV_ID, n_envs=1, seed=0, wrapper_kwargs=dict(noop_max=0), env_kwargs=dict(max_episode_steps=max_episode_steps)
    )
    return VecFrameStack(venv, 4)


def policy(ram: np.ndarray, rng: np.random.Generator, noise: float) -> int:
    """Follows the ball with the paddle (RAM 99: ball x, 72: paddle x), with some random moves; never FIRE."""
    if rng.random() < noise:
        return int(rng.choice([NOOP, RIGHT, LEFT]))
    ball_x, paddle_x = int(ram[99]), int(ram[72])
    if ball_x == 0:
        return NOOP
    return RIGHT if ball_x > paddle_x + 8 else LEFT if ball_x < paddle_x else NOOP


def test_interface_and_dqn() -> None:
    env = AleVecEnv(n_envs=2, seed=0, max_episode_steps=1_000)
    assert env.observation_space == spaces.Box(0, 255, (4, 84, 84), np.uint8)
    assert env.action_space == spaces.Discrete(4)
    assert env.get_action_meanings() == ["NOOP", "FIRE", "RIGHT", "LEFT"]
    assert env.env_is_wrapped(Monitor) == [True, True]
    assert env.get_attr("render_mode") == [None, None]
    obs = env.reset()
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    assert not obs[:, :3].any() and obs[:, 3].any()
    obs, rewards, dones, infos = env.step(np.array([FIRE, LEFT]))
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    assert rewards.dtype == np.float32 and dones.dtype == bool and len(infos) == 2

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # torch's OpenMP threads spin against the ALE threads on a small CPU
    try:
        model = DQN("CnnPolicy", env, buffer_size=200, learning_starts=50, device="cpu", seed=0)
        assert model.get_env() is env  # not wrapped in a VecTransposeImage
        model.learn(300)
        assert model.replay_buffer.observations.shape[1:] == (2, 4, 84, 84)
    finally:
        torch.set_num_threads(threads)
    env.close()


class NoopPolicy:
    def predict(self, obs: np.ndarray, state=None, episode_start=None, deterministic: bool = False):
        return np.full(len(obs), NOOP), state


def test_evaluate_policy_counts_games() -> None:
    """SB3's evaluate_policy sees the Monitor and scores whole games (all lives), not the learner's episodes."""
    env = AleVecEnv(n_envs=2, seed=0, max_episode_steps=1_000)
    scores, lengths = evaluate_policy(NoopPolicy(), env, n_eval_episodes=2, return_episode_rewards=True)
    # a life lasts about 24 agent steps (96 emulator frames) when the paddle stays put
    assert scores == [0.0, 0.0] and all(4 * 5 * 20 < length < 4 * 5 * 30 for length in lengths)
    env.close()


def test_same_seed_same_run() -> None:
    runs = []
    for _ in range(2):
        env = AleVecEnv(n_envs=2, seed=3, noop_max=30)
        rng = np.random.default_rng(0)
        frames = [env.reset()]
        for _ in range(100):
            frames.append(env.step(rng.integers(4, size=2))[0])
        env.close()
        runs.append(np.stack(frames))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_first_life_equals_sb3_stack() -> None:
    """
    From a game reset SB3 presses FIRE, then RIGHT, unseen by the agent; AleVecEnv's agent sees those two steps
    (FIRE merged into its first action). After them both emulators are in the same state, and from there every step
    must give the same observations (exactly: same max-pool, grayscale and INTER_AREA resize), clipped rewards, lives
    and dones, up to the first life loss, where the terminal observations must be the same too.
    """
    sb3 = sb3_stack()
    ale = sb3.venv.envs[0].unwrapped.ale
    ours = AleVecEnv(n_envs=1, seed=0, noop_max=0)
    sb3_obs = sb3.reset().transpose(0, 3, 1, 2)
    ours.reset()
    for action in (NOOP, RIGHT):  # NOOP: FIRE is added to the first action of a life
        ours_obs, _, _, _ = ours.step(np.array([action]))
    np.testing.assert_array_equal(ours_obs[:, -1], sb3_obs[:, -1])

    rng = np.random.default_rng(1)
    rewards = []
    for step in range(1, 5_000):
        action = policy(ale.getRAM(), rng, noise=0.0)
        sb3_obs, sb3_reward, sb3_done, sb3_info = sb3.step(np.array([action]))
        ours_obs, ours_reward, ours_done, ours_info = ours.step(np.array([action]))
        sb3_obs = sb3_obs.transpose(0, 3, 1, 2)
        assert ours_reward[0] == sb3_reward[0] and ours_done[0] == sb3_done[0], step
        assert ours_info[0]["lives"] == sb3_info[0]["lives"], step
        rewards.append(ours_reward[0])
        if ours_done[0]:
            break
        newest = min(step + 1, 4)  # the frames before SB3's reset frame are zeros in its stack
        np.testing.assert_array_equal(ours_obs[:, -newest:], sb3_obs[:, -newest:], err_msg=f"step {step}")
    assert ours_done[0] and ours_info[0]["lives"] == 4 and "episode" not in ours_info[0]
    assert step > 500 and sum(rewards) > 10  # a long first life, with bricks hit
    terminal = ours_info[0]["terminal_observation"]
    np.testing.assert_array_equal(terminal, sb3_info[0]["terminal_observation"].transpose(2, 0, 1))
    # the new life starts from the frame that ended the old one, alone in a zeroed stack
    assert not ours_obs[0, :3].any()
    np.testing.assert_array_equal(ours_obs[0, 3], terminal[3])
    sb3.close()
    ours.close()


class Replay:
    """What AleVecEnv should do, replayed frame by frame on a scalar ALE, with SB3's preprocessing."""

    def __init__(self) -> None:
        self.ale = ale_py.ALEInterface()
        self.ale.setLoggerMode(ale_py.LoggerMode.Error)
        self.ale.setFloat("repeat_action_probability", 0.0)
        self.ale.loadROM(roms.get_rom_path("breakout"))
        self.reset()

    def frame(self, screens: list[np.ndarray]) -> np.ndarray:
        gray = cv2.cvtColor(np.max(screens, axis=0), cv2.COLOR_RGB2GRAY)
        return cv2.resize(gray, (84, 84), interpolation=cv2.INTER_AREA)

    def reset(self) -> None:
        self.ale.reset_game()
        self.new_life(self.frame([self.ale.getScreenRGB()]))

    def new_life(self, frame: np.ndarray) -> None:
        self.stack = np.zeros((4, 84, 84), dtype=np.uint8)
        self.stack[-1] = frame
        self.first_step = True

    def step(self, action: int) -> tuple[float, bool, bool]:
        """:return: raw reward, life lost, game over"""
        full_action = WITH_FIRE[action] if self.first_step else FULL[action]
        self.first_step = False
        lives = self.ale.lives()
        reward, screens = 0.0, []
        for i in range(4):
            reward += self.ale.act(full_action)
            if self.ale.game_over():
                return reward, False, True
            if i >= 2:
                screens.append(self.ale.getScreenRGB())
        self.stack = np.concatenate([self.stack[1:], self.frame(screens)[None]])
        return reward, 0 < self.ale.lives() < lives, False


def test_whole_games_equal_replay() -> None:
    """Every step of two whole games, across life losses and the game reset, against the frame-by-frame replay."""
    ours = AleVecEnv(n_envs=1, seed=0, noop_max=0)
    replay = Replay()
    np.testing.assert_array_equal(ours.reset()[0], replay.stack)
    rng = np.random.default_rng(0)
    games, raw_score, clipped_score, life_losses = 0, 0.0, 0.0, 0
    for step in range(6_000):
        action = policy(replay.ale.getRAM(), rng, noise=0.3)
        raw_reward, life_lost, game_over = replay.step(action)
        obs, reward, done, info = ours.step(np.array([action]))
        raw_score += raw_reward
        clipped_score += reward[0]
        assert reward[0] == np.sign(raw_reward) and done[0] == (life_lost or game_over), step
        assert not info[0]["TimeLimit.truncated"]
        if game_over:
            assert info[0]["episode"]["r"] == raw_score and info[0]["lives"] == 5
            assert life_losses == 4 and raw_score > clipped_score  # some bricks are worth more than 1
            games, raw_score, clipped_score, life_losses = games + 1, 0.0, 0.0, 0
            replay.reset()
            if games == 2:
                break
        else:
            assert "episode" not in info[0] and info[0]["lives"] == replay.ale.lives(), step
            if life_lost:
                life_losses += 1
                np.testing.assert_array_equal(info[0]["terminal_observation"], replay.stack, err_msg=f"step {step}")
                replay.new_life(replay.stack[-1])
        np.testing.assert_array_equal(obs[0], replay.stack, err_msg=f"step {step}")
    assert games == 2
    ours.close()


def test_ball_served_after_every_life_loss() -> None:
    """A policy that never presses FIRE still loses all five lives: FIRE is pressed for it at each life's start."""
    env = AleVecEnv(n_envs=2, seed=0)
    env.reset()
    lives, steps, infos = [], 0, [{}]
    while "episode" not in infos[0] and steps < 5 * 100:
        _, _, dones, infos = env.step(np.array([NOOP, RIGHT]))
        steps += 1
        if dones[0]:
            lives.append(infos[0]["lives"])
    assert lives == [4, 3, 2, 1, 5] and infos[0]["episode"]["r"] == 0.0
    assert infos[0]["episode"]["l"] == 4 * steps  # emulator frames, as Monitor under AtariWrapper counts them
    env.close()


@pytest.mark.parametrize("max_episode_steps", [30, 40])
def test_time_limit(max_episode_steps: int) -> None:
    """The game is cut after max_episode_steps agent steps (one life lost before), flagged TimeLimit.truncated."""
    env = AleVecEnv(n_envs=1, seed=0, noop_max=0, max_episode_steps=max_episode_steps)
    before = env.reset()
    for _ in range(max_episode_steps - 1):
        before, _, dones, infos = env.step(np.array([NOOP]))
        assert not infos[0]["TimeLimit.truncated"] and "episode" not in infos[0]
    obs, _, dones, infos = env.step(np.array([NOOP]))
    info = infos[0]
    assert dones[0] and info["TimeLimit.truncated"]
    assert info["episode"]["l"] == 4 * max_episode_steps and info["episode"]["r"] == 0.0
    assert info["lives"] == 5  # a new game
    np.testing.assert_array_equal(info["terminal_observation"][:3], before[0, 1:])
    assert not obs[0, :3].any() and obs[0, 3].any()
    env.close()

    # SB3's stack flags its TimeLimit (on emulator frames) the same way
    sb3 = sb3_stack(max_episode_steps=4 * max_episode_steps)
    sb3.reset()
    for _ in range(max_episode_steps):
        _, _, sb3_dones, sb3_infos = sb3.step(np.array([NOOP]))
        if "episode" in sb3_infos[0]:
            break
    assert sb3_dones[0] and sb3_infos[0]["TimeLimit.truncated"]
    assert set(info) >= {"lives", "TimeLimit.truncated", "terminal_observation", "episode"}
    assert set(info["episode"]) == set(sb3_infos[0]["episode"]) == {"r", "l", "t"}
    sb3.close()


def read_monitor(path: str) -> list[dict[str, str]]:
    """The rows of a Monitor file, as SB3's ``load_results`` reads them (it needs pandas)."""
    with open(path) as f:
        assert f.readline().startswith("#{")
        return list(csv.DictReader(f))


def test_monitor_file(tmp_path) -> None:
    """Every finished game is a row of a file in SB3's Monitor format: a JSON header line, then r,l,t."""
    path = str(tmp_path / "0.monitor.csv")
    env = AleVecEnv(n_envs=2, seed=0, max_episode_steps=30, monitor_file=path)
    env.reset()
    episodes = []
    for _ in range(70):  # each env's game is cut at 30 agent steps: 2 games each
        _, _, _, infos = env.step(np.array([NOOP, LEFT]))
        episodes += [info["episode"] for info in infos if "episode" in info]
    env.close()
    assert len(episodes) == 4
    with open(path) as f:
        first_line, header = f.readline(), f.readline()
    assert json.loads(first_line[1:]) == {"t_start": env.t_start, "env_id": "BreakoutNoFrameskip-v4"}
    assert header.strip() == "r,l,t"
    rows = read_monitor(path)
    assert [float(row["r"]) for row in rows] == [e["r"] for e in episodes]
    assert [int(row["l"]) for row in rows] == [e["l"] for e in episodes] == [120] * 4
    assert [float(row["t"]) for row in rows] == [e["t"] for e in episodes]

    # appended to, with no second header; a name without the suffix gets SB3's ".monitor.csv"
    env = AleVecEnv(n_envs=1, seed=1, max_episode_steps=30, monitor_file=path, monitor_append=True)
    env.reset()
    for _ in range(30):
        env.step(np.array([NOOP]))
    env.close()
    assert len(read_monitor(path)) == 5
    with open(path) as f:
        assert sum(line.startswith("#") for line in f) == 1
    env = AleVecEnv(n_envs=1, seed=1, monitor_file=str(tmp_path / "other"), monitor_append=True)
    env.close()
    assert (tmp_path / "other.monitor.csv").read_text().splitlines()[1] == "r,l,t"  # a new file has its header


def test_any_game_pong() -> None:
    """
    Pong (no lives, six actions) against SB3's stack: the same points at the same steps, and the same pixels but at
    moving edges over a coloured background: ale-py max-pools the two last frames in grayscale, SB3's MaxAndSkipEnv
    in RGB (for Breakout, whose objects move over black, the two are equal). The two drift apart after about 900
    steps (a point scored 2 steps later), so the first 600 are compared.
    """
    env = AleVecEnv(game="pong", n_envs=1, seed=0, noop_max=0, max_episode_steps=2_000)
    assert env.env_id == "PongNoFrameskip-v4" and env.action_space == spaces.Discrete(6)
    assert env.get_action_meanings() == ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]
    sb3 = VecFrameStack(make_atari_env("PongNoFrameskip-v4", n_envs=1, seed=0, wrapper_kwargs=dict(noop_max=0)), 4)
    sb3.reset()
    env.reset()
    for action in (NOOP, RIGHT):  # SB3's FireResetEnv presses FIRE, then RIGHT
        env.step(np.array([action]))
    rng = np.random.default_rng(0)
    points, differing = 0, []
    for step in range(1, 600):
        action = rng.integers(6, size=1)
        sb3_obs, sb3_reward, sb3_done, _ = sb3.step(action)
        obs, reward, done, _ = env.step(action)
        assert reward[0] == sb3_reward[0] and done[0] == sb3_done[0], step
        differing.append(np.count_nonzero(obs[0, -1] != sb3_obs[0, :, :, -1]))
        points += int(reward[0] != 0)
    assert points >= 10  # points were played, each one scored by one side
    assert max(differing) < 0.02 * 84 * 84 and np.mean(differing) < 0.005 * 84 * 84
    env.close()
    sb3.close()
