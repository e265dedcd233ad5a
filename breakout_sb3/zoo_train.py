"""rl-zoo3's ``train``, run with a manager class of ours: the one place that swaps rl-zoo3's ExperimentManager."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import rl_zoo3.train


def zoo_train(manager: Callable[..., Any], argv: list[str]) -> None:
    """
    Run rl-zoo3's ``train`` with ``argv`` as its command line and ``manager`` in place of its ExperimentManager.

    rl-zoo3 builds its argument parser inside ``train()``: running it with its ExperimentManager swapped for ours
    keeps every rl-zoo3 flag working unchanged.

    :param manager: called as rl-zoo3 calls ExperimentManager (a subclass, or a ``functools.partial`` of one)
    :param argv: rl-zoo3 train flags, without the program name
    """
    saved = rl_zoo3.train.ExperimentManager, sys.argv
    rl_zoo3.train.ExperimentManager, sys.argv = manager, ["breakout-sb3", *argv]
    try:
        rl_zoo3.train.train()
    finally:
        rl_zoo3.train.ExperimentManager, sys.argv = saved
