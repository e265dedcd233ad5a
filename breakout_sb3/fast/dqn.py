"""SB3's DQN with the same update, computed with fewer host-device round trips."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np
import torch as th
from stable_baselines3 import DQN
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.type_aliases import RolloutReturn, TrainFreq, TrainFrequencyUnit
from stable_baselines3.common.utils import should_collect_more_steps
from stable_baselines3.common.vec_env import VecEnv
from torch.nn import functional as F


class FastDQN(DQN):
    """
    SB3's ``DQN``, same hyperparameters and same update (Huber loss on ``r + gamma * (1 - done) * max_a' Q_target``,
    gradient norm clipping, Adam, hard target copy every ``target_update_interval`` steps), made fast for many envs
    and a GPU. A zip it saves is a DQN zip: plain ``DQN.load`` opens it.

    What changes, and why it does not change the recipe:

    - **Pipelined updates.** The gradient steps due at the end of a rollout are launched right after the rollout's
      last ``env.step_async`` and run while the envs step (ale-py's vector env steps in C++ threads). They sample
      the replay as it was before that last env step, so the newest ``n_envs`` transitions become sampleable one
      update later than in SB3; the number of updates, their timing in steps and the policy used to act are
      SB3's (the next action is chosen after those updates).
    - **No per-update synchronisation.** The loss stays on the device (SB3 calls ``loss.item()`` per update); its
      mean over each ``train`` call is logged as ``train/loss`` when the logger writes it.
    - **CUDA graphs** (``cuda_graph=True`` on a CUDA device): one update (loss, backward, clipping, Adam) is
      captured once and replayed, so an update costs one launch instead of about a hundred. Adam is switched to its
      ``capturable`` mode for this (same arithmetic, its step count kept on the GPU); zips are saved without it.
    - **Per-env exploration.** SB3's ``DQN.predict`` draws one random number per call, so with many envs they all
      explore or all exploit together; here each env draws its own, as each would alone.

    ``gradient_steps`` must be >= 1 and ``train_freq`` in steps. Keep the replay ratio of the recipe
    (``gradient_steps * batch_size / (train_freq * n_envs)`` = 32 / 4) when changing ``n_envs``.

    :param cuda_graph: capture the update in a CUDA graph when the model is on a CUDA device
    :param kwargs: ``DQN``'s parameters
    """

    # Not saved in the zip: rebuilt on demand.
    _RUNTIME_ATTRS: ClassVar[tuple[str, ...]] = ("_graph", "_static", "_graph_lr", "_loss_sum", "_loss_count")

    def __init__(self, *args: Any, cuda_graph: bool = True, **kwargs: Any):
        self.cuda_graph = cuda_graph
        self._graph: th.cuda.CUDAGraph | None = None
        self._static: dict[str, th.Tensor] = {}
        self._graph_lr: float | None = None
        self._loss_sum: th.Tensor | None = None
        self._loss_count = 0
        super().__init__(*args, **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        if self.gradient_steps < 1:
            raise ValueError(f"FastDQN needs gradient_steps >= 1, got {self.gradient_steps}")
        if self.train_freq.unit != TrainFrequencyUnit.STEP:
            raise ValueError("FastDQN needs train_freq in steps")
        self._graph = None

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
        action, state = self.policy.predict(observation, state, episode_start, deterministic)
        if deterministic or self.exploration_rate <= 0.0:
            return action, state
        if not self.policy.is_vectorized_observation(observation):
            if np.random.rand() < self.exploration_rate:
                action = np.array(self.action_space.sample())
            return action, state
        explore = np.random.rand(len(action)) < self.exploration_rate
        for i in np.flatnonzero(explore):
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
            if last_step and self.num_timesteps + env.num_envs > learning_starts:
                self._run_updates(self.gradient_steps, self.batch_size)
            new_obs, rewards, dones, infos = env.step_wait()

            self.num_timesteps += env.num_envs
            num_collected_steps += 1
            callback.update_locals(locals())
            if not callback.on_step():
                return RolloutReturn(num_collected_steps * env.num_envs, num_collected_episodes, False)
            self._update_info_buffer(infos, dones)
            self._store_transition(replay_buffer, buffer_actions, new_obs, rewards, dones, infos)
            self._update_current_progress_remaining(self.num_timesteps, self._total_timesteps)
            self._on_step()
            for done in dones:
                if done:
                    num_collected_episodes += 1
                    self._episode_num += 1
                    if log_interval is not None and self._episode_num % log_interval == 0:
                        self.dump_logs()
        callback.on_rollout_end()
        return RolloutReturn(num_collected_steps * env.num_envs, num_collected_episodes, continue_training)

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        # Called by SB3's learn() after each rollout: the updates already ran during the rollout's last env step.
        if self._loss_count:
            assert self._loss_sum is not None
            # One device sync per rollout, after the GPU has finished the updates the next action waits for anyway.
            self.logger.record("train/loss", float(self._loss_sum) / self._loss_count)
            self._loss_sum, self._loss_count = None, 0
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Saved without Adam's capturable mode, which a CPU cannot step: the zip is a plain DQN zip.
        capturable = self._set_capturable(False)
        try:
            super().save(*args, **kwargs)
        finally:
            self._set_capturable(capturable)

    def _set_training_mode(self, mode: bool) -> None:
        # SB3 walks every module at each call (0.2 ms); three calls per vector step add up.
        if self.policy.training != mode:
            self.policy.set_training_mode(mode)

    def _set_capturable(self, capturable: bool) -> bool:
        """Switch Adam's capturable mode (needed inside a CUDA graph). :return: the previous mode"""
        optimizer = self.policy.optimizer
        previous = any(group.get("capturable", False) for group in optimizer.param_groups)
        for group in optimizer.param_groups:
            group["capturable"] = capturable
        if capturable:
            for param, state in optimizer.state.items():
                if "step" in state and state["step"].device != param.device:
                    state["step"] = state["step"].to(device=param.device, dtype=th.float32)
        return previous

    # --- the update -------------------------------------------------------------------------------------------------

    def _run_updates(self, gradient_steps: int, batch_size: int) -> None:
        if self.replay_buffer is None or self.replay_buffer.size() == 0:
            return
        self._set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        use_graph = self.cuda_graph and self.device.type == "cuda"
        self._set_capturable(use_graph)
        for _ in range(gradient_steps):
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            if use_graph:
                try:
                    loss = self._graph_update(data, batch_size)
                except RuntimeError as e:  # a capture the driver or torch version refuses: train on, without graphs
                    if self._graph is not None:
                        raise
                    warnings.warn(f"CUDA graph capture failed, updating without graphs: {e}", stacklevel=2)
                    self.cuda_graph = use_graph = False
                    self._set_capturable(False)
                    loss = self._update(
                        data.observations, data.actions, data.next_observations, data.rewards, data.dones
                    )
            else:
                loss = self._update(data.observations, data.actions, data.next_observations, data.rewards, data.dones)
            self._loss_sum = loss.detach().clone() if self._loss_sum is None else self._loss_sum + loss.detach()
            self._loss_count += 1
        self._n_updates += gradient_steps
        self._set_training_mode(False)

    def _update(
        self,
        observations: th.Tensor,
        actions: th.Tensor,
        next_observations: th.Tensor,
        rewards: th.Tensor,
        dones: th.Tensor,
    ) -> th.Tensor:
        """One gradient step, as SB3's ``DQN.train`` computes it for one batch. :return: the loss (on the device)"""
        with th.no_grad():
            next_q_values = self.q_net_target(next_observations).max(dim=1).values.reshape(-1, 1)
            target_q_values = rewards + (1 - dones) * self.gamma * next_q_values
        current_q_values = th.gather(self.q_net(observations), dim=1, index=actions.long())
        loss = F.smooth_l1_loss(current_q_values, target_q_values)
        self.policy.optimizer.zero_grad(set_to_none=False)
        loss.backward()
        th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
        self.policy.optimizer.step()
        return loss

    def _graph_update(self, data: Any, batch_size: int) -> th.Tensor:
        lr = self.policy.optimizer.param_groups[0]["lr"]
        if self._graph is None or self._graph_lr != lr or self._static["observations"].shape[0] != batch_size:
            self._capture(data, lr)
        static = self._static
        for name in ("observations", "actions", "next_observations", "rewards", "dones"):
            static[name].copy_(getattr(data, name), non_blocking=True)
        assert self._graph is not None
        self._graph.replay()
        return static["loss"]

    def _capture(self, data: Any, lr: float) -> None:
        """Capture one update in a CUDA graph; the warm-up updates it needs leave weights and Adam unchanged."""
        optimizer = self.policy.optimizer
        static = {name: getattr(data, name).clone() for name in ("observations", "actions", "next_observations")}
        static.update(rewards=data.rewards.clone(), dones=data.dones.clone())
        params = list(self.policy.parameters())
        saved_params = [p.detach().clone() for p in params]
        saved_state = {id(p): {k: v.clone() for k, v in s.items()} for p, s in optimizer.state.items()}
        args = (static["observations"], static["actions"], static["next_observations"], static["rewards"])
        side = th.cuda.Stream()
        side.wait_stream(th.cuda.current_stream())
        with th.cuda.stream(side):
            for _ in range(3):
                self._update(*args, static["dones"])
        th.cuda.current_stream().wait_stream(side)
        graph = th.cuda.CUDAGraph()
        with th.cuda.graph(graph):
            static["loss"] = self._update(*args, static["dones"])
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
        self._graph, self._static, self._graph_lr = graph, static, lr
