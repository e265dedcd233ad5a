"""FastDQN: the same update as SB3's DQN, the same number of updates, per-env exploration, plain DQN zips."""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest
import torch as th
from stable_baselines3 import DQN

from breakout_sb3.fast import AleVecEnv, FastDQN, FrameStackReplayBuffer
from tests.conftest import breakout_env, recipe_kwargs


@pytest.fixture(autouse=True)
def one_torch_thread():
    # ale-py's C++ threads and torch's would fight over the 2 cores of CI (10x slower).
    threads = th.get_num_threads()
    th.set_num_threads(1)
    yield
    th.set_num_threads(threads)


def assert_same_weights(a, b):
    state_a, state_b = a.policy.state_dict(), b.policy.state_dict()
    assert state_a.keys() == state_b.keys()
    for name in state_a:
        assert th.equal(state_a[name], state_b[name]), name


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
        assert fast.logger.name_to_value["train/loss"] == vanilla.logger.name_to_value["train/loss"]
    env.close()


def test_same_number_of_updates_and_target_syncs_as_sb3():
    env = breakout_env(n_envs=4, seed=0)
    kwargs = recipe_kwargs(buffer_size=500, seed=0, train_freq=1, target_update_interval=100)
    vanilla = DQN("CnnPolicy", env, **kwargs).learn(400)
    fast = FastDQN("CnnPolicy", breakout_env(n_envs=4, seed=0), **kwargs).learn(400)
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
