"""A replay buffer for frame-stacked observations that stores each frame once."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import BaseBuffer, ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.utils import get_device
from stable_baselines3.common.vec_env import VecNormalize

try:
    # Check memory used by replay buffer when possible
    import psutil
except ImportError:
    psutil = None

Array = np.ndarray | th.Tensor


def _torch_dtype(dtype: np.typing.DTypeLike) -> th.dtype:
    return th.from_numpy(np.zeros(0, dtype=dtype)).dtype


def _nbytes(array: Array) -> int:
    if isinstance(array, th.Tensor):
        return array.numel() * array.element_size()
    return array.nbytes


class FrameStackReplayBuffer(ReplayBuffer):
    """
    Drop-in replacement for SB3's ``ReplayBuffer`` (``optimize_memory_usage=False``) for the observations of
    ``VecFrameStack`` stacked on the first axis (channel-first, as SB3's ``VecTransposeImage`` gives them to DQN),
    that stores each frame once instead of ``2 * n_stack`` times per transition.

    For the same ``add()`` calls and the same numpy global random state, ``sample()`` returns exactly what
    ``ReplayBuffer(optimize_memory_usage=False, handle_timeout_termination=...)`` returns.

    Per (step, env), only the newest frame of ``next_obs`` is stored (in a ring of ``buffer_size + n_stack`` steps,
    so that the oldest transition can still rebuild its observation), plus the transition's position in its
    *segment*: the run of transitions where each ``obs`` is the previous ``next_obs``. A segment starts when ``obs``
    is not the previous ``next_obs`` of that env (after a done, VecFrameStack gives ``[0, .., 0, f0]``; after a
    ``reset()`` or a new ``learn()``; or anything else). Its non-zero-padding frames (usually just ``f0``) go to a
    side ring that grows when needed, so that it never overwrites a frame a stored transition still uses.

    Observations are checked, not assumed: an ``obs`` that does not continue the previous ``next_obs`` is stored
    exactly as a new segment, and a ``next_obs`` that is not ``obs`` shifted by one frame plus a new frame (what
    VecFrameStack gives, terminal observations included) raises a ``ValueError``.

    :param buffer_size: Max number of element in the buffer
    :param observation_space: Observation space: a ``Box`` of ``n_stack`` frames stacked on its first axis
    :param action_space: Action space
    :param device: PyTorch device to which the sampled tensors go
    :param n_envs: Number of parallel environments
    :param optimize_memory_usage: Must be False (this buffer already stores each frame once)
    :param handle_timeout_termination: Handle timeout termination (due to timelimit)
        separately and treat the task as infinite horizon task, as SB3's ``ReplayBuffer``
    :param n_stack: Number of stacked frames; default: the size of the first axis (one channel per frame)
    :param storage_device: None to keep everything in numpy arrays in host memory; else a PyTorch device
        ("cuda", "auto", "cpu") on which frames, actions, rewards, dones and timeouts are kept as tensors, so that
        sampling gathers there: only the sampled indices (computed in numpy, a few kB) are copied to it. On a
        CPU, the default numpy storage is faster; "cpu" runs the device code path there (for tests).
    """

    # What lives on ``storage_device`` when one is given; the rest (bookkeeping, indices) stays in host memory
    _STORAGE_ATTRS = ("_frames", "_side_frames", "actions", "rewards", "dones", "timeouts")

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        n_stack: int | None = None,
        storage_device: th.device | str | None = None,
    ):
        if optimize_memory_usage:
            raise ValueError(
                "FrameStackReplayBuffer does not support optimize_memory_usage=True: it already stores each frame "
                "once; use optimize_memory_usage=False"
            )
        if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) < 2:
            raise ValueError(
                f"FrameStackReplayBuffer needs a Box observation space of stacked frames, not {observation_space}"
            )
        # Not ReplayBuffer.__init__: it would allocate the full observation arrays that this class replaces
        BaseBuffer.__init__(self, buffer_size, observation_space, action_space, device, n_envs=n_envs)
        self.buffer_size = max(buffer_size // n_envs, 1)
        self.optimize_memory_usage = False
        self.handle_timeout_termination = handle_timeout_termination

        self.n_stack = n_stack if n_stack is not None else self.obs_shape[0]
        if not 1 <= self.n_stack <= 255 or self.obs_shape[0] % self.n_stack != 0:
            raise ValueError(f"n_stack={self.n_stack} does not divide the first axis of observations {self.obs_shape}")
        self.frame_shape = (self.obs_shape[0] // self.n_stack, *self.obs_shape[1:])
        self.storage_device = storage_device
        self._tensor_device = None if storage_device is None else get_device(storage_device)

        obs_dtype = observation_space.dtype
        # Newest frame of each step's next_obs, in row (step % _ring) * n_envs + env: n_stack more steps than
        # transitions, so that the oldest transition can still rebuild its obs. The last row stays zero.
        self._ring = self.buffer_size + self.n_stack
        self._zero_row = self._ring * self.n_envs
        self._frames = self._zeros((self._zero_row + 1, *self.frame_shape), obs_dtype)
        # Head frames of segments (see the class docstring), indexed by their absolute index % len(_side_frames)
        initial_side = self.n_stack * self.n_envs + self.buffer_size * self.n_envs // 64
        self._side_frames = self._zeros((initial_side, *self.frame_shape), obs_dtype)
        # Per transition: the number of transitions before it in its segment (at most n_stack), the number of
        # head frames of its segment and the absolute index of the newest one in _side_frames
        self._seg_len = np.zeros((self.buffer_size, self.n_envs), dtype=np.uint8)
        self._head_len = np.zeros((self.buffer_size, self.n_envs), dtype=np.uint8)
        self._side_ptr = np.zeros((self.buffer_size, self.n_envs), dtype=np.int64)
        # How far back from the newest frame of next_obs each frame of (obs, next_obs[-1]) is
        self._back = np.arange(self.n_stack, -1, -1, dtype=np.int64)

        self.actions = self._zeros(
            (self.buffer_size, self.n_envs, self.action_dim), self._maybe_cast_dtype(action_space.dtype)
        )
        self.rewards = self._zeros((self.buffer_size, self.n_envs), np.float32)
        self.dones = self._zeros((self.buffer_size, self.n_envs), np.float32)
        self.timeouts = self._zeros((self.buffer_size, self.n_envs), np.float32)

        # Host-side state for add(): the number of adds since reset(), the number of head frames written, the
        # latter at the start of each step (to know which head frames are still in use), and each env's last
        # next_obs with its (seg_len, head_len, side_ptr)
        self._n_added = 0
        self._side_count = 0
        self._step_side_start = np.zeros(self._ring, dtype=np.int64)
        self._last_next_frames = np.zeros((self.n_envs, self.n_stack, *self.frame_shape), dtype=obs_dtype)
        self._last_meta = np.zeros((self.n_envs, 3), dtype=np.int64)
        self._has_last = np.zeros(self.n_envs, dtype=bool)

        if psutil is not None and self._tensor_device is None:
            total_memory_usage = self.nbytes_per_transition * self.buffer_size * self.n_envs
            mem_available = psutil.virtual_memory().available
            if total_memory_usage > mem_available:
                warnings.warn(
                    "This system does not have apparently enough memory to store the complete "
                    f"replay buffer {total_memory_usage / 1e9:.2f}GB > {mem_available / 1e9:.2f}GB",
                    stacklevel=2,
                )

    @property
    def nbytes_per_transition(self) -> float:
        """Bytes of all the arrays this buffer allocated (side ring and bookkeeping included) per transition."""
        arrays = [getattr(self, name) for name in self._STORAGE_ATTRS]
        arrays += [self._seg_len, self._head_len, self._side_ptr, self._back, self._step_side_start]
        arrays += [self._last_next_frames, self._last_meta, self._has_last]
        return sum(_nbytes(array) for array in arrays) / (self.buffer_size * self.n_envs)

    def reset(self) -> None:
        super().reset()
        self._n_added = 0
        self._side_count = 0
        self._has_last[:] = False

    def add(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        obs_frames = self._split_frames(obs, "obs")
        next_frames = self._split_frames(next_obs, "next_obs")
        shifted = (next_frames[:, :-1] == obs_frames[:, 1:]).reshape(self.n_envs, -1).all(axis=1)
        if not shifted.all():
            env_idx = int(np.argmin(shifted))
            raise ValueError(
                f"next_obs of env {env_idx} is not its obs shifted by one frame plus a new frame, as "
                "VecFrameStack stacks them on the first axis: FrameStackReplayBuffer cannot store it "
                f"(observation shape {self.obs_shape}, n_stack={self.n_stack})"
            )

        meta = np.empty((self.n_envs, 3), dtype=np.int64)  # seg_len, head_len, side_ptr
        heads = []
        side_count = self._side_count
        # One comparison for all envs (a Python loop of array_equal cost ~1 ms per step with 16 envs)
        continues = self._has_last & (obs_frames == self._last_next_frames).reshape(self.n_envs, -1).all(axis=1)
        for env_idx in range(self.n_envs):
            if continues[env_idx]:
                seg_len, head_len, side_ptr = self._last_meta[env_idx]
                meta[env_idx] = (min(seg_len + 1, self.n_stack), head_len, side_ptr)
            else:
                # A new segment: keep the frames of obs after its zero padding
                is_frame = obs_frames[env_idx].reshape(self.n_stack, -1).any(axis=1)
                first = int(np.argmax(is_frame)) if is_frame.any() else self.n_stack
                heads.append(obs_frames[env_idx, first:])
                side_count += self.n_stack - first
                meta[env_idx] = (0, self.n_stack - first, side_count - 1)

        self._reserve_side(side_count - self._side_count)
        if side_count > self._side_count:
            new = np.arange(self._side_count, side_count) % len(self._side_frames)
            self._side_frames[self._to_storage(new)] = self._to_storage(np.concatenate(heads))
        self._step_side_start[self._n_added % self._ring] = self._side_count
        self._side_count = side_count
        row = (self._n_added % self._ring) * self.n_envs
        self._frames[row : row + self.n_envs] = self._to_storage(next_frames[:, -1])

        self._seg_len[self.pos] = meta[:, 0]
        self._head_len[self.pos] = meta[:, 1]
        self._side_ptr[self.pos] = meta[:, 2]
        self._last_next_frames[...] = next_frames
        self._last_meta[...] = meta
        self._has_last[:] = True

        # Reshape to handle multi-dim and discrete action spaces, see GH #970 #1392
        action = np.asarray(action).reshape((self.n_envs, self.action_dim))
        self.actions[self.pos] = self._to_storage(action.astype(self._maybe_cast_dtype(self.action_space.dtype)))
        self.rewards[self.pos] = self._to_storage(np.asarray(reward, dtype=np.float32))
        self.dones[self.pos] = self._to_storage(np.asarray(done, dtype=np.float32))
        if self.handle_timeout_termination:
            timeouts = [info.get("TimeLimit.truncated", False) for info in infos]
            self.timeouts[self.pos] = self._to_storage(np.asarray(timeouts, dtype=np.float32))

        self._n_added += 1
        self.pos += 1
        if self.pos == self.buffer_size:
            self.full = True
            self.pos = 0

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> ReplayBufferSamples:
        # Sample randomly the env idx, as ReplayBuffer._get_samples does
        env_indices = np.random.randint(0, high=self.n_envs, size=(len(batch_inds),))
        # All indices are computed here, in host memory: only the gathers run where the data is
        index = [batch_inds * self.n_envs + env_indices, *self._stack_index(batch_inds, env_indices)]
        if self._tensor_device is not None:
            sizes = [len(part) for part in index]
            index = th.as_tensor(np.concatenate(index), device=self._tensor_device).split(sizes)
        transitions, obs_index, next_obs_index = index[0], index[1:4], index[4:]

        dones = self._take(self.dones.reshape(-1), transitions)
        timeouts = self._take(self.timeouts.reshape(-1), transitions)
        data = [
            self._gather_stacks(*obs_index, len(batch_inds)),
            self._take(self.actions.reshape(-1, self.action_dim), transitions),
            self._gather_stacks(*next_obs_index, len(batch_inds)),
            # Only use dones that are not due to timeouts
            # deactivated by default (timeouts is initialized as an array of False)
            (dones * (1 - timeouts)).reshape(-1, 1),
            self._take(self.rewards.reshape(-1), transitions).reshape(-1, 1),
        ]
        if env is not None:
            data = [array.cpu().numpy() if isinstance(array, th.Tensor) else array for array in data]
            data[0] = self._normalize_obs(data[0], env)
            data[2] = self._normalize_obs(data[2], env)
            data[4] = self._normalize_reward(data[4], env)
        # Every array here is a fresh copy, so no need to copy it again
        return ReplayBufferSamples(*(self.to_torch(array, copy=False) for array in data))

    def _stack_index(self, batch_inds: np.ndarray, env_indices: np.ndarray) -> list[np.ndarray]:
        """
        Where the frames of the sampled observations are. Counting back from the newest frame of next_obs, frame
        ``k`` is the ``_frames`` row of step ``step - k`` while ``k < n_main`` (the transition's ``seg_len + 1``),
        then head frame ``side_ptr - (k - n_main)`` while ``k < n_main + head_len``, then zero padding; obs is
        next_obs shifted by one frame.

        :param batch_inds: sampled slots
        :param env_indices: sampled envs
        :return: for obs, then for next_obs: the ``_frames`` rows of their frames (zero padding and head frames
            read the zero row), the positions of their head frames among those, and the ``_side_frames`` rows of
            these head frames
        """
        last = self._n_added - 1
        steps = last - (last - batch_inds) % self.buffer_size
        n_main = self._seg_len[batch_inds, env_indices][:, None].astype(np.int64) + 1
        back_in_head = self._back - n_main
        rows = ((steps[:, None] - self._back) % self._ring) * self.n_envs + env_indices[:, None]
        rows[back_in_head >= 0] = self._zero_row
        from_head = (back_in_head >= 0) & (back_in_head < self._head_len[batch_inds, env_indices][:, None])
        head_rows = (self._side_ptr[batch_inds, env_indices][:, None] - back_in_head) % len(self._side_frames)

        index = []
        for window in (slice(None, -1), slice(1, None)):  # obs, next_obs
            positions = np.flatnonzero(from_head[:, window])
            index += [rows[:, window].ravel(), positions, head_rows[:, window].ravel()[positions]]
        return index

    def _gather_stacks(self, rows: Array, head_positions: Array, head_rows: Array, batch_size: int) -> Array:
        """:return: observations, from the indices that ``_stack_index`` gives"""
        stacks = self._take(self._frames, rows)
        stacks[head_positions] = self._take(self._side_frames, head_rows)
        return stacks.reshape(batch_size, *self.obs_shape)

    @staticmethod
    def _take(array: Array, index: Array) -> Array:
        """:return: ``array[index]`` (along the first axis), a copy"""
        if isinstance(array, th.Tensor):
            # Much faster than indexing on CPU, and with an index tensor it never waits for the device
            return array.index_select(0, index)
        return array[index]

    def _reserve_side(self, n_new: int) -> None:
        """Grow the head-frame ring if writing ``n_new`` frames would overwrite a frame still in use."""
        # Only the first n_stack transitions of a segment use its head frames: after this add, those of the
        # segments started before `first_step` are gone
        first_step = self._n_added - self.buffer_size - self.n_stack + 2
        oldest = int(self._step_side_start[first_step % self._ring]) if first_step >= 0 else 0
        capacity = len(self._side_frames)
        needed = self._side_count + n_new - oldest
        if needed <= capacity:
            return
        frames = self._zeros((max(needed, capacity + capacity // 8), *self.frame_shape), self.observation_space.dtype)
        in_use = self._to_storage(np.arange(oldest, self._side_count))
        frames[in_use % len(frames)] = self._side_frames[in_use % capacity]
        self._side_frames = frames

    def _split_frames(self, obs: np.ndarray, name: str) -> np.ndarray:
        obs = np.asarray(obs)
        if obs.shape != (self.n_envs, *self.obs_shape):
            raise ValueError(f"{name} has shape {obs.shape}, expected {(self.n_envs, *self.obs_shape)}")
        obs = obs.astype(self.observation_space.dtype, copy=False)
        return obs.reshape(self.n_envs, self.n_stack, *self.frame_shape)

    def _zeros(self, shape: tuple[int, ...], dtype: np.typing.DTypeLike) -> Array:
        if self._tensor_device is None:
            return np.zeros(shape, dtype=dtype)
        return th.zeros(shape, dtype=_torch_dtype(dtype), device=self._tensor_device)

    def _to_storage(self, array: np.ndarray) -> Array:
        if self._tensor_device is None:
            return array
        return th.as_tensor(np.ascontiguousarray(array), device=self._tensor_device)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_tensor_device"]
        for name in self._STORAGE_ATTRS:
            if isinstance(state[name], th.Tensor):
                state[name] = state[name].cpu().numpy()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._tensor_device = None if self.storage_device is None else get_device(self.storage_device)
        if self._tensor_device is not None:
            for name in self._STORAGE_ATTRS:
                setattr(self, name, th.as_tensor(getattr(self, name), device=self._tensor_device))
