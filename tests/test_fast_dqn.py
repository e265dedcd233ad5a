"""FastDQN: the same update as SB3's DQN, the same number of updates, per-env exploration, plain DQN zips."""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest
import torch as th
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from breakout_sb3.fast import AleVecEnv, FastDQN, FrameStackReplayBuffer
from tests.conftest import breakout_env, recipe_kwargs

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# FastDQN's networks and batches are channels-last: the same float32 arithmetic in another summation order. Its
# rounding differences (about 2e-9 on the gradients, tests/test_precision.py) leave the weights within 7.5e-9 of
# SB3's after these updates (measured); 1e-7 allows for other CPUs' kernels and still fails on any real change
WEIGHT_ATOL = 1e-7


def assert_same_weights(a, b):
    state_a, state_b = a.policy.state_dict(), b.policy.state_dict()
    assert state_a.keys() == state_b.keys()
    for name in state_a:
        th.testing.assert_close(state_a[name], state_b[name], rtol=0, atol=WEIGHT_ATOL, msg=name)


def test_one_update_is_sb3s_update_on_identical_inputs():
    env = breakout_env(seed=0)
    vanilla = DQN("CnnPolicy", env, **recipe_kwargs(buffer_size=500, seed=0))
    fast = FastDQN("CnnPolicy", env, **recipe_kwargs(buffer_size=500, seed=0))
    fast.policy.load_state_dict(vanilla.policy.state_dict())
    vanilla.learn(200)  # fills vanilla's replay with a real stream and trains it a little
    fast.replay_buffer = vanilla.replay_buffer
    fast.set_logger(vanilla.logger)

    for _ in range(3):
        fast.policy.load_state_dict(vanilla.policy.state_dict())
        # a deep copy: Optimizer.load_state_dict would share the state tensors of vanilla's Adam
        fast.policy.optimizer.load_state_dict(copy.deepcopy(vanilla.policy.optimizer.state_dict()))
        state = np.random.get_state()
        vanilla.train(gradient_steps=1, batch_size=32)
        np.random.set_state(state)
        fast._run_updates(gradient_steps=1, batch_size=32)
        assert_same_weights(vanilla, fast)
        fast.train(1, 32)
        assert fast.logger.name_to_value["train/loss"] == pytest.approx(
            vanilla.logger.name_to_value["train/loss"], rel=1e-6
        )
    env.close()


@pytest.mark.parametrize("overlap_env", [True, False])
def test_same_number_of_updates_and_target_syncs_as_sb3(overlap_env):
    env = breakout_env(n_envs=4, seed=0)
    kwargs = recipe_kwargs(buffer_size=500, seed=0, train_freq=1, target_update_interval=100)
    vanilla = DQN("CnnPolicy", env, **kwargs).learn(400)
    fast = FastDQN("CnnPolicy", breakout_env(n_envs=4, seed=0), overlap_env=overlap_env, **kwargs).learn(400)
    assert fast.num_timesteps == vanilla.num_timesteps == 400
    assert fast._n_updates == vanilla._n_updates > 0
    assert fast._n_calls == vanilla._n_calls
    env.close()


def test_each_env_explores_on_its_own():
    env = breakout_env(n_envs=8, seed=0)
    model = FastDQN("CnnPolicy", env, **recipe_kwargs(buffer_size=500, seed=0))
    model.exploration_rate = 0.5
    obs = env.reset()
    greedy, _ = model.predict(obs, deterministic=True)
    np.random.seed(1)
    model.action_space.seed(1)
    mixed = [model.predict(obs)[0] != greedy for _ in range(50)]
    partly = [0 < diff.sum() < len(diff) for diff in mixed]
    assert sum(partly) > 25, "with one draw per call, all envs would explore or exploit together"
    env.close()


def test_fast_configuration_trains_and_saves_a_plain_dqn_zip(tmp_path):
    env = AleVecEnv(n_envs=4, seed=0)
    model = FastDQN(
        "CnnPolicy",
        env,
        replay_buffer_class=FrameStackReplayBuffer,
        **recipe_kwargs(train_freq=1, buffer_size=1_000, seed=0),
    )
    model.learn(600)
    # one update per vector step of 4 envs once more than 32 transitions are stored: steps 36, 40, ..., 600
    assert model._n_updates == (600 - 36) // 4 + 1
    model.save(tmp_path / "fast.zip")
    env.close()
    loaded = DQN.load(tmp_path / "fast.zip", device="cpu")
    assert type(loaded) is DQN
    assert_same_weights(model, loaded)
    obs = np.zeros((1, 4, 84, 84), dtype=np.uint8)
    assert loaded.predict(obs, deterministic=True)[0].shape == (1,)

    # where breakout-sb3 cannot be imported at all
    code = (
        "import sys; sys.modules['breakout_sb3'] = None; sys.modules['callbacks'] = None\n"
        "from stable_baselines3 import DQN\n"
        f"print(DQN.load({str(tmp_path / 'fast.zip')!r}, device='cpu').num_timesteps)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "600"


def test_rejects_what_it_cannot_pipeline():
    env = breakout_env(seed=0)
    with pytest.raises(ValueError, match="gradient_steps"):
        FastDQN("CnnPolicy", env, **recipe_kwargs(gradient_steps=-1, seed=0))
    with pytest.raises(ValueError, match="train_freq"):
        FastDQN("CnnPolicy", env, **recipe_kwargs(train_freq=(1, "episode"), seed=0))
    env.close()


class SameBatches:
    """A stand-in replay for SB3's DQN.train: hands out the given batches one after the other."""

    def __init__(self, data: ReplayBufferSamples, batch_size: int):
        self.data, self.batch_size, self.taken = data, batch_size, 0

    def sample(self, batch_size: int, env=None) -> ReplayBufferSamples:
        assert batch_size == self.batch_size
        part = slice(self.taken * batch_size, (self.taken + 1) * batch_size)
        self.taken += 1
        return ReplayBufferSamples(*(t[part].contiguous() for t in self.data[:5]))


@pytest.mark.parametrize("storage_device", [None, "cpu"])
def test_one_draw_updates_are_sb3s_updates_on_the_same_batches(storage_device):
    """
    A vector step's gradient steps drawn at once (sample_batches: one draw, one gather; with storage_device "cpu",
    the code that runs on a GPU, where a CUDA graph captures it) update the network as SB3's DQN.train does, given
    the same batches.
    """
    env = AleVecEnv(n_envs=4, seed=0)
    kwargs = recipe_kwargs(buffer_size=1_000, seed=0, train_freq=1, gradient_steps=3)
    fast = FastDQN(
        "CnnPolicy",
        env,
        replay_buffer_class=FrameStackReplayBuffer,
        replay_buffer_kwargs={"storage_device": storage_device},
        **kwargs,
    )
    fast.learn(200)  # a real stream in the replay, and a few updates
    vanilla = DQN("CnnPolicy", env, **kwargs)
    vanilla.set_logger(fast.logger)
    for _ in range(2):
        vanilla.policy.load_state_dict(fast.policy.state_dict())
        vanilla.policy.optimizer.load_state_dict(copy.deepcopy(fast.policy.optimizer.state_dict()))
        np_state, th_state = np.random.get_state(), th.get_rng_state()
        data = fast.replay_buffer.sample_batches(3, 32)
        np.random.set_state(np_state)
        th.set_rng_state(th_state)
        vanilla.replay_buffer = SameBatches(data, 32)
        vanilla.train(gradient_steps=3, batch_size=32)
        fast._run_updates(gradient_steps=3, batch_size=32)
        assert_same_weights(vanilla, fast)
        vanilla_loss = vanilla.logger.name_to_value["train/loss"]
        fast.train(3, 32)
        assert fast.logger.name_to_value["train/loss"] == pytest.approx(vanilla_loss, rel=1e-6)
    env.close()


class EpisodeEnds(BaseCallback):
    """Records every episode end the callbacks see: (step, env, score of the game if it ended)."""

    def __init__(self):
        super().__init__()
        self.ends = []

    def _on_step(self) -> bool:
        for i in np.flatnonzero(self.locals["dones"]):
            episode = self.locals["infos"][i].get("episode")
            self.ends.append((self.num_timesteps, int(i), None if episode is None else episode["r"]))
        return True


def test_collects_what_sb3_collects():
    """
    FastDQN's collection (transitions stored without copies, episode bookkeeping only where envs are done) gives what
    SB3's DQN collects from the same env stream: the same replay content, episode infos, episode count, and
    callbacks that see every episode end. Random actions (before learning_starts), so both play the same games.
    """
    models, ends = [], []
    for cls, replay_class in ((DQN, None), (FastDQN, FrameStackReplayBuffer)):
        env = AleVecEnv(n_envs=4, seed=0, max_episode_steps=60)  # games cut at 60 steps: timeouts and game ends
        kwargs = recipe_kwargs(buffer_size=4_000, seed=0, train_freq=1, learning_starts=10**6)
        model = cls("CnnPolicy", env, replay_buffer_class=replay_class, **kwargs)
        callback = EpisodeEnds()
        model.learn(1_600, callback=callback, log_interval=3)
        models.append(model)
        ends.append(callback.ends)
        env.close()
    vanilla, fast = models
    assert fast.num_timesteps == vanilla.num_timesteps == 1_600
    assert fast._episode_num == vanilla._episode_num == len(ends[0]) > 30
    assert ends[0] == ends[1] and sum(score is not None for *_, score in ends[0]) >= 20
    assert [(e["r"], e["l"]) for e in fast.ep_info_buffer] == [(e["r"], e["l"]) for e in vanilla.ep_info_buffer]
    assert fast.replay_buffer.size() == vanilla.replay_buffer.size() == 400
    assert vanilla.replay_buffer.timeouts.sum() > 0
    for seed in range(10):
        np.random.seed(seed)
        expected = vanilla.replay_buffer.sample(64)
        np.random.seed(seed)
        actual = fast.replay_buffer.sample(64)
        for name in ("observations", "actions", "next_observations", "dones", "rewards"):
            assert th.equal(getattr(expected, name), getattr(actual, name)), name
