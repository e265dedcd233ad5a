"""Which episodes a callback counts, and what score each one gets."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import Any, Literal

import numpy as np

EpisodeStats = Literal["monitor", "learner"]
EPISODE_STATS: tuple[str, ...] = ("monitor", "learner")


def mean_score(scores: Collection[float]) -> float:
    """:return: the mean of ``scores``, correctly rounded (nan if empty); a tenth of ``np.mean``'s time on a deque"""
    return math.fsum(scores) / len(scores) if scores else float("nan")


def check_episode_stats(episode_stats: str) -> None:
    if episode_stats not in EPISODE_STATS:
        raise ValueError(f"episode_stats must be one of {EPISODE_STATS}, got {episode_stats!r}")


class EpisodeScores:
    """
    Turns the ``rewards``, ``dones`` and ``infos`` of one ``VecEnv.step`` into the scores of the episodes that ended.

    ``"monitor"``: the episodes SB3's ``Monitor`` records (innermost wrapper, so under ``AtariWrapper`` a whole
    game of all lives) and their raw, unclipped return ``info["episode"]["r"]``.
    ``"learner"``: the episodes the learner sees (every ``done``, so one life under ``AtariWrapper``) and the sum
    of the rewards it learns from (clipped under ``AtariWrapper``).

    :param episode_stats: ``"monitor"`` or ``"learner"``
    """

    def __init__(self, episode_stats: EpisodeStats = "monitor"):
        check_episode_stats(episode_stats)
        self.episode_stats = episode_stats
        self._running: np.ndarray | None = None

    def update(self, rewards: np.ndarray, dones: np.ndarray, infos: Sequence[dict[str, Any]]) -> list[float]:
        """:return: the score of each episode that ended at this step, in env order"""
        if self.episode_stats == "monitor":
            return [float(info["episode"]["r"]) for info in infos if "episode" in info]
        if self._running is None:
            self._running = np.zeros(len(dones), dtype=np.float64)
        self._running += rewards
        ended = np.flatnonzero(dones)
        if len(ended) == 0:  # most steps: no per-env work
            return []
        finished = self._running[ended].tolist()
        self._running[ended] = 0.0
        return finished
