"""
Where a benchmark result comes from: the commit it was measured at and the machine, recorded in every result JSON.

A result is written only from a clean working tree (``require_commit``), so that each committed figure traces to the
code that produced it; ``--allow-dirty`` writes it anyway, its commit marked ``-dirty``, for experiments only.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def add_allow_dirty(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-dirty",
        action="store_true",
        help="write the result even though the working tree has uncommitted changes (its commit is marked -dirty; "
        "for experiments, not for bench/results/)",
    )


def git_commit() -> tuple[str | None, bool]:
    """:return: the checkout's HEAD commit (None outside a git checkout) and whether tracked files are modified"""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None, True
    return head.stdout.strip(), bool(status.stdout.strip())


def require_commit(prog: str, allow_dirty: bool) -> str:
    """
    :return: the commit to record: HEAD, or ``HEAD-dirty`` with ``allow_dirty``
    :raises SystemExit: (status 2, one line) when the working tree is dirty or not a git checkout, without
        ``allow_dirty``
    """
    commit, dirty = git_commit()
    if dirty and not allow_dirty:
        why = "the working tree has uncommitted changes" if commit else "this is not a git checkout"
        message = f"{prog}: error: {why}: a result must trace to a commit; commit first, or pass --allow-dirty"
        print(message, file=sys.stderr)
        raise SystemExit(2)
    return (commit or "unknown") + ("-dirty" if dirty else "")


def cpu_model() -> str:
    """:return: the CPU's model name (Linux's /proc/cpuinfo), else what the platform module says"""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str) -> str:
    """:return: ``cpu``, or the CUDA device's name"""
    if not device.startswith("cuda"):
        return "cpu"
    import torch as th

    return th.cuda.get_device_name()


def machine(device: str = "cpu") -> dict[str, Any]:
    """:return: the CPU (model, cores this process may use, memory), the device, and the versions that set the pace"""
    import ale_py
    import stable_baselines3
    import torch

    from breakout_sb3.precision import cpu_features

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else None
    return {
        "cpu": cpu_model(),
        "cores": cores,
        "cpu_features": cpu_features(),
        "memory_gb": round(memory / 2**30, 1) if memory else None,
        "device": device_name(device),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "ale_py": ale_py.__version__,
    }


def header(kind: str, commit: str, device: str = "cpu") -> dict[str, Any]:
    """:return: the fields every result JSON starts with"""
    return {
        "kind": kind,
        "commit": commit,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": ["python", "-m", f"bench.{Path(sys.argv[0]).stem}", *sys.argv[1:]],
        "machine": machine(device),
    }


def write_result(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results written to {path}")


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]
