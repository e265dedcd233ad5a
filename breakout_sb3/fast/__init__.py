"""breakout-sb3's fast configuration: faster or leaner drop-in replacements for parts of Stable-Baselines3."""

from breakout_sb3.fast.ale_vec_env import AleVecEnv
from breakout_sb3.fast.dqn import FastDQN
from breakout_sb3.fast.replay import FrameStackReplayBuffer

__all__ = ["AleVecEnv", "FastDQN", "FrameStackReplayBuffer"]
