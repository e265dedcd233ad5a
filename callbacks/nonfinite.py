"""Stop training at the first non-finite loss, before a broken model is saved anywhere."""

from __future__ import annotations

import math

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback


class NonFiniteTrainingError(RuntimeError):
    """Training produced a NaN or infinite loss or weight."""


def first_non_finite_parameter(model: BaseAlgorithm) -> str | None:
    """:return: the name of the first policy parameter holding a NaN or an infinity, or None"""
    for name, param in model.policy.named_parameters():
        if not th.isfinite(param).all():
            return name
    return None


class NonFiniteLossCallback(BaseCallback):
    """
    Raises :class:`NonFiniteTrainingError`, naming the step, as soon as the training loss SB3 logs as
    ``train/loss`` is NaN or infinite; any non-finite Q-value in a batch makes the loss non-finite. It checks at the
    start of each rollout, right after the gradient steps, before any callback can save the broken model.

    :param verbose: Verbosity level: 0 for no output, 1 for info messages, 2 for debug messages
    """

    def _on_rollout_start(self) -> None:
        loss = self.model.logger.name_to_value.get("train/loss")
        if loss is not None and not math.isfinite(loss):
            raise NonFiniteTrainingError(
                f"non-finite loss ({loss}) at step {self.model.num_timesteps}, "
                f"gradient update {getattr(self.model, '_n_updates', '?')}"
            )

    def _on_step(self) -> bool:
        return True
