"""The search space of `breakout-sb3 tune`, read from hyperparams/dqn.yml: its first trial, the replay ratio, errors."""

from __future__ import annotations

import optuna
import pytest
import yaml
from rl_zoo3.utils import ALGOS

from breakout_sb3 import ENV_ID
from breakout_sb3.config import class_specs, default_config_path, read_config
from breakout_sb3.errors import BreakoutSB3Error
from breakout_sb3.recipe_manager import register_fast_dqn
from breakout_sb3.tune.space import SPACE_KEY, SearchSpace
from breakout_sb3.zoo_args import FAST_ALGO

EPSILON = "callbacks.TwoPhaseEpsilonCallback"


def yaml_space(entry_name: str = ENV_ID, algo: str = "dqn", fixed: set[str] | None = None) -> SearchSpace:
    register_fast_dqn()
    config = read_config(default_config_path())
    return SearchSpace.from_config(config, config[entry_name], ALGOS[algo], "dqn.yml", fixed=fixed or set())


def replay_ratio(entry: dict) -> float:
    """Samples per agent step: gradient steps x batch size per train_freq vector steps of n_envs envs."""
    return entry["gradient_steps"] * entry["batch_size"] / (entry["train_freq"] * entry.get("n_envs", 1))


def test_the_first_trial_is_the_entrys_own_values():
    space = yaml_space()
    entry = read_config(default_config_path())[ENV_ID]
    epsilon = dict(class_specs(entry["callback"]))[EPSILON]
    for param in space.params:
        expected = entry[param.key] if param.callback is None else epsilon[param.key]
        assert space.recipe[param.name] == expected, param.name
    assert space.apply(entry, space.recipe) == entry
    # the list: learning rate, target sync, epsilon phases and values, batch, clipping, gamma, replay
    searched = {p.key for p in space.params}
    hyperparams = {"learning_rate", "target_update_interval", "batch_size", "max_grad_norm", "gamma", "buffer_size"}
    assert hyperparams <= searched
    assert {"random_steps", "first_decay_steps", "second_decay_steps", "middle_eps", "final_eps"} <= searched
    assert not searched & {"exploration_fraction", "exploration_final_eps", "exploration_initial_eps"}


@pytest.mark.parametrize(("entry_name", "algo"), [(ENV_ID, "dqn"), (f"{ENV_ID}-fast", FAST_ALGO)])
def test_every_batch_size_keeps_the_replay_ratio(entry_name, algo):
    space = yaml_space(entry_name, algo)
    entry = read_config(default_config_path())[entry_name]
    (batch,) = [p for p in space.params if p.key == "batch_size"]
    assert replay_ratio(entry) == 8
    for batch_size in batch.distribution.choices:
        tuned = space.apply(entry, {"batch_size": batch_size})
        assert tuned["batch_size"] == batch_size
        assert replay_ratio(tuned) == 8, tuned
    if "n_envs" in entry:  # fast: after each vector step of 16 envs, 128 samples in batches of the size
        assert [space.apply(entry, {"batch_size": b})["gradient_steps"] for b in (16, 64, 128)] == [8, 2, 1]
    else:  # the recipe: one batch every train_freq agent steps
        assert [space.apply(entry, {"batch_size": b})["train_freq"] for b in (16, 64, 128)] == [2, 8, 16]


def test_sampled_values_go_into_the_callbacks_arguments_and_the_rest_is_kept():
    space = yaml_space()
    entry = read_config(default_config_path())[ENV_ID]
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3)).ask()
    values = space.suggest(trial)
    tuned = space.apply(entry, values)
    epsilon = dict(class_specs(tuned["callback"]))[EPSILON]
    assert epsilon["middle_eps"] == values["TwoPhaseEpsilonCallback.middle_eps"]
    assert epsilon["random_steps"] == values["TwoPhaseEpsilonCallback.random_steps"]
    assert epsilon["initial_eps"] == 1.0  # not searched: the entry's
    assert [name for name, _ in class_specs(tuned["callback"])] == [name for name, _ in class_specs(entry["callback"])]
    assert tuned["learning_rate"] == values["learning_rate"] and tuned["policy"] == entry["policy"]
    assert entry == read_config(default_config_path())[ENV_ID]  # the entry itself is not changed


def test_params_given_on_the_command_line_are_fixed():
    space = yaml_space(fixed={"buffer_size", "gamma"})
    assert not {"buffer_size", "gamma"} & {p.name for p in space.params}


ENTRY = {
    "policy": "CnnPolicy",
    "learning_rate": 0.00025,
    "batch_size": 32,
    "train_freq": 4,
    "gradient_steps": 1,
    "callback": [{EPSILON: {"middle_eps": 0.1}}, "callbacks.NonFiniteLossCallback"],
}


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (None, f"no search space (a '{SPACE_KEY}:' section)"),
        ({"learning_rate": {"low": 0.001, "high": 0.01}}, "the entry's own value 0.00025 is not in its search space"),
        ({"batch_size": {"choices": [64, 128]}}, "the entry's own value 32 is not in its search space"),
        ({"lerning_rate": {"low": 0.0, "high": 1.0}}, "'lerning_rate' cannot be searched"),
        ({"n_envs": {"choices": [1, 2]}}, "'n_envs' cannot be searched"),
        ({"train_freq": {"choices": [4, 8]}}, "'train_freq' is not searched: it follows batch_size"),
        ({"callbacks.CSVStatsCallback": {"window": {"choices": [100]}}}, "is not one of the entry's callbacks"),
        ({EPSILON: {"middle": {"low": 0.0, "high": 0.5}}}, "has no argument 'middle'"),
        ({EPSILON: {"middle_eps": {"low": 0.0, "high": 2.0}}}, "middle_eps 2.0"),
        ({"learning_rate": {"low": 0.0, "high": 0.001, "log": True}}, "learning_rate"),
        ({"learning_rate": [0.001, 0.01]}, "expected {low: .., high: ..} or {choices: [..]}"),
        ({"learning_rate": {"low": 0.0001, "hi": 0.01}}, "expected {low: .., high: ..}"),
        ({"gamma": {"choices": []}}, "a non-empty list"),
        ({"batch_size": {"choices": [16, 32, 16]}}, "listed twice"),
        ({"buffer_size": {"choices": [16, 1000]}}, "'buffer_size' must be >= batch_size"),
    ],
)
def test_bad_search_spaces_are_one_line(section, message):
    config = {ENV_ID: ENTRY} if section is None else {ENV_ID: ENTRY, SPACE_KEY: section}
    with pytest.raises(BreakoutSB3Error) as error:
        SearchSpace.from_config(config, {**ENTRY, "buffer_size": 1000}, ALGOS["dqn"], "space.yml", fixed=set())
    assert message in str(error.value)
    assert len(str(error.value).splitlines()) == 1


def test_the_yaml_has_the_space_under_a_key_rl_zoo3_never_reads():
    config = yaml.safe_load(default_config_path().read_text())
    assert SPACE_KEY in config and list(config)[-1] == SPACE_KEY
    assert SPACE_KEY not in (ENV_ID, "atari", "default")
