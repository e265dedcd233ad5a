"""SB3's DQN with the same update, computed with fewer host-device round trips."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.type_aliases import ReplayBufferSamples, RolloutReturn, TrainFreq, TrainFrequencyUnit
from stable_baselines3.common.utils import polyak_update, should_collect_more_steps
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.dqn.policies import DQNPolicy, QNetwork
from torch.nn import functional as F

from breakout_sb3.errors import first_line
from breakout_sb3.fast.graph import (
    CudaGraphs,
    capture_refused,
    gpu_failure,
    non_capturable_state_dict,
    set_capturable,
    tensor_addresses,
)
from breakout_sb3.fast.replay import FrameStackReplayBuffer
from breakout_sb3.precision import FLOAT32, check_precision, conv_memory_format, in_layout, q_values


class FastDQN(DQN):
    """
    SB3's ``DQN``, same hyperparameters and same update (Huber loss on ``r + gamma * (1 - done) * max_a' Q_target``,
    gradient norm clipping, Adam, hard target copy every ``target_update_interval`` steps), made fast for many envs
    and a GPU. A zip it saves is a DQN zip: plain ``DQN.load`` opens it.

    What changes, and why it does not change the recipe:

    - **Pipelined updates.** The gradient steps due at the end of a rollout are launched right after the rollout's
      last ``env.step_async`` and run while the envs step (ale-py's vector env steps in C++ threads). They sample
      the replay as it was before that last env step, so the newest ``n_envs`` transitions become sampleable one
      update later than in SB3; the number of updates, their timing in steps, the target network they use (a
      target sync due at that env step is made before them, as SB3's ``_on_step`` makes it before ``train``) and
      the policy used to act are SB3's (the next action is chosen after those updates).
    - **One sample per vector step.** With a ``FrameStackReplayBuffer``, the ``gradient_steps x batch_size``
      transitions of a vector step's updates are drawn at once, uniformly as SB3 draws them, and gathered at once
      (``sample_batches``), on the GPU when the replay lives there. Other buffers are sampled as SB3 does.
    - **No per-update synchronisation.** The loss stays on the device (SB3 calls ``loss.item()`` per update); its
      mean over each ``train`` call is logged as ``train/loss`` when the logger writes it.
    - **CUDA graphs** (``cuda_graph=True`` on a CUDA device): all of a vector step's updates (loss, backward,
      clipping, Adam), and their sampling when the replay lives on the model's GPU, are captured once, on the
      model's device, and replayed, so they cost one launch instead of hundreds. Adam is switched to its
      ``capturable`` mode for this (same arithmetic, its step counts kept on the GPU); zips are saved without it
      (step counts on the CPU, as non-capturable Adam keeps them). The graph is captured again whenever a tensor it
      reads is replaced (``_graph_inputs``). A capture that CUDA or torch refuses turns graphs off for this process
      (a warning; the updates run as without graphs); running out of GPU memory or a CUDA error during the
      capture stops training with a one-line ``CudaUpdateError``.
    - **Channels-last.** The networks (their weights, gradients and Adam's state) and the batches of an update are
      laid out channels-last where convolutions run fastest so (``conv_memory_format``: on CPUs and CUDA GPUs),
      chosen once when the model is set up. The same float32 arithmetic in another summation order: the Q-values,
      loss and gradients agree with SB3's to float32 rounding. A saved zip holds the same weights (``DQN.load``
      copies them into its own layout).
    - **Mixed precision on request** (``precision="bf16"``): the networks' forward passes of the update run under
      bf16 autocast, the weights, Adam, the TD target, the loss and the clipping in float32
      (``breakout_sb3.precision``); inside the CUDA graph too. Acting and the saved zip stay float32.
    - **Per-env exploration.** SB3's ``DQN.predict`` draws one random number per call, so with many envs they all
      explore or all exploit together; here each env draws its own, as each would alone.
    - **Python work per event, not per step.** The vector step's transitions go to a ``FrameStackReplayBuffer``
      without copying the observations (``add_step``); SB3's episode bookkeeping (``ep_info_buffer``, episode
      counts, log dumps) looks only at the envs that are done; actions are chosen without SB3's per-call
      ``set_training_mode`` walk of the network. With several episode ends in one vector step, SB3 may dump its
      logs several times in that step; here once.

    ``gradient_steps`` must be >= 1 and ``train_freq`` in steps. Keep the replay ratio of the recipe
    (``gradient_steps * batch_size / (train_freq * n_envs)`` = 32 / 4) when changing ``n_envs``.

    :param cuda_graph: capture the updates in a CUDA graph when the model is on a CUDA device
    :param overlap_env: launch the updates due after a vector step while the envs compute it (pipelined, see above);
        False: after it, as SB3 does (on a small CPU, where the env threads and the update compete for the cores)
    :param precision: the update's arithmetic: ``"float32"`` or ``"bf16"`` (mixed precision, see above); refused
        on a device without native bf16
    :param kwargs: ``DQN``'s parameters
    """

    # Not saved in the zip: rebuilt on demand, or about this process only.
    _RUNTIME_ATTRS: ClassVar[tuple[str, ...]] = (
        "_graphs",
        "_graph",
        "_static",
        "_graph_key",
        "_graphs_refused",
        "_target_synced_at",
        "_loss_sum",
        "_loss_count",
        "_mode_modules_of",
        "_mode_modules_list",
        "_memory_format",
    )
    # The CUDA calls of the captured update (a CPU test stands in for them)
    _graphs: CudaGraphs = CudaGraphs()

    def __init__(
        self, *args: Any, cuda_graph: bool = True, overlap_env: bool = True, precision: str = FLOAT32, **kwargs: Any
    ):
        self.cuda_graph = cuda_graph
        self.overlap_env = overlap_env
        self.precision = precision
        self._memory_format = th.contiguous_format
        self._graph: Any = None
        self._static: dict[str, th.Tensor] = {}
        self._graph_key: tuple | None = None
        # Why this process updates without graphs although cuda_graph is True (a capture was refused); not saved:
        # a resumed run tries again
        self._graphs_refused: str | None = None
        # The _n_calls whose target sync collect_rollouts has already made, before that step's updates
        self._target_synced_at: int | None = None
        self._loss_sum: th.Tensor | None = None
        self._loss_count = 0
        self._mode_modules_of: th.nn.Module | None = None
        self._mode_modules_list: list[th.nn.Module] | None = None
        super().__init__(*args, **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        if self.gradient_steps < 1:
            raise ValueError(f"FastDQN needs gradient_steps >= 1, got {self.gradient_steps}")
        if self.train_freq.unit != TrainFrequencyUnit.STEP:
            raise ValueError("FastDQN needs train_freq in steps")
        check_precision(self.precision, self.device, where="precision")
        self._memory_format = conv_memory_format(self.device)
        self.policy.to(memory_format=self._memory_format)  # the same Parameter objects, which Adam holds
        self._release_graph()

    def _excluded_save_params(self) -> list[str]:
        # Nor the replay buffer's class, which would tie the zip to this package: plain DQN.load opens it anywhere
        # (rl-zoo3 and `breakout-sb3 resume` pass the class again from the YAML).
        return [*super()._excluded_save_params(), *self._RUNTIME_ATTRS, "replay_buffer_class", "replay_buffer_kwargs"]

    # --- acting -----------------------------------------------------------------------------------------------------

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        shape = self.observation_space.shape
        batch = isinstance(observation, np.ndarray) and observation.ndim == len(shape) + 1
        if batch and observation.shape[1:] == shape:
            # A batch of observations, as SB3's policy.predict takes it, without its per-call walk of the network
            self._set_training_mode(False)
            with th.no_grad():
                action = self.policy._predict(th.as_tensor(observation, device=self.device), deterministic=True)
            action = action.cpu().numpy().reshape((-1, *self.action_space.shape))
        else:
            action, state = self.policy.predict(observation, state, episode_start, deterministic)
            batch = self.policy.is_vectorized_observation(observation)
        if deterministic or self.exploration_rate <= 0.0:
            return action, state
        if not batch:
            if np.random.rand() < self.exploration_rate:
                action = np.array(self.action_space.sample())
            return action, state
        explore = np.flatnonzero(np.random.rand(len(action)) < self.exploration_rate)
        if not len(explore):
            return action, state
        if isinstance(self.action_space, spaces.Discrete):
            space = self.action_space
            action[explore] = space.start + space.np_random.integers(space.n, size=len(explore))
        else:
            for i in explore:
                action[i] = self.action_space.sample()
        return action, state

    # --- collecting, with the updates launched while the envs step ----------------------------------------------------

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        train_freq: TrainFreq,
        replay_buffer: ReplayBuffer,
        action_noise: ActionNoise | None = None,
        learning_starts: int = 0,
        log_interval: int | None = None,
    ) -> RolloutReturn:
        # SB3's OffPolicyAlgorithm.collect_rollouts for a DQN (no SDE, no action noise), with env.step split in
        # step_async/step_wait around the launch of the updates due at the end of this rollout.
        self._set_training_mode(False)
        num_collected_steps, num_collected_episodes = 0, 0
        callback.on_rollout_start()
        continue_training = True
        while should_collect_more_steps(train_freq, num_collected_steps, num_collected_episodes):
            actions, buffer_actions = self._sample_action(learning_starts, action_noise, env.num_envs)
            env.step_async(actions)
            last_step = num_collected_steps + 1 == train_freq.frequency
            if self.overlap_env and last_step and self.num_timesteps + env.num_envs > learning_starts:
                # SB3 syncs the target network (in _on_step, after this env step) before these updates: so here
                if self._sync_target_if_due(self._n_calls + 1):
                    self._target_synced_at = self._n_calls + 1
                self._run_updates(self.gradient_steps, self.batch_size)
            new_obs, rewards, dones, infos = env.step_wait()

            self.num_timesteps += env.num_envs
            num_collected_steps += 1
            callback.update_locals(locals())
            if not callback.on_step():
                self._target_synced_at = None  # SB3 would not have synced: the next _on_step does
                return RolloutReturn(num_collected_steps * env.num_envs, num_collected_episodes, False)
            self._update_info_buffer(infos, dones)
            self._store_transition(replay_buffer, buffer_actions, new_obs, rewards, dones, infos)
            self._update_current_progress_remaining(self.num_timesteps, self._total_timesteps)
            self._on_step()
            n_done = int(np.count_nonzero(dones))
            if n_done:
                episodes_before = self._episode_num
                num_collected_episodes += n_done
                self._episode_num += n_done
                if log_interval is not None and self._episode_num // log_interval > episodes_before // log_interval:
                    self.dump_logs()
        callback.on_rollout_end()
        return RolloutReturn(num_collected_steps * env.num_envs, num_collected_episodes, continue_training)

    def _on_step(self) -> None:
        # SB3's DQN._on_step, but for a target sync that collect_rollouts made already, before the updates it launched
        # during this env step (SB3 trains after _on_step)
        self._n_calls += 1
        if self._target_synced_at != self._n_calls:
            self._sync_target_if_due(self._n_calls)
        self._target_synced_at = None
        self.exploration_rate = self.exploration_schedule(self._current_progress_remaining)
        self.logger.record("rollout/exploration_rate", self.exploration_rate)

    def _sync_target_if_due(self, n_calls: int) -> bool:
        """SB3's target sync, if the ``n_calls``-th env step makes one. :return: whether it did"""
        if n_calls % max(self.target_update_interval // self.n_envs, 1) != 0:
            return False
        polyak_update(self.q_net.parameters(), self.q_net_target.parameters(), self.tau)
        # Copy running stats, see SB3's GH issue #996
        polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)
        return True

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        # Called by SB3's learn() after each rollout: with overlap_env the updates already ran during the rollout's
        # last env step; without, they run here, as in SB3.
        if not self.overlap_env:
            self._run_updates(gradient_steps, batch_size)
        if self._loss_count:
            assert self._loss_sum is not None
            # One device sync per rollout, after the GPU has finished the updates the next action waits for anyway.
            self.logger.record("train/loss", float(self._loss_sum) / self._loss_count)
            self._loss_sum, self._loss_count = None, 0
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")

    def _update_info_buffer(self, infos: list[dict[str, Any]], dones: np.ndarray | None = None) -> None:
        # SB3's, looking only at the envs that are done: Monitor's "episode" and "is_success" come with a done
        if dones is None:
            super()._update_info_buffer(infos, dones)
            return
        assert self.ep_info_buffer is not None and self.ep_success_buffer is not None
        for idx in np.flatnonzero(dones):
            maybe_ep_info = infos[idx].get("episode")
            maybe_is_success = infos[idx].get("is_success")
            if maybe_ep_info is not None:
                self.ep_info_buffer.extend([maybe_ep_info])
            if maybe_is_success is not None:
                self.ep_success_buffer.append(maybe_is_success)

    def _store_transition(
        self,
        replay_buffer: ReplayBuffer,
        buffer_action: np.ndarray,
        new_obs: np.ndarray | dict[str, np.ndarray],
        reward: np.ndarray,
        dones: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        # SB3's, but a FrameStackReplayBuffer takes new_obs and the terminal observations as they are (add_step)
        # instead of a copy of new_obs with the terminal observations written in
        if not isinstance(replay_buffer, FrameStackReplayBuffer) or self._vec_normalize_env is not None:
            super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)
            return
        terminal_obs = {}
        timeouts = np.zeros(len(dones), dtype=bool)
        for idx in np.flatnonzero(dones):
            if infos[idx].get("terminal_observation") is not None:
                terminal_obs[int(idx)] = infos[idx]["terminal_observation"]
            timeouts[idx] = infos[idx].get("TimeLimit.truncated", False)
        self._last_original_obs = self._last_obs
        replay_buffer.add_step(self._last_obs, new_obs, buffer_action, reward, dones, terminal_obs, timeouts)
        self._last_obs = new_obs

    def get_parameters(self) -> dict[str, dict]:
        # What save() writes: Adam as non-capturable Adam keeps it (its step counts on the CPU), so that the zip is a
        # plain DQN zip that trains on any device without a GPU synchronisation per step. A copy: the live state
        # stays where a captured graph reads it.
        params = super().get_parameters()
        if "policy.optimizer" in params:
            params["policy.optimizer"] = non_capturable_state_dict(params["policy.optimizer"])
        return params

    def _set_training_mode(self, mode: bool) -> None:
        # SB3's set_training_mode sets the flag of every module of the online network through nn.Module.train and
        # nn.Module.__setattr__, slow enough to matter twice per vector step: the same flags, set directly.
        if self.policy.training == mode:
            return
        modules = self._mode_modules()
        if modules is None:
            self.policy.set_training_mode(mode)
            return
        for module in modules:
            module.__dict__["training"] = mode

    def _mode_modules(self) -> list[th.nn.Module] | None:
        """:return: the modules whose flag DQNPolicy.set_training_mode sets (None: a policy that does more)"""
        if self._mode_modules_of is not self.policy:
            modules = [self.policy, *self.policy.q_net.modules()]
            standard = (
                type(self.policy).set_training_mode is DQNPolicy.set_training_mode
                and all(type(module).train is th.nn.Module.train for module in modules[1:])
                and type(self.policy.q_net).set_training_mode is QNetwork.set_training_mode
            )
            self._mode_modules_list = modules if standard else None
            self._mode_modules_of = self.policy
        return self._mode_modules_list

    def _set_capturable(self, capturable: bool) -> None:
        """Switch Adam's capturable mode (needed inside a CUDA graph), its step counts where that mode keeps them."""
        set_capturable(self.policy.optimizer, capturable)

    # --- the update -------------------------------------------------------------------------------------------------

    def _run_updates(self, gradient_steps: int, batch_size: int) -> None:
        if self.replay_buffer is None or self.replay_buffer.size() == 0:
            return
        self._set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        batched = isinstance(self.replay_buffer, FrameStackReplayBuffer) and self._vec_normalize_env is None
        device = self._graph_device()
        loss_sum = None if device is None else self._graph_updates(gradient_steps, batch_size, batched, device)
        if loss_sum is None:  # without graphs, or the capture was refused
            self._release_graph()
            self._set_capturable(False)
            loss_sum = self._updates(gradient_steps, batch_size, batched)
        self._loss_sum = loss_sum.clone() if self._loss_sum is None else self._loss_sum + loss_sum
        self._loss_count += gradient_steps
        self._n_updates += gradient_steps
        self._set_training_mode(False)

    def _graph_device(self) -> th.device | None:
        """:return: the device to capture the updates on, the model's (with its index); None: no graphs"""
        if not self.cuda_graph or self._graphs_refused is not None:
            return None
        device = next(self.policy.parameters()).device
        return device if self._graphs.supports(device) else None

    def _updates(
        self, gradient_steps: int, batch_size: int, batched: bool, data: ReplayBufferSamples | None = None
    ) -> th.Tensor:
        """
        ``gradient_steps`` updates, one after the other. The transitions: ``data`` if given, else with ``batched``
        one draw of ``gradient_steps x batch_size`` from the replay (``sample_batches``), else one ``sample`` per
        update, as SB3 samples. What a CUDA graph captures (then with ``batched`` and the replay on this GPU, or
        ``data``). :return: the sum of their losses (on the device)
        """
        if data is None and batched:
            data = self.replay_buffer.sample_batches(gradient_steps, batch_size)
        if data is None:
            replay, env = self.replay_buffer, self._vec_normalize_env
            batches = (replay.sample(batch_size, env=env) for _ in range(gradient_steps))
        else:
            batches = zip(*(tensor.split(batch_size) for tensor in data[:5]), strict=True)
        losses = [
            self._update(observations, actions, next_observations, rewards, dones)
            for observations, actions, next_observations, dones, rewards in (batch[:5] for batch in batches)
        ]
        with th.no_grad():
            return th.stack(losses).sum()

    def _update(
        self,
        observations: th.Tensor,
        actions: th.Tensor,
        next_observations: th.Tensor,
        rewards: th.Tensor,
        dones: th.Tensor,
    ) -> th.Tensor:
        """
        One gradient step, as SB3's ``DQN.train`` computes it for one batch, the batch in the networks' layout and
        their forward passes in ``precision``. :return: the loss (on the device)
        """
        observations = in_layout(observations, self._memory_format)
        next_observations = in_layout(next_observations, self._memory_format)
        with th.no_grad():
            next_q_values = q_values(self.q_net_target, next_observations, self.precision)
            next_q_values = next_q_values.max(dim=1).values.reshape(-1, 1)
            target_q_values = rewards + (1 - dones) * self.gamma * next_q_values
        current_q_values = th.gather(q_values(self.q_net, observations, self.precision), dim=1, index=actions.long())
        loss = F.smooth_l1_loss(current_q_values, target_q_values)
        self.policy.optimizer.zero_grad(set_to_none=False)
        loss.backward()
        th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
        self.policy.optimizer.step()
        return loss

    def _graph_updates(
        self, gradient_steps: int, batch_size: int, batched: bool, device: th.device
    ) -> th.Tensor | None:
        """
        ``_updates`` as one CUDA graph replay on ``device``, captured first if there is no graph yet or if what the
        graph reads has changed (``_graph_inputs``). When the replay samples on ``device``, the graph samples too;
        otherwise the transitions are sampled on the host and copied into the graph's input tensors.

        :return: the sum of the losses (a tensor the next replay overwrites); None if the capture was refused, which
            turns graphs off for this process (with a warning)
        :raise CudaUpdateError: the GPU ran out of memory or failed otherwise during the capture
        """
        replay = self.replay_buffer
        in_graph = batched and replay.sampling_device == device
        with self._graphs.on_device(device):
            self._set_capturable(True)
            data = None
            if not in_graph:
                if batched:
                    data = replay.sample_batches(gradient_steps, batch_size)
                else:
                    samples = [replay.sample(batch_size, env=self._vec_normalize_env) for _ in range(gradient_steps)]
                    data = ReplayBufferSamples(*(th.cat([s[i] for s in samples]) for i in range(5)))
            if self._graph is None or self._graph_key != self._graph_inputs(gradient_steps, batch_size, in_graph):
                self._release_graph()
                try:
                    self._capture(gradient_steps, batch_size, batched, data, device)
                except Exception as error:
                    if not capture_refused(error):
                        failure = gpu_failure(error)
                        if failure is None:
                            raise
                        raise failure from error
                    self._graphs_refused = first_line(error)
                    warnings.warn(
                        f"CUDA graph capture refused, updating without graphs in this process: {self._graphs_refused}",
                        stacklevel=3,
                    )
                    return None
                self._graph_key = self._graph_inputs(gradient_steps, batch_size, in_graph)
            static = self._static
            if data is not None:
                for name in ("observations", "actions", "next_observations", "rewards", "dones"):
                    static[name].copy_(getattr(data, name), non_blocking=True)
            self._graph.replay()
        return static["loss_sum"]

    def _graph_inputs(self, gradient_steps: int, batch_size: int, in_graph: bool) -> tuple:
        """
        What a captured graph depends on: the sizes and constants it was captured with, and the address of every
        tensor it reads or writes (weights, gradients, Adam's state, and the replay's storage when the graph samples
        it). It changes when any of them is replaced: another replay (``attach_replay_buffer``, an unpickled one),
        ``optimizer.load_state_dict``, gradients set to None, Adam's step counts moved, another learning rate. A
        graph replayed after such a change would read and write freed memory: it is captured again instead.
        """
        optimizer = self.policy.optimizer
        params = list(self.policy.parameters())
        state = [value for values in optimizer.state.values() for value in values.values() if th.is_tensor(value)]
        tensors = [*params, *(param.grad for param in params), *self.policy.buffers(), *state]
        hyperparams = tuple(
            tuple((name, value) for name, value in group.items() if name != "params")
            for group in optimizer.param_groups
        )
        replay = self.replay_buffer.sampling_key() if in_graph else ()
        constants = (gradient_steps, batch_size, in_graph, self.gamma, self.max_grad_norm, self.precision)
        return (*constants, hyperparams, tensor_addresses(tensors), replay)

    def _capture(
        self,
        gradient_steps: int,
        batch_size: int,
        batched: bool,
        data: ReplayBufferSamples | None,
        device: th.device,
    ) -> None:
        """
        Capture ``_updates`` in a graph on ``device``, after the warm-up updates torch needs (on a side stream): what
        they and the capture change in the weights and Adam's state is undone, as if they had never run.
        """
        graphs = self._graphs
        optimizer = self.policy.optimizer
        static: dict[str, Any] = {}
        inputs = None
        if data is not None:
            static = {name: getattr(data, name).clone() for name in ReplayBufferSamples._fields[:5]}
            inputs = ReplayBufferSamples(*(static[name] for name in ReplayBufferSamples._fields[:5]), None)

        def updates() -> th.Tensor:
            return self._updates(gradient_steps, batch_size, batched, inputs)

        params = list(self.policy.parameters())
        saved_params = [p.detach().clone() for p in params]
        saved_state = {id(p): {k: v.clone() for k, v in s.items()} for p, s in optimizer.state.items()}
        try:
            side = graphs.new_stream(device)
            main = graphs.current_stream(device)
            graphs.wait_stream(side, main)
            with graphs.stream(device, side), warnings.catch_warnings():
                # torch warns once that a capturable Adam is stepped outside a graph: the warm-up has to
                warnings.filterwarnings("ignore", message="This instance was constructed with capturable=True")
                for _ in range(3):
                    updates()
            graphs.wait_stream(main, side)
            graph, static["loss_sum"] = graphs.capture(device, side, updates)
        finally:  # captured or not, as if the warm-up updates had never run
            with th.no_grad():
                for param, saved in zip(params, saved_params, strict=True):
                    param.copy_(saved)
                for param, state in optimizer.state.items():
                    before = saved_state.get(id(param))
                    for key, value in state.items():
                        if before is not None and key in before:
                            value.copy_(before[key])
                        elif th.is_tensor(value):
                            value.zero_()  # state Adam created during the warm-up: as if it had never stepped
        self._graph, self._static = graph, static

    def _release_graph(self) -> None:
        self._graph, self._static, self._graph_key = None, {}, None
