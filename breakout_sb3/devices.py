"""The torch device a command runs on: checked before anything runs, never a silent fall-back to the CPU."""

from __future__ import annotations

import argparse

import torch as th
from stable_baselines3.common.utils import get_device

from breakout_sb3.errors import BreakoutSB3Error

AUTO = "auto"  # SB3's choice: CUDA if torch sees a GPU, else the CPU
DEVICES = "auto, cpu, cuda, cuda:<index> or mps"


def check_device(device: str, announce: bool = False, where: str = "") -> th.device:
    """
    Refuse a device string torch cannot parse, or a device torch cannot use here: SB3 would train on the CPU
    without a word when it is given ``cuda`` and torch sees no GPU.

    :param device: ``auto`` (SB3's choice), or a torch device: ``cpu``, ``cuda``, ``cuda:<index>``, ``mps``
    :param announce: print the device SB3 chose for ``auto``, in SB3's words (``Using cpu device``)
    :param where: what asks for the device, when not the command line (``<run>/resume.json``)
    :return: the device SB3 will use
    :raise BreakoutSB3Error: naming the device and why it cannot be used
    """
    if device == AUTO:
        chosen = get_device(AUTO)
        if announce:
            print(f"Using {chosen} device")
        return chosen
    prefix = f"{where}: " if where else ""
    try:
        parsed = th.device(device)
    except (RuntimeError, TypeError):
        raise BreakoutSB3Error(f"{prefix}--device must be {DEVICES}, got {device!r}") from None
    if parsed.type not in ("cpu", "cuda", "mps"):
        raise BreakoutSB3Error(f"{prefix}--device must be {DEVICES}, got {device!r}")
    problem = _unavailable(parsed)
    if problem:
        raise BreakoutSB3Error(f"{prefix}--device {device}: {problem}")
    return parsed


def _unavailable(device: th.device) -> str | None:
    """:return: why torch cannot use ``device`` here, None if it can"""
    if device.type == "mps" and not th.backends.mps.is_available():
        return "torch sees no MPS device (Apple GPU) here; use --device cpu"
    if device.type != "cuda":
        return None
    count = th.cuda.device_count() if th.cuda.is_available() else 0
    if count == 0:
        build = "a CPU-only build" if th.version.cuda is None else f"built for CUDA {th.version.cuda}"
        return (
            f"torch sees no CUDA device here (torch {th.__version__}, {build}); use --device cpu, or install a CUDA "
            "build of torch (the README's GPU section)"
        )
    if device.index is not None and device.index >= count:
        return f"torch sees {count} CUDA device(s) here ({'cuda:0' if count == 1 else f'cuda:0 to cuda:{count - 1}'})"
    return None


def device_flag(argv: list[str]) -> str:
    """:return: the device rl-zoo3 flags ``argv`` ask for (its ``--device``, the last one given), ``auto`` if none"""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--device", default=AUTO)
    args, _ = parser.parse_known_args(argv)
    return args.device
