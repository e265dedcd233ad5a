"""The transitions of a ``FrameStackReplayBuffer`` rebuilt as SB3's ``ReplayBuffer`` stores them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch as th

from breakout_sb3.fast.storage import Array, NumpyStorage, TorchStorage


class StoredTransitions(NamedTuple):
    """
    What sampling reads of a buffer, all where its storage is (the bookkeeping: copies of it on a storage device).

    :param frames: the newest frame of each step's ``next_obs``, in row ``(step % ring) * n_envs + env``; the last
        row is zero
    :param side_frames: the head frames of segments, in row ``absolute index % side capacity``; the last row is zero
    :param meta: per slot and env ``(seg_len, head_len, side_ptr)``: the number of transitions before it in its
        segment (at most ``n_stack``), the number of head frames of its segment and the absolute index of the newest
    :param back: ``n_stack, ..., 1, 0``: how far back from the newest frame of ``next_obs`` each frame of
        ``(obs, next_obs[-1])`` is
    :param n_added: the number of steps added since the last reset
    :param actions: per slot and env, the action
    :param rewards: per slot and env, the reward
    :param dones: per slot and env, the done
    :param timeouts: per slot and env, whether the done was a timeout
    """

    frames: Array
    side_frames: Array
    meta: Array
    back: Array
    n_added: int | th.Tensor
    actions: Array
    rewards: Array
    dones: Array
    timeouts: Array


@dataclass(frozen=True)
class FrameStackSampler:
    """
    Rebuilds sampled transitions as SB3's ``ReplayBuffer`` stores them: where each frame of a transition is, the
    gather of those frames (by the storage), and the five fields of ``ReplayBufferSamples``. The same code for numpy
    arrays and torch tensors; on a device it never waits for the device (no shape depends on the data).

    :param storage: where the buffer's arrays are
    :param buffer_size: slots per env
    :param n_envs: number of envs
    :param n_stack: number of stacked frames
    :param ring: steps in the ring of frames (``buffer_size + n_stack``)
    :param frame_shape: shape of one frame
    :param action_dim: size of one action
    """

    storage: NumpyStorage | TorchStorage
    buffer_size: int
    n_envs: int
    n_stack: int
    ring: int
    frame_shape: tuple[int, ...]
    action_dim: int

    @property
    def obs_shape(self) -> tuple[int, ...]:
        return (self.frame_shape[0] * self.n_stack, *self.frame_shape[1:])

    def stack_rows(self, stored: StoredTransitions, slots: Array, envs: Array) -> tuple[Array, Array]:
        """
        Where the ``n_stack + 1`` frames of the transitions (obs, then the newest frame of next_obs) are. Counting
        back from the newest frame of next_obs, frame ``k`` is the ``frames`` row of step ``step - k`` while
        ``k < seg_len + 1``, then head frame ``side_ptr - (k - seg_len - 1)`` while ``k < seg_len + 1 + head_len``,
        then zero padding.

        :return: per transition and frame, the ``frames`` row and the ``side_frames`` row, at least one of which
            is the zero row of its ring
        """
        side_capacity = len(stored.side_frames) - 1
        last = stored.n_added - 1
        steps = last - (last - slots) % self.buffer_size
        meta = stored.meta[slots, envs]
        back_in_head = stored.back - (meta[:, 0:1] + 1)
        in_head = back_in_head >= 0
        rows = ((steps[:, None] - stored.back) % self.ring) * self.n_envs + envs[:, None]
        rows = self.storage.where(in_head, self.ring * self.n_envs, rows)
        from_head = in_head & (back_in_head < meta[:, 1:2])
        side_rows = self.storage.where(from_head, (meta[:, 2:3] - back_in_head) % side_capacity, side_capacity)
        return rows, side_rows

    def transitions(self, stored: StoredTransitions, slots: Array, envs: Array, reuse: bool) -> list[Array]:
        """
        :param stored: the buffer's arrays
        :param slots: the slots of the transitions, where the storage is
        :param envs: their envs, where the storage is
        :param reuse: gather the frames into the array of the previous call with ``reuse`` (numpy storage)
        :return: the fields of ``ReplayBufferSamples`` (observations, actions, next observations, dones, rewards),
            where the storage is; the observations are views of one array of stacks
        """
        n = len(slots)
        rows, side_rows = self.stack_rows(stored, slots, envs)
        stacks = self.storage.gather_stacks(stored.frames, stored.side_frames, rows, side_rows, reuse)
        stacks = stacks.reshape(n, self.n_stack + 1, *self.frame_shape)
        transitions = slots * self.n_envs + envs
        dones = self.storage.take(stored.dones.reshape(-1), transitions)
        timeouts = self.storage.take(stored.timeouts.reshape(-1), transitions)
        return [
            stacks[:, :-1].reshape(n, *self.obs_shape),
            self.storage.take(stored.actions.reshape(-1, self.action_dim), transitions),
            stacks[:, 1:].reshape(n, *self.obs_shape),
            # Only use dones that are not due to timeouts
            # deactivated by default (timeouts is initialized as an array of False)
            (dones * (1 - timeouts)).reshape(-1, 1),
            self.storage.take(stored.rewards.reshape(-1), transitions).reshape(-1, 1),
        ]


def contiguous(array: Array) -> Array:
    """:return: ``array`` in C order (a copy if it is a view that is not)"""
    return array.contiguous() if isinstance(array, th.Tensor) else np.ascontiguousarray(array)
