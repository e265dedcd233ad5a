"""Where a ``FrameStackReplayBuffer`` keeps its arrays: numpy arrays in host memory, or torch tensors on a device."""

from __future__ import annotations

import numpy as np
import torch as th

Array = np.ndarray | th.Tensor


def torch_dtype(dtype: np.typing.DTypeLike) -> th.dtype:
    """:return: the torch dtype of a numpy dtype"""
    return th.from_numpy(np.zeros(0, dtype=dtype)).dtype


def nbytes(array: Array) -> int:
    """:return: the bytes an array or tensor holds"""
    if isinstance(array, th.Tensor):
        return array.numel() * array.element_size()
    return array.nbytes


class NumpyStorage:
    """
    Arrays in host memory. Random draws come from numpy's global generator, as SB3's ``ReplayBuffer.sample`` draws.
    """

    #: None: the arrays are numpy arrays in host memory
    device = None

    def __init__(self) -> None:
        # What gather_stacks(reuse=True) gathers into: a fresh array per vector step costs page faults in the gather
        # and unmapping afterwards
        self._gather_out: np.ndarray | None = None

    def zeros(self, shape: tuple[int, ...], dtype: np.typing.DTypeLike) -> np.ndarray:
        # Written now rather than left to the OS to map at first write (np.zeros), which would slow add() with page
        # faults while the replay fills
        array = np.empty(shape, dtype=dtype)
        array.fill(0)
        return array

    def put(self, array: np.ndarray) -> np.ndarray:
        """:return: ``array`` where the storage is (here: itself), to write into a stored array"""
        return array

    def index(self, array: Array) -> np.ndarray:
        """:return: an index array where the storage is"""
        return np.asarray(array)

    def where(self, condition: np.ndarray, x: np.ndarray | int, y: np.ndarray | int) -> np.ndarray:
        return np.where(condition, x, y)

    def take(self, array: np.ndarray, index: np.ndarray) -> np.ndarray:
        """:return: ``array[index]`` along the first axis, a copy"""
        return array[index]

    def draw(self, n: int, upper: int, n_envs: int) -> tuple[np.ndarray, np.ndarray]:
        """:return: ``n`` slots uniform in ``[0, upper)`` and ``n`` envs uniform in ``[0, n_envs)``"""
        return np.random.randint(0, upper, size=n), np.random.randint(0, n_envs, size=n)

    def gather_stacks(
        self, frames: np.ndarray, side_frames: np.ndarray, rows: np.ndarray, side_rows: np.ndarray, reuse: bool
    ) -> np.ndarray:
        """
        :param frames: the main ring, whose last row is zero
        :param side_frames: the side ring, whose last row is zero
        :param rows: per frame to gather, its row in ``frames``
        :param side_rows: per frame to gather, its row in ``side_frames``; where it is not the zero row, ``rows`` is
        :param reuse: gather into the array of the previous call with ``reuse`` (overwriting it); else a new one
        :return: the frames, ``(len(rows), *frame_shape)``
        """
        rows, side_rows = rows.reshape(-1), side_rows.reshape(-1)
        if reuse:
            shape = (len(rows), *frames.shape[1:])
            if self._gather_out is None or self._gather_out.shape != shape:
                self._gather_out = np.empty(shape, dtype=frames.dtype)
            # mode="clip" (the rows are all valid) is the one that writes into out without a temporary array
            stacks = np.take(frames, rows, axis=0, out=self._gather_out, mode="clip")
        else:
            stacks = frames[rows]
        # Few frames come from the side ring: copy those alone over the zero rows gathered for them
        from_side = np.flatnonzero(side_rows != len(side_frames) - 1)
        stacks[from_side] = side_frames[side_rows[from_side]]
        return stacks

    def to_numpy(self, array: np.ndarray) -> np.ndarray:
        return array

    def from_numpy(self, array: np.ndarray) -> np.ndarray:
        """:return: an unpickled array where the storage is"""
        return array


class TorchStorage:
    """
    Tensors on a torch device. Every operation runs there, random draws included (torch's generator of the device),
    without waiting for the device, so that sampling can be captured in a CUDA graph.

    :param device: the device ("cuda" stands for the current GPU)
    """

    def __init__(self, device: th.device) -> None:
        # With its index ("cuda:0", where "cuda" was given): the device the tensors are on
        self.device = th.empty(0, device=device).device

    def zeros(self, shape: tuple[int, ...], dtype: np.typing.DTypeLike) -> th.Tensor:
        return th.zeros(shape, dtype=torch_dtype(dtype), device=self.device)

    def put(self, array: np.ndarray) -> th.Tensor:
        """:return: a copy of ``array`` on the device, to write into a stored tensor"""
        tensor = th.from_numpy(np.ascontiguousarray(array))
        if self.device.type != "cuda":
            return tensor.to(self.device)
        # Through pinned memory: a copy from pageable memory would make the host wait for the GPU's queued work
        # (the updates launched before this add), where it can go on with the step's bookkeeping
        return tensor.pin_memory().to(self.device, non_blocking=True)

    def copy(self, array: np.ndarray) -> th.Tensor:
        """:return: a copy of ``array`` on the device, also on the CPU (where ``th.as_tensor`` would share memory)"""
        return th.tensor(array, device=self.device)

    def index(self, array: Array) -> th.Tensor:
        """:return: an index tensor on the device"""
        return th.as_tensor(array, device=self.device)

    def where(self, condition: th.Tensor, x: th.Tensor | int, y: th.Tensor | int) -> th.Tensor:
        return th.where(condition, x, y)

    def take(self, array: th.Tensor, index: th.Tensor) -> th.Tensor:
        """:return: ``array[index]`` along the first axis, a copy"""
        # Much faster than indexing on CPU, and with an index tensor it never waits for the device
        return array.index_select(0, index)

    def draw(self, n: int, upper: th.Tensor, n_envs: int) -> tuple[th.Tensor, th.Tensor]:
        """:return: ``n`` slots uniform in ``[0, upper)`` (a tensor on the device) and ``n`` envs in ``[0, n_envs)``"""
        # int64 draws modulo the number of stored slots (a bias under 2**-40), read on the device, not the host
        slots = th.randint(0, 2**62, (n,), device=self.device) % upper
        return slots, th.randint(0, n_envs, (n,), device=self.device)

    def gather_stacks(
        self, frames: th.Tensor, side_frames: th.Tensor, rows: th.Tensor, side_rows: th.Tensor, reuse: bool
    ) -> th.Tensor:
        """
        ``NumpyStorage.gather_stacks`` (``reuse`` is ignored: always a new tensor), as two full gathers combined,
        without a shape that depends on the data (which would wait for the device)
        """
        return self.take(frames, rows.reshape(-1)) | self.take(side_frames, side_rows.reshape(-1))

    def to_numpy(self, array: th.Tensor) -> np.ndarray:
        return array.cpu().numpy()

    def from_numpy(self, array: np.ndarray) -> th.Tensor:
        """:return: an unpickled array on the device"""
        return th.as_tensor(array, device=self.device)
