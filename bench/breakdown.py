"""
Where the learner thread's time goes, per agent step: hooks on an SB3 off-policy model, its env, replay buffer and
callbacks (instance attributes that shadow their methods, and a ``CallbackList`` subclass), nothing edited in SB3.
Not run on its own: ``python -m bench.throughput`` prints and writes this breakdown for each configuration.

Categories (exclusive: a nested region's time is not counted in the region around it):

- ``env_wait``: inside the env. For ``AleVecEnv``, only ale-py's ``send``/``recv``/``reset`` (its C++ threads step
  the games; what ``AleVecEnv`` does in Python around them, the info dicts included, counts as ``other``). For
  SB3's vector envs, all of ``step_async``/``step_wait``: the games are stepped in the learner thread.
- ``act``: choosing the actions (``_sample_action``), of which ``act_net`` is the network (``policy._predict``).
- ``store``: ``_store_transition`` (the replay's ``add`` included).
- ``sample``: the replay's ``sample``/``sample_batches``, of which ``sample_gather`` is the copying of the sampled
  frames (``gather_stacks`` of ``FrameStackReplayBuffer.storage``; all of ``_get_samples`` for SB3's buffer): on a GPU
  with the replay on it, that copy runs on the device.
- ``update``: the gradient steps (``train`` for SB3's DQN; ``_run_updates`` for ``FastDQN``), of which
  ``update_net`` is the updates' arithmetic (``FastDQN._update``: forward, backward, clipping, Adam; for SB3's DQN
  ``train`` cannot be split, so all of it counts as ``update_net``). On a GPU, host time: launching the kernels,
  or with CUDA graphs, launching the graph (``update`` then, outside ``update_net``).
- ``callbacks``: the callbacks' ``update_locals``, ``on_step``, ``on_rollout_start``/``end``.
- ``other``: the rest of the learner thread (SB3's loops and bookkeeping, ``_update_info_buffer``, ``_on_step``,
  logging, the env's Python outside ``env_wait``).

``python``: the learner thread's own Python work, everything except ``env_wait``, the networks' arithmetic
(``act_net``, ``update_net``) and ``sample_gather``; ``python_outside_graph``: the part of it that stays on the host
when a CUDA graph samples and updates (``python`` less ``sample`` and ``update`` outside their parts), as
``FastDQN`` does on a GPU with the replay on it. Each region is timed twice: wall-clock time (the breakdown,
which adds up to the run's time) and the thread's CPU time (``python_cpu``: the same work, without the time the
thread waited for a core, so that a busy machine does not inflate it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

CATEGORIES = ("env_wait", "act", "store", "sample", "update", "callbacks", "other")
# Parts of a category, reported inside it: the network's arithmetic and the copying of sampled frames
PARTS = {"act_net": "act", "update_net": "update", "sample_gather": "sample"}
NOT_PYTHON = ("env_wait", "act_net", "update_net", "sample_gather")


class Clock:
    """Exclusive wall-clock time per region of the learner thread: entering a region pauses the one around it."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys((*CATEGORIES, *PARTS), 0.0)
        self.cpu_seconds: dict[str, float] = dict.fromkeys((*CATEGORIES, *PARTS), 0.0)
        self._stack = ["other"]
        self._mark = time.perf_counter()
        self._cpu_mark = time.thread_time()
        self.calls = 0

    def restart(self) -> None:
        """Forget everything measured so far (after a warm-up)."""
        for name in self.seconds:
            self.seconds[name] = self.cpu_seconds[name] = 0.0
        self._stack[:] = ["other"]
        self._mark = time.perf_counter()
        self._cpu_mark = time.thread_time()
        self.calls = 0

    def _switch(self, category: str | None) -> None:
        """Count the time since the last switch in the current region, then enter ``category`` (None: leave)."""
        now, cpu = time.perf_counter(), time.thread_time()
        current = self._stack[-1] if category is not None else self._stack.pop()
        self.seconds[current] += now - self._mark
        self.cpu_seconds[current] += cpu - self._cpu_mark
        if category is not None:
            self._stack.append(category)
        self._mark, self._cpu_mark = now, cpu

    def stop(self) -> None:
        """Count the time since the last region change in the current region."""
        now, cpu = time.perf_counter(), time.thread_time()
        self.seconds[self._stack[-1]] += now - self._mark
        self.cpu_seconds[self._stack[-1]] += cpu - self._cpu_mark
        self._mark, self._cpu_mark = now, cpu

    def wrap(self, category: str, function: Callable[..., Any]) -> Callable[..., Any]:
        """:return: ``function``, its time counted in ``category``"""

        def timed(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            self._switch(category)
            try:
                return function(*args, **kwargs)
            finally:
                self._switch(None)

        return timed

    def hook(self, obj: Any, method: str, category: str) -> None:
        """Count the time of ``obj.method`` in ``category``, through an instance attribute that shadows it."""
        setattr(obj, method, self.wrap(category, getattr(obj, method)))

    @staticmethod
    def overhead(calls: int = 20_000) -> tuple[float, float]:
        """:return: the wall-clock and CPU seconds that timing one call adds (measured on a call that does nothing)"""
        clock = Clock()
        timed, plain = clock.wrap("act", lambda: None), lambda: None
        costs = []
        for function in (plain, timed, plain, timed):
            wall, cpu = time.perf_counter(), time.thread_time()
            for _ in range(calls):
                function()
            costs.append(((time.perf_counter() - wall) / calls, (time.thread_time() - cpu) / calls))
        return (
            max(0.0, min(costs[1][0], costs[3][0]) - min(costs[0][0], costs[2][0])),
            max(0.0, min(costs[1][1], costs[3][1]) - min(costs[0][1], costs[2][1])),
        )

    def breakdown(self, agent_steps: int) -> dict[str, Any]:
        """
        :return: microseconds per agent step: each category (its parts included), its parts, ``python``, and what
            the timing itself added (``clock_overhead``, mostly inside the Python categories: not subtracted)
        """
        wall_overhead, cpu_overhead = self.overhead()
        us = {name: seconds * 1e6 / agent_steps for name, seconds in self.seconds.items()}
        cpu_us = {name: seconds * 1e6 / agent_steps for name, seconds in self.cpu_seconds.items()}
        categories = {name: us[name] for name in CATEGORIES}
        cpu_categories = {name: cpu_us[name] for name in CATEGORIES}
        for part, category in PARTS.items():
            categories[category] += us[part]
            cpu_categories[category] += cpu_us[part]
        return {
            "breakdown_us_per_step": categories,
            "parts_us_per_step": {part: us[part] for part in PARTS},
            "total_us_per_step": sum(us.values()),
            "python_us_per_step": sum(us.values()) - sum(us[name] for name in NOT_PYTHON),
            "cpu_breakdown_us_per_step": cpu_categories,
            "cpu_parts_us_per_step": {part: cpu_us[part] for part in PARTS},
            "python_cpu_us_per_step": sum(cpu_us.values()) - sum(cpu_us[name] for name in NOT_PYTHON),
            "python_outside_graph_us_per_step": sum(us[name] for name in ("act", "store", "callbacks", "other")),
            "python_outside_graph_cpu_us_per_step": sum(
                cpu_us[name] for name in ("act", "store", "callbacks", "other")
            ),
            "clock_overhead_us_per_step": self.calls * wall_overhead * 1e6 / agent_steps,
            "clock_overhead_cpu_us_per_step": self.calls * cpu_overhead * 1e6 / agent_steps,
            "timed_calls_per_step": self.calls / agent_steps,
        }


class TimedCallbackList(CallbackList):
    """SB3's ``CallbackList``, its per-step calls counted in ``callbacks``."""

    def __init__(self, callbacks: list, clock: Clock):
        super().__init__(callbacks)
        for method in ("on_step", "update_locals", "on_rollout_start", "on_rollout_end"):
            clock.hook(self, method, "callbacks")


def instrument(model: OffPolicyAlgorithm, clock: Clock) -> None:
    """Hook ``clock`` into ``model``, its env and its replay buffer (see the module docstring)."""
    from breakout_sb3.fast import AleVecEnv

    env = model.get_env()
    if isinstance(env, AleVecEnv):
        for method in ("send", "recv", "reset"):
            clock.hook(env.venv, method, "env_wait")
    else:
        for method in ("step_async", "step_wait"):
            clock.hook(env, method, "env_wait")
    clock.hook(model, "_sample_action", "act")
    clock.hook(model.policy, "_predict", "act_net")
    clock.hook(model, "_store_transition", "store")
    replay = model.replay_buffer
    for method in ("sample", "sample_batches"):
        if hasattr(replay, method):
            clock.hook(replay, method, "sample")
    if hasattr(replay, "storage"):  # FrameStackReplayBuffer
        clock.hook(replay.storage, "gather_stacks", "sample_gather")
    else:
        clock.hook(replay, "_get_samples", "sample_gather")
    if hasattr(model, "_run_updates"):  # FastDQN
        clock.hook(model, "_run_updates", "update")
        clock.hook(model, "_update", "update_net")
    else:
        clock.hook(model, "train", "update_net")


def time_update(model: Any, batch_size: int = 32, repeats: int = 7, seed: int = 0, warmup: int = 3) -> list[float]:
    """
    The update-bound ceiling's measure: ``repeats`` timings (seconds) of one update's arithmetic on a batch of
    ``batch_size`` random transitions, as ``FastDQN._update`` computes it (forward of both networks, Huber loss,
    backward, gradient clipping, Adam; in the model's precision and layout), after ``warmup`` untimed ones; on a
    GPU, synchronised.

    :param model: a ``FastDQN`` (its weights and Adam state change)
    """
    rng = np.random.default_rng(seed)
    shape = (batch_size, *model.observation_space.shape)
    device = model.device
    observations = th.as_tensor(rng.integers(0, 256, shape, dtype=np.uint8), device=device)
    next_observations = th.as_tensor(rng.integers(0, 256, shape, dtype=np.uint8), device=device)
    actions = th.as_tensor(rng.integers(0, model.action_space.n, (batch_size, 1)), device=device)
    rewards = th.as_tensor(rng.choice([-1.0, 0.0, 1.0], (batch_size, 1)).astype(np.float32), device=device)
    dones = th.as_tensor((rng.random((batch_size, 1)) < 0.05).astype(np.float32), device=device)
    model.policy.set_training_mode(True)
    timings = []
    for i in range(warmup + repeats):
        if device.type == "cuda":
            th.cuda.synchronize()
        start = time.perf_counter()
        model._update(observations, actions, next_observations, rewards, dones)
        if device.type == "cuda":
            th.cuda.synchronize()
        if i >= warmup:
            timings.append(time.perf_counter() - start)
    return timings
