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

from breakout_sb3.fast.sampling import FrameStackSampler, StoredTransitions, contiguous
from breakout_sb3.fast.storage import Array, NumpyStorage, TorchStorage, nbytes

try:
    # Check memory used by replay buffer when possible
    import psutil
except ImportError:
    psutil = None


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
    VecFrameStack gives, terminal observations included) raises a ``ValueError``. ``add_step()`` stores the same
    from a vector step as ``OffPolicyAlgorithm`` receives it (``new_obs`` and the terminal observations), without
    copies, trusting VecFrameStack's stacking where no env is done and checking the terminal observations.

    ``sample_batches(n, batch_size)`` samples ``n`` batches at once, with one draw of indices and one gather: the
    indices uniform over the stored transitions, as ``sample()`` draws them, but not the same numbers. With a
    ``storage_device`` it runs there from start to end (random numbers included), without host synchronisation,
    so that it can be captured in a CUDA graph.

    This class adds and keeps the bookkeeping; where its arrays live is ``storage`` (``breakout_sb3.fast.storage``:
    numpy arrays or torch tensors), and the rebuilding of sampled transitions is ``FrameStackSampler``
    (``breakout_sb3.fast.sampling``), one code path for both storages.

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
        ("cuda", "auto", "cpu") on which frames, actions, rewards, dones, timeouts and the bookkeeping that sampling
        reads are kept as tensors, so that sampling runs there. On a CPU, the default numpy storage is faster; "cpu"
        runs the device code path there (for tests).
    """

    # What lives on ``storage_device`` when one is given; the rest (bookkeeping of add(), indices) stays on the host
    _STORAGE_ATTRS = ("_frames", "_side_frames", "actions", "rewards", "dones", "timeouts")
    # Copies of host bookkeeping on the storage device, rebuilt from the host arrays when unpickled
    _MIRROR_ATTRS = ("_meta_t", "_state_t", "_back_t")

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
        self._storage = self._make_storage(storage_device)

        obs_dtype = observation_space.dtype
        if psutil is not None and self._storage.device is None:
            self._warn_if_short_of_memory()
        # Newest frame of each step's next_obs, in row (step % _ring) * n_envs + env: n_stack more steps than
        # transitions, so that the oldest transition can still rebuild its obs. The last row stays zero.
        self._ring = self.buffer_size + self.n_stack
        self._zero_row = self._ring * self.n_envs
        self._frames = self._storage.zeros((self._zero_row + 1, *self.frame_shape), obs_dtype)
        # Head frames of segments (see the class docstring), indexed by their absolute index % _side_capacity;
        # one more row, the last, stays zero
        self._side_capacity = self.n_stack * self.n_envs + self.buffer_size * self.n_envs // 64
        self._side_frames = self._storage.zeros((self._side_capacity + 1, *self.frame_shape), obs_dtype)
        # Changes whenever a storage tensor is reallocated (CUDA graphs that read the old one must be captured again)
        self.storage_version = 0
        # Per transition (seg_len, head_len, side_ptr): the number of transitions before it in its segment (at most
        # n_stack), the number of head frames of its segment and the absolute index of the newest one in _side_frames
        self._meta = np.zeros((self.buffer_size, self.n_envs, 3), dtype=np.int64)
        # How far back from the newest frame of next_obs each frame of (obs, next_obs[-1]) is
        self._back = np.arange(self.n_stack, -1, -1, dtype=np.int64)

        self.actions = self._storage.zeros(
            (self.buffer_size, self.n_envs, self.action_dim), self._maybe_cast_dtype(action_space.dtype)
        )
        self.rewards = self._storage.zeros((self.buffer_size, self.n_envs), np.float32)
        self.dones = self._storage.zeros((self.buffer_size, self.n_envs), np.float32)
        self.timeouts = self._storage.zeros((self.buffer_size, self.n_envs), np.float32)

        # Host-side state for add(): the number of adds since reset(), the number of head frames written, the
        # latter at the start of each step (to know which head frames are still in use), and each env's last
        # next_obs (kept as the caller's new_obs and terminal observations after add_step(), copied after add())
        # with its (seg_len, head_len, side_ptr) and whether it was done
        self._n_added = 0
        self._side_count = 0
        self._step_side_start = np.zeros(self._ring, dtype=np.int64)
        self._last_next_frames: np.ndarray | None = None
        self._last_new_obs: np.ndarray | None = None
        self._last_terminal: dict[int, np.ndarray] = {}
        self._last_meta = np.zeros((self.n_envs, 3), dtype=np.int64)
        self._last_done = np.zeros(self.n_envs, dtype=bool)
        self._has_last = np.zeros(self.n_envs, dtype=bool)
        self._make_mirrors()
        self._sampler = self._make_sampler()

    def _warn_if_short_of_memory(self) -> None:
        """As SB3's ``ReplayBuffer``, for the frames (nearly all of it), before they are allocated."""
        frame_bytes = int(np.prod(self.frame_shape)) * self.observation_space.dtype.itemsize
        total_memory_usage = frame_bytes * (self.buffer_size + self.n_stack) * self.n_envs * 65 / 64
        mem_available = psutil.virtual_memory().available
        if total_memory_usage > mem_available:
            warnings.warn(
                "This system does not have apparently enough memory to store the complete "
                f"replay buffer {total_memory_usage / 1e9:.2f}GB > {mem_available / 1e9:.2f}GB",
                stacklevel=3,
            )

    @staticmethod
    def _make_storage(storage_device: th.device | str | None) -> NumpyStorage | TorchStorage:
        return NumpyStorage() if storage_device is None else TorchStorage(get_device(storage_device))

    def _make_sampler(self) -> FrameStackSampler:
        return FrameStackSampler(
            self._storage, self.buffer_size, self.n_envs, self.n_stack, self._ring, self.frame_shape, self.action_dim
        )

    def _make_mirrors(self) -> None:
        """On a storage device: the bookkeeping that sampling reads, (seg_len, head_len, side_ptr) and state."""
        if not isinstance(self._storage, TorchStorage):
            self._meta_t = self._state_t = self._back_t = None
            return
        # Copies, also on the CPU (th.as_tensor would share the host arrays' memory there): every write to a mirror
        # is explicit, so the "cpu" storage device tests it
        self._meta_t = self._storage.copy(self._meta)
        self._state_t = self._storage.copy(np.zeros(2, dtype=np.int64))  # n_added, sampling upper bound
        self._back_t = self._storage.copy(self._back)
        self._write_state()

    def _write_state(self) -> None:
        if self._state_t is not None:
            upper = self.buffer_size if self.full else self.pos
            self._state_t.copy_(self._storage.put(np.array([self._n_added, upper], dtype=np.int64)))

    @property
    def storage(self) -> NumpyStorage | TorchStorage:
        """Where the arrays are: host memory (numpy) or ``storage_device`` (torch); it gathers the sampled frames."""
        return self._storage

    @property
    def sampling_device(self) -> th.device | None:
        """The device ``sample_batches`` draws and gathers on (its index included); None: numpy storage."""
        return self._storage.device

    def sampling_key(self) -> tuple:
        """
        What sampling on the storage device reads, for a CUDA graph that captured it: this buffer, the sizes it
        computes with, and the address of each tensor it reads. It changes whenever one of them is replaced
        (unpickling, the head-frame ring growing).
        """
        tensors = [getattr(self, name) for name in (*self._STORAGE_ATTRS, *self._MIRROR_ATTRS)]
        sizes = (self.buffer_size, self.n_envs, self.n_stack, self._ring, self._side_capacity, self.action_dim)
        addresses = tuple(tensor.data_ptr() if isinstance(tensor, th.Tensor) else id(tensor) for tensor in tensors)
        return (id(self), self.storage_version, sizes, addresses)

    @property
    def nbytes_per_transition(self) -> float:
        """Bytes of all the arrays this buffer allocated (side ring and bookkeeping included) per transition."""
        arrays = [getattr(self, name) for name in (*self._STORAGE_ATTRS, *self._MIRROR_ATTRS)]
        arrays += [self._meta, self._back, self._step_side_start]
        arrays += [self._last_meta, self._last_done, self._has_last]
        # The last next_obs: a reference to the caller's array after add_step(), a copy after add()
        arrays.append(np.empty((self.n_envs, *self.obs_shape), dtype=self.observation_space.dtype))
        return sum(nbytes(array) for array in arrays if array is not None) / (self.buffer_size * self.n_envs)

    def reset(self) -> None:
        super().reset()
        self._n_added = 0
        self._side_count = 0
        self._has_last[:] = False
        self._write_state()

    # --- adding ---------------------------------------------------------------------------------------------------

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
        self._check_shifted(obs_frames, next_frames, np.arange(self.n_envs))
        # One comparison for all envs rather than a Python loop of array_equal
        last_next = self._previous_next_frames()
        continues = self._has_last & (obs_frames == last_next).reshape(self.n_envs, -1).all(axis=1)
        timeouts = [info.get("TimeLimit.truncated", False) for info in infos]
        self._store(obs_frames, next_frames[:, -1], continues, action, reward, done, timeouts, None)
        self._last_next_frames = next_frames.copy()
        self._last_new_obs, self._last_terminal = None, {}

    def add_step(
        self,
        obs: np.ndarray,
        new_obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        terminal_obs: dict[int, np.ndarray],
        timeouts: np.ndarray,
    ) -> None:
        """
        Store one vector step as ``OffPolicyAlgorithm`` receives it: what ``add(obs, next_obs, ...)`` stores, where
        ``next_obs`` is ``new_obs`` with ``terminal_obs[i]`` for each env ``i`` that has one, without copying
        ``new_obs`` or comparing whole stacks.

        When ``obs`` is the ``new_obs`` of the previous ``add_step()`` (the same array, as ``_last_obs`` is), an
        env's ``obs`` continues its previous ``next_obs`` exactly when that env was not done, and ``new_obs`` of an
        env that is not done is its ``obs`` shifted by one frame plus a new frame (VecFrameStack's stacking): that
        is trusted; the terminal observations are checked. Otherwise this falls back to the checked ``add()``.
        The arrays passed must not be changed in place afterwards (SB3 does not).

        :param obs: the observations the actions were chosen from
        :param new_obs: the observations ``VecEnv.step`` returned
        :param action: the actions
        :param reward: the rewards
        :param done: the dones
        :param terminal_obs: env index -> ``info["terminal_observation"]``, for the envs that are done
        :param timeouts: per env, ``info["TimeLimit.truncated"]``
        """
        new_frames = self._split_frames(new_obs, "new_obs")
        if obs is not self._last_new_obs or not self._has_last.all():
            next_obs = new_obs.copy()
            for env_idx, terminal in terminal_obs.items():
                next_obs[env_idx] = terminal
            infos = [{"TimeLimit.truncated": bool(timeout)} for timeout in timeouts]
            self.add(obs, next_obs, action, reward, done, infos)
            self._last_new_obs, self._last_terminal = new_obs, terminal_obs
            return
        obs_frames = self._split_frames(obs, "obs")
        terminal_newest = None
        if terminal_obs:
            envs = np.fromiter(terminal_obs, dtype=np.int64, count=len(terminal_obs))
            terminal = self._split_frames(np.stack([terminal_obs[i] for i in envs]), "terminal_observation", len(envs))
            self._check_shifted(obs_frames[envs], terminal, envs)
            terminal_newest = (envs, terminal[:, -1])
        self._store(obs_frames, new_frames[:, -1], ~self._last_done, action, reward, done, timeouts, terminal_newest)
        self._last_new_obs, self._last_terminal, self._last_next_frames = new_obs, terminal_obs, None

    def _previous_next_frames(self) -> np.ndarray:
        """:return: each env's last next_obs, split in frames (zeros before the first add)"""
        if self._last_next_frames is None:
            if self._last_new_obs is None:
                shape = (self.n_envs, self.n_stack, *self.frame_shape)
                self._last_next_frames = np.zeros(shape, dtype=self.observation_space.dtype)
            else:
                frames = self._split_frames(self._last_new_obs, "new_obs").copy()
                for env_idx, terminal in self._last_terminal.items():
                    frames[env_idx] = self._split_frames(terminal[None], "terminal_observation", 1)[0]
                self._last_next_frames = frames
        return self._last_next_frames

    def _check_shifted(self, obs_frames: np.ndarray, next_frames: np.ndarray, envs: np.ndarray) -> None:
        shifted = (next_frames[:, :-1] == obs_frames[:, 1:]).reshape(len(envs), -1).all(axis=1)
        if not shifted.all():
            env_idx = int(envs[np.argmin(shifted)])
            raise ValueError(
                f"next_obs of env {env_idx} is not its obs shifted by one frame plus a new frame, as "
                "VecFrameStack stacks them on the first axis: FrameStackReplayBuffer cannot store it "
                f"(observation shape {self.obs_shape}, n_stack={self.n_stack})"
            )

    def _store(
        self,
        obs_frames: np.ndarray,
        newest: np.ndarray,
        continues: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        timeouts: Any,
        replaced: tuple[np.ndarray, np.ndarray] | None,
    ) -> None:
        """
        Store one transition per env: ``newest`` is the newest frame of each next_obs, but for the envs of
        ``replaced`` (envs, their newest frames) if given.
        """
        meta, heads = self._segments(obs_frames, continues)
        self._write_frames(newest, heads, replaced)
        self._meta[self.pos] = meta
        if self._meta_t is not None:
            self._meta_t[self.pos] = self._storage.put(meta)
        self._last_meta = meta
        self._last_done = np.asarray(done, dtype=bool).reshape(self.n_envs)
        self._has_last[:] = True

        # Reshape to handle multi-dim and discrete action spaces, see GH #970 #1392
        action = np.asarray(action).reshape((self.n_envs, self.action_dim))
        self.actions[self.pos] = self._storage.put(action.astype(self._maybe_cast_dtype(self.action_space.dtype)))
        self.rewards[self.pos] = self._storage.put(np.asarray(reward, dtype=np.float32))
        self.dones[self.pos] = self._storage.put(np.asarray(done, dtype=np.float32))
        if self.handle_timeout_termination:
            self.timeouts[self.pos] = self._storage.put(np.asarray(timeouts, dtype=np.float32))

        self._n_added += 1
        self.pos += 1
        if self.pos == self.buffer_size:
            self.full = True
            self.pos = 0
        self._write_state()

    def _segments(self, obs_frames: np.ndarray, continues: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """
        :param obs_frames: each env's obs, split in frames
        :param continues: per env, whether its obs is its previous next_obs
        :return: each env's ``(seg_len, head_len, side_ptr)`` for this transition, and the head frames of the
            segments it starts (in the order of the envs), which go to the side ring after its ``_side_count`` frames
        """
        meta = np.empty((self.n_envs, 3), dtype=np.int64)
        meta[:, 0] = np.minimum(self._last_meta[:, 0] + 1, self.n_stack)
        meta[:, 1:] = self._last_meta[:, 1:]
        side_count = self._side_count
        heads = []
        for env_idx in np.flatnonzero(~continues):
            # A new segment: keep the frames of obs after its zero padding
            is_frame = obs_frames[env_idx].reshape(self.n_stack, -1).any(axis=1)
            first = int(np.argmax(is_frame)) if is_frame.any() else self.n_stack
            heads.append(obs_frames[env_idx, first:])
            side_count += self.n_stack - first
            meta[env_idx] = (0, self.n_stack - first, side_count - 1)
        return meta, heads

    def _write_frames(
        self, newest: np.ndarray, heads: list[np.ndarray], replaced: tuple[np.ndarray, np.ndarray] | None
    ) -> None:
        """Write this step's frames: the newest of each next_obs (see ``_store``) and the head frames."""
        n_heads = sum(len(head) for head in heads)
        self._reserve_side(n_heads)
        if n_heads:
            new = np.arange(self._side_count, self._side_count + n_heads) % self._side_capacity
            self._side_frames[self._storage.put(new)] = self._storage.put(np.concatenate(heads))
        self._step_side_start[self._n_added % self._ring] = self._side_count
        self._side_count += n_heads
        row = (self._n_added % self._ring) * self.n_envs
        self._frames[row : row + self.n_envs] = self._storage.put(newest)
        if replaced is not None:
            self._frames[self._storage.put(row + replaced[0])] = self._storage.put(replaced[1])

    # --- sampling -------------------------------------------------------------------------------------------------

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> ReplayBufferSamples:
        # Sample randomly the env idx, as ReplayBuffer._get_samples does
        env_indices = np.random.randint(0, high=self.n_envs, size=(len(batch_inds),))
        slots, envs = self._storage.index(batch_inds), self._storage.index(env_indices)
        data = self._sampler.transitions(self._stored_transitions(), slots, envs, reuse=False)
        data[0], data[2] = contiguous(data[0]), contiguous(data[2])
        if env is not None:
            data = [self._storage.to_numpy(array) for array in data]
            data[0] = self._normalize_obs(data[0], env)
            data[2] = self._normalize_obs(data[2], env)
            data[4] = self._normalize_reward(data[4], env)
        # Every array here is a fresh copy, so no need to copy it again
        return ReplayBufferSamples(*(self.to_torch(array, copy=False) for array in data))

    def sample_batches(self, n_batches: int, batch_size: int) -> ReplayBufferSamples:
        """
        ``n_batches`` batches of ``batch_size`` transitions, drawn at once, each uniformly among the stored
        transitions (slot and env), independently: numpy's global generator for numpy storage, torch's generator of
        the storage device otherwise. No ``VecNormalize``.

        :return: the batches one after the other (batch ``i`` is rows ``i * batch_size`` to ``(i + 1) * batch_size``
            of each tensor), on ``device``; observations are views of one tensor of stacks, which with numpy storage
            the next ``sample_batches`` or ``samples_at`` call overwrites
        """
        return self.samples_at(*self._draw_indices(n_batches * batch_size))

    def _draw_indices(self, n: int) -> tuple[Array, Array]:
        """:return: ``n`` slots and envs, each pair uniform over the stored transitions, where the storage is"""
        if self._state_t is None:
            upper = self.buffer_size if self.full else self.pos
            return self._storage.draw(n, upper, self.n_envs)
        # The number of stored slots as the device reads it, not the host
        return self._storage.draw(n, self._state_t[1], self.n_envs)

    def samples_at(self, slots: Array, envs: Array) -> ReplayBufferSamples:
        """
        :return: the transitions in ``slots`` of ``envs``, as SB3's ``ReplayBuffer`` stores them, on ``device``
            (observations: with numpy storage, views of an array that the next call overwrites)
        """
        slots, envs = self._storage.index(slots), self._storage.index(envs)
        data = self._sampler.transitions(self._stored_transitions(), slots, envs, reuse=True)
        return ReplayBufferSamples(*(self._to_device(array) for array in data))

    def _stored_transitions(self) -> StoredTransitions:
        """What sampling reads, where the storage is: on a storage device, the copies of the bookkeeping there."""
        meta, back, n_added = self._meta, self._back, self._n_added
        if self._state_t is not None:
            meta, back, n_added = self._meta_t, self._back_t, self._state_t[0]
        return StoredTransitions(
            self._frames, self._side_frames, meta, back, n_added, self.actions, self.rewards, self.dones, self.timeouts
        )

    def _to_device(self, array: Array) -> th.Tensor:
        tensor = th.from_numpy(array) if isinstance(array, np.ndarray) else array
        return tensor if tensor.device == self.device else tensor.to(self.device, non_blocking=True)

    # --- storage --------------------------------------------------------------------------------------------------

    def _reserve_side(self, n_new: int) -> None:
        """Grow the head-frame ring if writing ``n_new`` frames would overwrite a frame still in use."""
        # Only the first n_stack transitions of a segment use its head frames: after this add, those of the
        # segments started before `first_step` are gone
        first_step = self._n_added - self.buffer_size - self.n_stack + 2
        oldest = int(self._step_side_start[first_step % self._ring]) if first_step >= 0 else 0
        capacity = self._side_capacity
        needed = self._side_count + n_new - oldest
        if needed <= capacity:
            return
        new_capacity = max(needed, capacity + capacity // 8)
        frames = self._storage.zeros((new_capacity + 1, *self.frame_shape), self.observation_space.dtype)
        in_use = self._storage.put(np.arange(oldest, self._side_count))
        frames[in_use % new_capacity] = self._side_frames[in_use % capacity]
        self._side_frames, self._side_capacity = frames, new_capacity
        self.storage_version += 1

    def _split_frames(self, obs: np.ndarray, name: str, n: int | None = None) -> np.ndarray:
        n = self.n_envs if n is None else n
        obs = np.asarray(obs)
        if obs.shape != (n, *self.obs_shape):
            raise ValueError(f"{name} has shape {obs.shape}, expected {(n, *self.obs_shape)}")
        obs = obs.astype(self.observation_space.dtype, copy=False)
        return obs.reshape(n, self.n_stack, *self.frame_shape)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        # Rebuilt from storage_device and the arrays when unpickled
        for name in ("_storage", "_sampler", *self._MIRROR_ATTRS):
            del state[name]
        for name in self._STORAGE_ATTRS:
            state[name] = self._storage.to_numpy(state[name])
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        # Pickled by earlier versions, which kept numpy storage's gather array in the buffer (always None there)
        state.pop("_gather_out", None)
        self.__dict__.update(state)
        self._storage = self._make_storage(self.storage_device)
        for name in self._STORAGE_ATTRS:
            setattr(self, name, self._storage.from_numpy(getattr(self, name)))
        self._make_mirrors()
        self._sampler = self._make_sampler()
