"""A resumed run's Monitor files continue the clock of their header, so that they read as one run."""

from __future__ import annotations

import json
from pathlib import Path

from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from callbacks.run_folder import file_monitor


def header_t_start(path: str | Path) -> float | None:
    """:return: the ``t_start`` of the ``#{...}`` header line of the Monitor file ``path``, None if it has none"""
    try:
        with open(path) as f:
            first = f.readline()
        return float(json.loads(first[1:])["t_start"]) if first.startswith("#") else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def continue_monitor_clocks(vec_env: VecEnv) -> None:
    """
    Make each SB3 ``Monitor`` of ``vec_env`` that appends to an existing file count its ``t`` from that file's
    ``t_start``, as the rows before it do: SB3's ``load_results`` adds ``t_start`` to ``t``, and a Monitor that
    appended with its own start time would write times that go back. Envs in other processes are left as they are.
    """
    base = vec_env.unwrapped
    if not isinstance(base, DummyVecEnv):
        return
    for env in base.envs:
        monitor = file_monitor(env)
        if monitor is not None:
            assert monitor.results_writer is not None
            t_start = header_t_start(monitor.results_writer.file_handler.name)
            if t_start is not None:
                monitor.t_start = t_start
