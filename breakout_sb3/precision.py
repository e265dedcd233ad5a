"""
The arithmetic of DQN's update: float32, or bf16 mixed precision as ``torch.autocast`` does it, and the memory
layout its convolutions run fastest in.

With ``bf16``, the networks' forward passes (their convolutions and matmuls) run under
``torch.autocast(device, torch.bfloat16)`` and their Q-values are cast back to float32 at once: the weights, their
gradients, Adam's state, the TD target, the loss and the gradient clipping stay float32. Acting, evaluating and the
saved zip are float32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch as th
from stable_baselines3 import DQN

from breakout_sb3.errors import BreakoutSB3Error

FLOAT32, BF16 = "float32", "bf16"
PRECISIONS = (FLOAT32, BF16)
# rl-zoo3's --algo for plain DQN trained with --precision bf16 (SB3's DQN update, the networks under autocast)
MIXED_ALGO = "dqn_mixed"


def cpu_features() -> dict[str, bool]:
    """:return: the CPU features torch sees that bf16 arithmetic runs on (oneDNN uses them for bf16 convolutions)"""
    return {
        "AVX-512": th.cpu._is_avx512_supported(),
        "AVX-512 BF16": th.cpu._is_avx512_bf16_supported(),
        "AMX": th.cpu._is_amx_tile_supported(),
        "oneDNN": th.backends.mkldnn.is_available(),
    }


def bf16_missing(device: th.device | str) -> str | None:
    """:return: what ``device`` lacks to run bf16 natively (one phrase), None if it has it"""
    device = th.device(device)
    if device.type == "cpu":
        features = cpu_features()
        if not features["oneDNN"]:
            return "this torch build has no oneDNN (mkldnn), which runs bf16 convolutions on the CPU"
        if not (features["AVX-512 BF16"] or features["AMX"]):
            return "this CPU has neither AVX-512 BF16 nor AMX (torch would emulate bf16, slower than float32)"
        return None
    if device.type == "cuda":
        if not th.cuda.is_bf16_supported(including_emulation=False):
            name = th.cuda.get_device_name(device)
            major, minor = th.cuda.get_device_capability(device)
            return f"{name} (compute capability {major}.{minor}) has no native bf16 (it needs 8.0 or newer)"
        return None
    return f"bf16 mixed precision runs on CPU and CUDA devices, not {device.type}"


def check_precision(precision: str, device: th.device | str, where: str = "--precision") -> None:
    """:raise BreakoutSB3Error: an unknown precision, or bf16 on a device without bf16 support (what it lacks)"""
    if precision not in PRECISIONS:
        raise BreakoutSB3Error(f"{where} must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    missing = bf16_missing(device) if precision == BF16 else None
    if missing is not None:
        raise BreakoutSB3Error(f"{where} bf16 is not supported on {th.device(device)}: {missing}")


def autocast(precision: str, device: th.device) -> contextlib.AbstractContextManager[Any]:
    """
    :return: the context the networks' forward passes run in: nothing for float32; bf16 autocast without its cache
        of cast weights (a CUDA graph must not capture a cache, and the weights change at every step anyway)
    """
    if precision == FLOAT32:
        return contextlib.nullcontext()
    return th.autocast(device.type, dtype=th.bfloat16, cache_enabled=False)


def q_values(q_net: Callable[[th.Tensor], th.Tensor], observations: th.Tensor, precision: str) -> th.Tensor:
    """:return: ``q_net(observations)`` computed in ``precision``, as float32"""
    with autocast(precision, observations.device):
        values = q_net(observations)
    return values.float()


def conv_memory_format(device: th.device | str) -> th.memory_format:
    """
    :return: the memory layout in which the Nature CNN's update runs fastest on ``device``: channels-last on CPUs
        (oneDNN's native layout) and CUDA GPUs (cuDNN's tensor-core kernels), contiguous elsewhere
    """
    return th.channels_last if th.device(device).type in ("cpu", "cuda") else th.contiguous_format


def in_layout(batch: th.Tensor, memory_format: th.memory_format) -> th.Tensor:
    """:return: a batch of images (4 dimensions) in ``memory_format``; any other batch as it is"""
    return batch.contiguous(memory_format=memory_format) if batch.dim() == 4 else batch


class _InPrecision:
    """A Q-network called in a precision (``q_values``): what SB3's ``DQN.train`` calls as ``self.q_net``."""

    def __init__(self, q_net: th.nn.Module, precision: str):
        self.q_net, self.precision = q_net, precision

    def __call__(self, observations: th.Tensor) -> th.Tensor:
        return q_values(self.q_net, observations, self.precision)


class MixedPrecisionDQN(DQN):
    """
    SB3's ``DQN``, whose update (SB3's own ``DQN.train``) runs in ``precision``: with ``"bf16"`` the two networks'
    forward passes run under bf16 autocast, everything else as in float32 (see the module). A zip it saves is a DQN
    zip: plain ``DQN.load`` opens it and plays in float32.

    :param precision: ``"float32"`` (SB3's update, unchanged) or ``"bf16"``
    :param kwargs: ``DQN``'s parameters
    """

    def __init__(self, *args: Any, precision: str = FLOAT32, **kwargs: Any):
        self.precision = precision
        super().__init__(*args, **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        check_precision(self.precision, self.device, where="precision")

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        if self.precision == FLOAT32:
            super().train(gradient_steps, batch_size)
            return
        # SB3's train calls the networks through these aliases: called in the precision for the update, then
        # the aliases are the networks again
        self.q_net = _InPrecision(self.policy.q_net, self.precision)  # type: ignore[assignment]
        self.q_net_target = _InPrecision(self.policy.q_net_target, self.precision)  # type: ignore[assignment]
        try:
            super().train(gradient_steps, batch_size)
        finally:
            self._create_aliases()
