"""Train SB3's DQN on Atari Breakout with the recipe of the tutorial "How to Build a DQN to Play Atari Breakout"."""

ENV_ID = "BreakoutNoFrameskip-v4"

__version__ = "0.1.0"
