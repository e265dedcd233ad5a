"""FrameStackReplayBuffer samples exactly what SB3's ReplayBuffer samples, in a fraction of the memory."""

from __future__ import annotations

import pickle
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecFrameStack, VecTransposeImage

from breakout_sb3 import ENV_ID
from breakout_sb3.fast.replay import FrameStackReplayBuffer
from tests.conftest import breakout_env

N_ENVS = 2
STREAM_STEPS = 3_000
SMALL_BUFFER = 500  # 250 steps per env: wraps 12 times
BIG_BUFFER = 5_000  # 2,500 steps per env: wraps once
EARLY_CHECKS = (1, 2, 3, 4, 5, 9, 40, 249, 250, 251)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def store_transition(buffers: list[ReplayBuffer], last_obs, new_obs, actions, rewards, dones, infos) -> None:
    """What OffPolicyAlgorithm._store_transition passes to ``add()`` (no VecNormalize)."""
    next_obs = deepcopy(new_obs)
    for i, done in enumerate(dones):
        if done and infos[i].get("terminal_observation") is not None:
            next_obs[i] = infos[i]["terminal_observation"]
    for buffer in buffers:
        buffer.add(last_obs, next_obs, actions, rewards, dones, infos)


def sample(buffer: ReplayBuffer, seed: int, batch_size: int = 32) -> ReplayBufferSamples:
    np.random.seed(seed)
    return buffer.sample(batch_size)


def assert_same_samples(expected: ReplayBufferSamples, actual: ReplayBufferSamples) -> None:
    assert actual.discounts is None
    for name in ("observations", "actions", "next_observations", "dones", "rewards"):
        want, got = getattr(expected, name), getattr(actual, name)
        assert got.dtype == want.dtype and got.shape == want.shape, name
        assert th.equal(got, want), name


@dataclass
class Fed:
    """Buffers fed the same real Breakout stream, and samples taken while they were filling."""

    sb3: ReplayBuffer
    fast: FrameStackReplayBuffer
    fast_torch: FrameStackReplayBuffer
    big: FrameStackReplayBuffer
    dones: int = 0
    timeouts: int = 0
    early: list[tuple[int, ReplayBufferSamples, ReplayBufferSamples, ReplayBufferSamples]] = field(default_factory=list)


@pytest.fixture(scope="module")
def fed() -> Fed:
    # Without VecTransposeImage DQN would add it: buffers get (n_envs, 4, 84, 84), newest frame last.
    # max_episode_steps counts emulator frames (4 per step), so some episodes end in a timeout.
    env = VecTransposeImage(
        VecFrameStack(make_atari_env(ENV_ID, n_envs=N_ENVS, seed=0, env_kwargs={"max_episode_steps": 400}), 4)
    )
    args = (env.observation_space, env.action_space)
    fed = Fed(
        sb3=ReplayBuffer(SMALL_BUFFER, *args, device="cpu", n_envs=N_ENVS),
        fast=FrameStackReplayBuffer(SMALL_BUFFER, *args, device="cpu", n_envs=N_ENVS),
        fast_torch=FrameStackReplayBuffer(SMALL_BUFFER, *args, device="cpu", n_envs=N_ENVS, storage_device="cpu"),
        big=FrameStackReplayBuffer(BIG_BUFFER, *args, device="cpu", n_envs=N_ENVS),
    )
    buffers = [fed.sb3, fed.fast, fed.fast_torch, fed.big]
    env.action_space.seed(0)
    obs = env.reset()
    for step in range(1, STREAM_STEPS + 1):
        actions = np.array([env.action_space.sample() for _ in range(N_ENVS)])
        new_obs, rewards, dones, infos = env.step(actions)
        store_transition(buffers, obs, new_obs, actions, rewards, dones, infos)
        obs = new_obs
        fed.dones += int(dones.sum())
        fed.timeouts += sum(info.get("TimeLimit.truncated", False) for info in infos)
        if step in EARLY_CHECKS:
            fed.early.append((step, *(sample(buffer, step, 16) for buffer in buffers[:3])))
    env.close()
    return fed


def test_real_stream_samples_match_sb3(fed: Fed) -> None:
    assert fed.sb3.full and fed.fast.full and fed.fast.pos == fed.sb3.pos
    assert fed.dones > 100 and fed.timeouts > 10, "the stream should have many episode ends, some of them timeouts"
    for seed in range(50):
        assert_same_samples(sample(fed.sb3, seed), sample(fed.fast, seed))
    # The whole buffer, with every env index: a large batch covers each transition many times
    assert_same_samples(sample(fed.sb3, 1234, 1_000), sample(fed.fast, 1234, 1_000))


def test_real_stream_samples_match_sb3_while_filling(fed: Fed) -> None:
    assert [step for step, *_ in fed.early] == list(EARLY_CHECKS)
    for _, expected, actual, _ in fed.early:
        assert_same_samples(expected, actual)


def test_torch_storage_matches_numpy_storage(fed: Fed) -> None:
    assert isinstance(fed.fast_torch._frames, th.Tensor) and isinstance(fed.fast._frames, np.ndarray)
    for _, _, numpy_samples, torch_samples in fed.early:
        assert_same_samples(numpy_samples, torch_samples)
    for seed in range(20):
        assert_same_samples(sample(fed.fast, seed), sample(fed.fast_torch, seed))
    assert_same_samples(sample(fed.sb3, 99, 1_000), sample(fed.fast_torch, 99, 1_000))


def test_memory_per_transition(fed: Fed) -> None:
    big = fed.big
    assert big.full and big.buffer_size * big.n_envs == BIG_BUFFER
    sb3 = ReplayBuffer(BIG_BUFFER, big.observation_space, big.action_space, device="cpu", n_envs=N_ENVS)  # lazy zeros
    arrays = (sb3.observations, sb3.next_observations, sb3.actions, sb3.rewards, sb3.dones, sb3.timeouts)
    sb3_per_transition = sum(array.nbytes for array in arrays) / BIG_BUFFER
    assert sb3_per_transition == pytest.approx(56_468)
    assert big.nbytes_per_transition <= 7_500
    # Every frame is stored, so nothing can be under one frame per transition
    assert big.nbytes_per_transition > 84 * 84


def test_pickle_round_trip(fed: Fed) -> None:
    for buffer in (fed.fast, fed.fast_torch):
        data = pickle.dumps(buffer)
        state = pickle.loads(pickle.dumps(buffer.__getstate__()))
        assert not any(isinstance(value, th.Tensor) for value in state.values())
        # Compact: about one frame per transition, where SB3 pickles eight
        assert len(data) < 2 * buffer.nbytes_per_transition * SMALL_BUFFER
        assert len(data) < len(pickle.dumps(fed.sb3)) / 6
        loaded = pickle.loads(data)
        assert type(loaded._frames) is type(buffer._frames)
        for seed in range(10):
            assert_same_samples(sample(fed.sb3, seed), sample(loaded, seed))


def test_optimize_memory_usage_is_refused() -> None:
    obs_space = spaces.Box(0, 255, (4, 84, 84), np.uint8)
    with pytest.raises(ValueError, match="optimize_memory_usage"):
        FrameStackReplayBuffer(100, obs_space, spaces.Discrete(4), optimize_memory_usage=True)


class SyntheticFrameStack:
    """
    VecFrameStack's semantics on small random frames, as ``_store_transition`` gives them to ``add()``: episodes
    of random length (some of a single step), some ending in a timeout, all-zero frames inside episodes, a
    mid-episode first observation and occasional resets without a done (as a new ``learn()`` does).
    """

    def __init__(self, n_envs: int, n_stack: int, frame_shape: tuple[int, ...], seed: int) -> None:
        self.n_envs, self.n_stack, self.frame_shape = n_envs, n_stack, frame_shape
        self.rng = np.random.default_rng(seed)
        self.obs = self.rng.integers(1, 256, (n_envs, n_stack * frame_shape[0], *frame_shape[1:]), dtype=np.uint8)
        self.observation_space = spaces.Box(0, 255, self.obs.shape[1:], np.uint8)

    def frames(self) -> np.ndarray:
        frames = self.rng.integers(0, 4, (self.n_envs, *self.frame_shape), dtype=np.uint8)
        frames[self.rng.random(self.n_envs) < 0.1] = 0
        return frames

    def reset_stacks(self) -> np.ndarray:
        stacks = np.zeros_like(self.obs)
        stacks[:, -self.frame_shape[0] :] = self.frames()
        return stacks

    def step(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        if self.rng.random() < 0.01:
            self.obs = self.reset_stacks()
        obs = self.obs.copy()
        next_obs = np.concatenate((obs[:, self.frame_shape[0] :], self.frames()), axis=1)
        dones = self.rng.random(self.n_envs) < 0.15
        infos = [{"TimeLimit.truncated": bool(done and self.rng.random() < 0.3)} for done in dones]
        actions = self.rng.integers(0, 4, self.n_envs)
        rewards = self.rng.standard_normal(self.n_envs)
        self.obs = np.where(dones[:, None, None, None], self.reset_stacks(), next_obs)
        return obs, next_obs, actions, rewards, dones, infos


@pytest.mark.parametrize(
    ("buffer_size", "n_envs", "n_stack", "frame_shape", "handle_timeout_termination"),
    [
        (1, 1, 4, (1, 3, 2), True),
        (7, 1, 4, (1, 3, 2), True),
        (30, 3, 4, (1, 2, 2), True),
        (31, 3, 4, (1, 2, 2), False),
        (16, 2, 2, (3, 2, 2), True),
        (9, 1, 1, (1, 2, 2), True),
    ],
)
@pytest.mark.parametrize("storage_device", [None, "cpu"])
def test_synthetic_stream_samples_match_sb3(
    buffer_size: int,
    n_envs: int,
    n_stack: int,
    frame_shape: tuple[int, ...],
    handle_timeout_termination: bool,
    storage_device: str | None,
) -> None:
    """Obs that do not continue the previous next_obs (first add, resets without a done) are stored exactly."""
    stream = SyntheticFrameStack(n_envs, n_stack, frame_shape, seed=buffer_size)
    args = (buffer_size, stream.observation_space, spaces.Discrete(4))
    kwargs = dict(device="cpu", n_envs=n_envs, handle_timeout_termination=handle_timeout_termination)
    sb3 = ReplayBuffer(*args, **kwargs)
    fast = FrameStackReplayBuffer(*args, **kwargs, n_stack=n_stack, storage_device=storage_device)
    for step in range(400):
        if step == 250:
            sb3.reset()
            fast.reset()
        transition = stream.step()
        sb3.add(*transition)
        fast.add(*transition)
        assert (fast.pos, fast.full, fast.size()) == (sb3.pos, sb3.full, sb3.size())
        assert_same_samples(sample(sb3, step, 64), sample(fast, step, 64))


def test_next_obs_that_is_not_a_shifted_obs_is_refused() -> None:
    """A next_obs that is not obs shifted by one frame plus a new frame cannot be stored: ValueError."""
    stream = SyntheticFrameStack(2, 4, (1, 3, 3), seed=0)
    fast = FrameStackReplayBuffer(10, stream.observation_space, spaces.Discrete(4), device="cpu", n_envs=2)
    fast.add(*stream.step())
    obs, next_obs, *rest = stream.step()
    next_obs[1, 0] += 1
    with pytest.raises(ValueError, match="env 1 is not its obs shifted"):
        fast.add(obs, next_obs, *rest)
    # Channel-last stacks (no VecTransposeImage) are not mistaken for channel-first ones
    channel_last = spaces.Box(0, 255, (84, 84, 4), np.uint8)
    fast = FrameStackReplayBuffer(10, channel_last, spaces.Discrete(4), device="cpu")
    frames = np.random.default_rng(0).integers(0, 256, (1, 84, 84, 5), dtype=np.uint8)
    with pytest.raises(ValueError, match="not its obs shifted"):
        fast.add(frames[..., :4], frames[..., 1:], np.array([0]), np.array([0.0]), np.array([False]), [{}])


def test_dqn_trains_identically(tmp_path) -> None:
    """The same DQN run with SB3's ReplayBuffer and with FrameStackReplayBuffer ends with the same weights."""

    def train(**kwargs: Any) -> DQN:
        env = breakout_env(n_envs=1, seed=0)
        model = DQN("CnnPolicy", env, buffer_size=300, learning_starts=50, seed=0, device="cpu", **kwargs)
        return model.learn(500)

    expected = train()
    actual = train(replay_buffer_class=FrameStackReplayBuffer)
    assert isinstance(actual.replay_buffer, FrameStackReplayBuffer) and actual.replay_buffer.full
    assert expected._n_updates == actual._n_updates > 100
    for (name, want), (_, got) in zip(
        expected.q_net.state_dict().items(), actual.q_net.state_dict().items(), strict=True
    ):
        assert th.equal(want, got), name
    assert_same_samples(sample(expected.replay_buffer, 0), sample(actual.replay_buffer, 0))
    actual.save_replay_buffer(tmp_path / "replay_buffer.pkl")
    actual.load_replay_buffer(tmp_path / "replay_buffer.pkl")
    assert_same_samples(sample(expected.replay_buffer, 1), sample(actual.replay_buffer, 1))


class CollectedStream(SyntheticFrameStack):
    """
    The synthetic stream as ``OffPolicyAlgorithm`` collects it: ``new_obs`` holds the reset stacks of the envs that
    are done (their last stacks are the terminal observations), and is the next step's ``obs``, the same array.
    """

    def collect(self) -> tuple[np.ndarray, ...]:
        if self.rng.random() < 0.01:
            self.obs = self.reset_stacks()  # a new array, as a new learn() resets the env
        obs = self.obs
        next_obs = np.concatenate((obs[:, self.frame_shape[0] :], self.frames()), axis=1)
        dones = self.rng.random(self.n_envs) < 0.15
        timeouts = dones & (self.rng.random(self.n_envs) < 0.3)
        actions = self.rng.integers(0, 4, self.n_envs)
        rewards = self.rng.standard_normal(self.n_envs)
        new_obs = np.where(dones[:, None, None, None], self.reset_stacks(), next_obs)
        self.obs = new_obs
        terminal = {int(i): next_obs[i].copy() for i in np.flatnonzero(dones)}
        return obs, new_obs, next_obs, actions, rewards, dones, terminal, timeouts


def fill_both(
    buffer_size: int, n_envs: int, n_stack: int, frame_shape: tuple[int, ...], steps: int, **kwargs: Any
) -> tuple[ReplayBuffer, FrameStackReplayBuffer]:
    """SB3's buffer fed with add(), ours with add_step(), the same collected stream."""
    stream = CollectedStream(n_envs, n_stack, frame_shape, seed=buffer_size + steps)
    args = (buffer_size, stream.observation_space, spaces.Discrete(4))
    sb3 = ReplayBuffer(*args, device="cpu", n_envs=n_envs)
    fast = FrameStackReplayBuffer(*args, device="cpu", n_envs=n_envs, n_stack=n_stack, **kwargs)
    for _ in range(steps):
        obs, new_obs, next_obs, actions, rewards, dones, terminal, timeouts = stream.collect()
        sb3.add(obs, next_obs, actions, rewards, dones, [{"TimeLimit.truncated": t} for t in timeouts])
        fast.add_step(obs, new_obs, actions, rewards, dones, terminal, timeouts)
    return sb3, fast


@pytest.mark.parametrize("storage_device", [None, "cpu"])
def test_add_step_stores_what_add_stores(storage_device: str | None) -> None:
    """add_step() (no copy of new_obs, no whole-stack comparisons) stores what SB3's add() stores."""
    stream = CollectedStream(3, 4, (1, 3, 2), seed=5)
    args = (60, stream.observation_space, spaces.Discrete(4))
    sb3 = ReplayBuffer(*args, device="cpu", n_envs=3)
    fast = FrameStackReplayBuffer(*args, device="cpu", n_envs=3, storage_device=storage_device)
    for step in range(300):
        obs, new_obs, next_obs, actions, rewards, dones, terminal, timeouts = stream.collect()
        sb3.add(obs, next_obs, actions, rewards, dones, [{"TimeLimit.truncated": t} for t in timeouts])
        fast.add_step(obs, new_obs, actions, rewards, dones, terminal, timeouts)
        assert_same_samples(sample(sb3, step, 64), sample(fast, step, 64))
    # A terminal observation that does not continue obs is refused, as add() refuses it
    obs, new_obs, next_obs, actions, rewards, dones, terminal, timeouts = stream.collect()
    terminal[1] = next_obs[1] + 1
    with pytest.raises(ValueError, match="env 1 is not its obs shifted"):
        fast.add_step(obs, new_obs, actions, rewards, np.array([False, True, False]), terminal, timeouts)


@pytest.mark.parametrize("storage_device", [None, "cpu"])
@pytest.mark.parametrize(("buffer_size", "steps"), [(40, 7), (40, 60)])  # partly filled; wrapped 6 times
def test_samples_at_rebuilds_every_transition_as_sb3_stores_it(
    storage_device: str | None, buffer_size: int, steps: int
) -> None:
    sb3, fast = fill_both(buffer_size, 4, 4, (1, 3, 2), steps, storage_device=storage_device)
    upper = sb3.buffer_size if sb3.full else sb3.pos
    slots, envs = (grid.ravel() for grid in np.meshgrid(np.arange(upper), np.arange(4), indexing="ij"))
    got = fast.samples_at(slots, envs)
    expected = [
        sb3.observations[slots, envs],
        sb3.actions[slots, envs],
        sb3.next_observations[slots, envs],
        (sb3.dones[slots, envs] * (1 - sb3.timeouts[slots, envs]))[:, None],
        sb3.rewards[slots, envs][:, None],
    ]
    for name, want in zip(ReplayBufferSamples._fields, expected, strict=False):
        np.testing.assert_array_equal(getattr(got, name).numpy(), want, err_msg=name)


@pytest.mark.parametrize("storage_device", [None, "cpu"])
@pytest.mark.parametrize(("buffer_size", "steps"), [(40, 7), (40, 60)])
def test_drawn_indices_are_uniform_over_stored_transitions(
    storage_device: str | None, buffer_size: int, steps: int
) -> None:
    """sample_batches draws each stored (slot, env) with the same probability, and nothing else (chi-square)."""
    _, fast = fill_both(buffer_size, 4, 4, (1, 3, 2), steps, storage_device=storage_device)
    np.random.seed(0)
    th.manual_seed(0)
    n = 1_000_000
    slots, envs = (np.asarray(index) for index in fast._draw_indices(n))
    upper = fast.buffer_size if fast.full else fast.pos
    assert slots.min() >= 0 and slots.max() < upper and envs.min() >= 0 and envs.max() < 4
    counts = np.bincount(slots * 4 + envs, minlength=upper * 4)
    assert len(counts) == upper * 4 and counts.min() > 0
    expected = n / (upper * 4)
    chi2 = ((counts - expected) ** 2 / expected).sum()
    dof = upper * 4 - 1
    # 6 standard deviations of the statistic for a uniform draw; 5% too many draws in a single cell go beyond it
    assert abs(chi2 - dof) < 6 * np.sqrt(2 * dof), (chi2, dof)


@pytest.mark.parametrize("storage_device", [None, "cpu"])
def test_sample_batches_never_returns_an_overwritten_transition(storage_device: str | None) -> None:
    """Every sampled transition is one the buffer holds now (frames, action, reward, done), on a wrapped buffer."""
    sb3, fast = fill_both(40, 4, 4, (1, 3, 2), 97, storage_device=storage_device)
    dones = sb3.dones * (1 - sb3.timeouts)
    held = {
        (obs.tobytes(), next_obs.tobytes(), int(action[0]), float(reward), float(done))
        for obs, next_obs, action, reward, done in zip(
            *(array.reshape(-1, *array.shape[2:]) for array in (sb3.observations, sb3.next_observations)),
            sb3.actions.reshape(-1, 1),
            sb3.rewards.ravel(),
            dones.ravel(),
            strict=True,
        )
    }
    for seed in range(20):
        np.random.seed(seed)
        th.manual_seed(seed)
        batch = fast.sample_batches(4, 32)
        assert batch.observations.shape == (128, 4, 3, 2) and batch.dones.shape == (128, 1)
        for i in range(128):
            transition = (
                batch.observations[i].numpy().tobytes(),
                batch.next_observations[i].numpy().tobytes(),
                int(batch.actions[i, 0]),
                float(batch.rewards[i, 0]),
                float(batch.dones[i, 0]),
            )
            assert transition in held


# What earlier versions pickled (protocol 5, all storages as numpy arrays): these attributes, "_gather_out" among them
EARLIER_PICKLED_ATTRS = (
    *("buffer_size", "observation_space", "action_space", "obs_shape", "action_dim", "pos", "full", "device"),
    *("n_envs", "optimize_memory_usage", "handle_timeout_termination", "n_stack", "frame_shape", "storage_device"),
    *("_ring", "_zero_row", "_frames", "_side_capacity", "_side_frames", "storage_version", "_meta", "_back"),
    *("actions", "rewards", "dones", "timeouts", "_n_added", "_side_count", "_step_side_start"),
    *("_last_next_frames", "_last_new_obs", "_last_terminal", "_last_meta", "_last_done", "_has_last"),
    "_gather_out",
)


@pytest.mark.parametrize("storage_device", [None, "cpu"])
def test_a_buffer_pickled_by_earlier_versions_loads(storage_device: str | None) -> None:
    """A replay buffer in the layout earlier versions pickled (in checkpoints) samples what it sampled then."""
    sb3, fast = fill_both(40, 4, 4, (1, 3, 2), 97, storage_device=storage_device)
    state = fast.__getstate__()
    assert set(state) == set(EARLIER_PICKLED_ATTRS) - {"_gather_out"}
    earlier = {name: state[name] for name in EARLIER_PICKLED_ATTRS if name != "_gather_out"}
    earlier["_gather_out"] = None
    loaded = FrameStackReplayBuffer.__new__(FrameStackReplayBuffer)
    loaded.__setstate__(pickle.loads(pickle.dumps(earlier, protocol=5)))
    assert loaded.__getstate__().keys() == state.keys() and loaded.sampling_device == fast.sampling_device
    for seed in range(5):
        assert_same_samples(sample(sb3, seed), sample(loaded, seed))
    slots, envs = (grid.ravel() for grid in np.meshgrid(np.arange(10), np.arange(4), indexing="ij"))
    assert_same_samples(fast.samples_at(slots, envs), loaded.samples_at(slots, envs))
    np.random.seed(0)
    th.manual_seed(0)
    expected = fast.sample_batches(2, 16)
    np.random.seed(0)
    th.manual_seed(0)
    assert_same_samples(expected, loaded.sample_batches(2, 16))
