"""Refilling the replay buffer before training resumes from a checkpoint written without one."""

from __future__ import annotations

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback


def refill_target(model: BaseAlgorithm, refill_steps: int) -> int:
    """:return: ``refill_steps``, or fewer if the replay buffer cannot hold that many transitions"""
    replay = model.replay_buffer
    return min(refill_steps, replay.buffer_size * replay.n_envs)  # SB3's buffer_size there is per env


class ReplayRefillCallback(BaseCallback):
    """
    Holds off gradient steps (``gradient_steps = 0``) while the replay buffer holds fewer than ``transitions``
    transitions: used when a run resumes from a checkpoint written without its replay buffer.

    :param transitions: transitions the replay buffer must hold before training resumes
    """

    def __init__(self, transitions: int, verbose: int = 1):
        super().__init__(verbose)
        self.transitions = transitions
        self._gradient_steps: int | None = None

    def _stored(self) -> int:
        return self.model.replay_buffer.size() * self.model.n_envs

    def _on_training_start(self) -> None:
        if self._stored() < self.transitions:
            self._gradient_steps, self.model.gradient_steps = self.model.gradient_steps, 0

    def _on_rollout_end(self) -> None:
        if self._gradient_steps is not None and self._stored() >= self.transitions:
            self._release()

    def _on_training_end(self) -> None:
        if self._gradient_steps is not None:
            self._release()

    def _release(self) -> None:
        self.model.gradient_steps, self._gradient_steps = self._gradient_steps, None
        if self.verbose >= 1:
            refilled = f"Replay buffer refilled ({self._stored()} transitions)"
            print(f"{refilled}: training resumes at step {self.num_timesteps}")

    def _on_step(self) -> bool:
        return True
