"""Epsilon held, then decayed linearly in two phases, as a function of env steps."""

from __future__ import annotations

from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import ConstantSchedule

from callbacks.validation import NonNegativeInt, Probability, checked_init


class TwoPhaseEpsilonSchedule:
    """
    Epsilon as a function of the number of env steps taken: ``initial_eps`` for ``random_steps`` steps, linear to
    ``middle_eps`` over ``first_decay_steps``, linear to ``final_eps`` over ``second_decay_steps``, then held.

    SB3 calls an exploration schedule with the progress remaining, which changes meaning when a run is resumed
    with a new total; this schedule ignores it and follows ``num_timesteps``, which
    :class:`TwoPhaseEpsilonCallback` keeps equal to the model's.

    It pickles as SB3's ``ConstantSchedule`` of its current value, so a zip saved while it is installed loads with
    plain ``DQN.load`` where this package is not installed.

    :param initial_eps: epsilon during the first ``random_steps`` steps
    :param middle_eps: epsilon reached at the end of the first decay
    :param final_eps: epsilon reached at the end of the second decay, and kept
    :param random_steps: steps at ``initial_eps``
    :param first_decay_steps: steps to decay from ``initial_eps`` to ``middle_eps``
    :param second_decay_steps: steps to decay from ``middle_eps`` to ``final_eps``
    """

    @checked_init
    def __init__(
        self,
        initial_eps: Probability = 1.0,
        middle_eps: Probability = 0.1,
        final_eps: Probability = 0.01,
        random_steps: NonNegativeInt = 50_000,
        first_decay_steps: NonNegativeInt = 1_000_000,
        second_decay_steps: NonNegativeInt = 24_000_000,
    ):
        self.initial_eps = float(initial_eps)
        self.middle_eps = float(middle_eps)
        self.final_eps = float(final_eps)
        self.random_steps = int(random_steps)
        self.first_decay_steps = int(first_decay_steps)
        self.second_decay_steps = int(second_decay_steps)
        self.num_timesteps = 0

    def value(self, step: int) -> float:
        """:return: epsilon for the action taken after ``step`` env steps"""
        step -= self.random_steps
        if step < 0:
            return self.initial_eps
        if step < self.first_decay_steps:
            return self.initial_eps + (self.middle_eps - self.initial_eps) * step / self.first_decay_steps
        step -= self.first_decay_steps
        if step < self.second_decay_steps:
            return self.middle_eps + (self.final_eps - self.middle_eps) * step / self.second_decay_steps
        return self.final_eps

    def __call__(self, progress_remaining: float) -> float:
        return self.value(self.num_timesteps)

    def __reduce__(self):
        return ConstantSchedule, (self.value(self.num_timesteps),)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(initial_eps={self.initial_eps}, middle_eps={self.middle_eps}, "
            f"final_eps={self.final_eps}, random_steps={self.random_steps}, "
            f"first_decay_steps={self.first_decay_steps}, second_decay_steps={self.second_decay_steps})"
        )


class TwoPhaseEpsilonCallback(BaseCallback):
    """
    Makes an epsilon-greedy SB3 algorithm (``DQN``, sb3-contrib's ``QRDQN``) explore with a
    :class:`TwoPhaseEpsilonSchedule` of its env steps.

    SB3's ``DQN._on_step`` recomputes ``exploration_rate`` from ``exploration_schedule`` after the callbacks have
    run, so setting ``exploration_rate`` from a callback would be overwritten; this callback installs its schedule
    as the model's ``exploration_schedule`` instead, and the value SB3 computes, logs as
    ``rollout/exploration_rate`` and acts with is the schedule's. Steps are ``num_timesteps`` (all envs together),
    so a model loaded from a zip and trained on with ``reset_num_timesteps=False`` continues where it stopped.

    :param initial_eps: epsilon during the first ``random_steps`` steps
    :param middle_eps: epsilon reached at the end of the first decay
    :param final_eps: epsilon reached at the end of the second decay, and kept
    :param random_steps: steps at ``initial_eps``
    :param first_decay_steps: steps to decay from ``initial_eps`` to ``middle_eps``
    :param second_decay_steps: steps to decay from ``middle_eps`` to ``final_eps``
    :param verbose: Verbosity level: 0 for no output, 1 for info messages, 2 for debug messages
    """

    @checked_init
    def __init__(
        self,
        initial_eps: Probability = 1.0,
        middle_eps: Probability = 0.1,
        final_eps: Probability = 0.01,
        random_steps: NonNegativeInt = 50_000,
        first_decay_steps: NonNegativeInt = 1_000_000,
        second_decay_steps: NonNegativeInt = 24_000_000,
        verbose: int = 0,
    ):
        super().__init__(verbose)
        self.schedule = TwoPhaseEpsilonSchedule(
            initial_eps, middle_eps, final_eps, random_steps, first_decay_steps, second_decay_steps
        )

    def _init_callback(self) -> None:
        if not hasattr(self.model, "exploration_schedule"):
            name = type(self.model).__name__
            raise TypeError(f"{name} has no exploration_schedule: it does not explore epsilon-greedily")

    def _on_training_start(self) -> None:
        self.schedule.num_timesteps = self.model.num_timesteps
        self.model.exploration_schedule = self.schedule
        # The first action of this learn() call is chosen before any _on_step has refreshed the rate.
        self.model.exploration_rate = self.schedule.value(self.model.num_timesteps)
        if self.verbose >= 1:
            print(f"{self.schedule}: epsilon {self.model.exploration_rate:.4f} at step {self.model.num_timesteps}")

    def _on_step(self) -> bool:
        self.schedule.num_timesteps = self.model.num_timesteps
        return True
