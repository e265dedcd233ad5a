"""TwoPhaseEpsilonCallback: the epsilon DQN acts with, at every step, across save/load and several envs."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import zipfile

import cloudpickle
import numpy as np
import pytest
from stable_baselines3 import DQN
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.utils import ConstantSchedule

from callbacks import TwoPhaseEpsilonCallback, TwoPhaseEpsilonSchedule
from tests.conftest import breakout_env

# (step, epsilon for the action taken after `step` env steps), the recipe's schedule at its boundaries.
RECIPE_BOUNDARIES = [
    (0, 1.0),
    (49_999, 1.0),
    (50_000, 1.0),
    (50_001, 1.0 - 0.9 / 1_000_000),
    (550_000, 0.55),
    (1_050_000, 0.1),
    (13_050_000, 0.055),
    (25_050_000, 0.01),
    (30_000_000, 0.01),
]


class RecordingDQN(DQN):
    """DQN that records the epsilon in effect each time it selects an action."""

    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        self.epsilon_at_action.append((self.num_timesteps, self.exploration_rate))
        return super().predict(observation, state, episode_start, deterministic)


class RecordingWriter(KVWriter):
    def __init__(self):
        self.records = []

    def write(self, key_values, key_excluded, step=0):
        self.records.append(dict(key_values))


def recording_dqn(env, **kwargs) -> RecordingDQN:
    model = RecordingDQN("CnnPolicy", env, buffer_size=64, learning_starts=0, seed=0, device="cpu", **kwargs)
    model.epsilon_at_action = []
    return model


@pytest.mark.parametrize(("step", "expected"), RECIPE_BOUNDARIES)
def test_schedule_values_at_the_recipe_boundaries(step, expected):
    assert TwoPhaseEpsilonSchedule().value(step) == pytest.approx(expected, abs=1e-12)


def test_epsilon_in_effect_at_action_selection_at_every_boundary():
    env = breakout_env()
    model = recording_dqn(env, train_freq=4)
    for step, expected in RECIPE_BOUNDARIES:
        model.epsilon_at_action.clear()
        model.num_timesteps = step
        model.learn(4, callback=TwoPhaseEpsilonCallback(), reset_num_timesteps=False)
        first_step, first_eps = model.epsilon_at_action[0]
        assert first_step == step
        assert first_eps == pytest.approx(expected, abs=1e-12)
        # every later action of the rollout too
        for s, eps in model.epsilon_at_action:
            assert eps == pytest.approx(TwoPhaseEpsilonSchedule().value(s), abs=1e-12)
    env.close()


def test_value_overrides_sb3_own_schedule_and_is_logged():
    env = breakout_env()
    writer = RecordingWriter()
    # SB3's own schedule would give 0.05 after 10% of training: a callback that only set exploration_rate
    # would lose against it.
    model = recording_dqn(env, exploration_fraction=0.01, exploration_final_eps=0.05, train_freq=4)
    model.set_logger(Logger(folder=None, output_formats=[writer]))
    callback = TwoPhaseEpsilonCallback(random_steps=10, first_decay_steps=20, second_decay_steps=40)
    model.learn(100, callback=callback, log_interval=1)
    schedule = callback.schedule
    for step, eps in model.epsilon_at_action:
        assert eps == pytest.approx(schedule.value(step))
    logged = [r["rollout/exploration_rate"] for r in writer.records if "rollout/exploration_rate" in r]
    assert logged, "rollout/exploration_rate was never logged"
    assert model.exploration_rate == pytest.approx(schedule.value(model.num_timesteps))
    assert logged[-1] == pytest.approx(model.exploration_rate)
    env.close()


def test_continues_after_save_and_load(tmp_path):
    env = breakout_env()
    kwargs = dict(random_steps=10, first_decay_steps=100, second_decay_steps=1000)
    model = recording_dqn(env)
    model.learn(200, callback=TwoPhaseEpsilonCallback(**kwargs))
    model.save(tmp_path / "model.zip")

    loaded = RecordingDQN.load(tmp_path / "model.zip", env=env, device="cpu")
    loaded.epsilon_at_action = []
    loaded.learn(20, callback=TwoPhaseEpsilonCallback(**kwargs), reset_num_timesteps=False)
    step, eps = loaded.epsilon_at_action[0]
    assert step == 200
    assert eps == pytest.approx(TwoPhaseEpsilonSchedule(**kwargs).value(200))
    assert eps < 0.5
    env.close()


def test_saved_zip_holds_no_reference_to_this_package(tmp_path):
    env = breakout_env()
    model = recording_dqn(env)
    model.learn(60, callback=TwoPhaseEpsilonCallback(random_steps=10, first_decay_steps=100))
    model.save(tmp_path / "model.zip")
    with zipfile.ZipFile(tmp_path / "model.zip") as archive:
        data = json.loads(archive.read("data"))
    schedule = cloudpickle.loads(base64.b64decode(data["exploration_schedule"][":serialized:"]))
    assert isinstance(schedule, ConstantSchedule)
    assert schedule(1.0) == pytest.approx(model.exploration_rate)

    # Plain DQN.load where neither `callbacks` nor `breakout_sb3` can be imported.
    code = (
        "import sys; sys.modules['callbacks'] = None; sys.modules['breakout_sb3'] = None\n"
        "from stable_baselines3 import DQN\n"
        f"m = DQN.load({str(tmp_path / 'model.zip')!r}, device='cpu'); print(m.num_timesteps)"
    )
    out = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "60"
    env.close()


def test_counts_env_steps_of_all_envs():
    env = make_vec_env("CartPole-v1", n_envs=3, seed=0)
    model = DQN("MlpPolicy", env, buffer_size=500, learning_starts=0, seed=0, device="cpu")
    seen = []
    original_predict = model.predict

    def predict(observation, state=None, episode_start=None, deterministic=False):
        seen.append((model.num_timesteps, model.exploration_rate))
        return original_predict(observation, state, episode_start, deterministic)

    model.predict = predict
    callback = TwoPhaseEpsilonCallback(random_steps=30, first_decay_steps=60, second_decay_steps=90)
    model.learn(300, callback=callback)
    steps = [s for s, _ in seen]
    assert steps[:3] == [0, 3, 6]
    for step, eps in seen:
        assert eps == pytest.approx(callback.schedule.value(step))
    assert np.isclose(seen[-1][1], 0.01)


def test_rejects_a_model_without_epsilon_greedy_exploration():
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=1), n_steps=32, device="cpu")
    with pytest.raises(TypeError, match="exploration_schedule"):
        model.learn(32, callback=TwoPhaseEpsilonCallback())


@pytest.mark.parametrize(
    "kwargs", [dict(initial_eps=1.5), dict(final_eps=-0.1), dict(random_steps=-1), dict(second_decay_steps=-5)]
)
def test_rejects_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        TwoPhaseEpsilonSchedule(**kwargs)
