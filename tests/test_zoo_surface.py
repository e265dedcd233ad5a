"""What breakout-sb3 relies on inside rl-zoo3 (breakout_sb3/zoo_insides.py) is still there and still means the same:
an overridden method gone or called with other parameters, a private name gone, or an override nobody listed, fails
here rather than in a user's run."""

from __future__ import annotations

import argparse
import inspect

import pytest
import rl_zoo3.train
from rl_zoo3.callbacks import TrialEvalCallback
from rl_zoo3.exp_manager import ExperimentManager
from rl_zoo3.utils import ALGOS
from stable_baselines3 import DQN

from breakout_sb3 import ENV_ID
from breakout_sb3.manager import TrainingExperimentManager
from breakout_sb3.recipe_manager import RecipeExperimentManager
from breakout_sb3.tune.manager import EvalAtEpsilonCallback, TuneExperimentManager
from breakout_sb3.zoo_insides import (
    OVERRIDDEN_MANAGER_METHODS,
    OVERRIDDEN_TRIAL_EVAL_METHODS,
    TRAIN_MODULE_NAMES,
    create_pruner,
    create_sampler,
    eval_env_kwargs_flag,
    register_algorithm,
    train_module_swapped,
)


def overrides(ours: type, theirs: type) -> set[str]:
    """:return: the methods ``ours`` defines that ``theirs`` has too (``__init__`` passes everything through)"""
    return {name for name, value in vars(ours).items() if callable(value) and hasattr(theirs, name)} - {"__init__"}


def parameters(method: object) -> tuple[str, ...]:
    return tuple(inspect.signature(method).parameters)


@pytest.mark.parametrize(
    ("theirs", "listed", "ours"),
    [
        (ExperimentManager, OVERRIDDEN_MANAGER_METHODS, (RecipeExperimentManager, TrainingExperimentManager,
                                                         TuneExperimentManager)),
        (TrialEvalCallback, OVERRIDDEN_TRIAL_EVAL_METHODS, (EvalAtEpsilonCallback,)),
    ],
)  # fmt: skip
def test_every_override_is_listed_and_rl_zoo3_still_calls_it_with_the_same_parameters(theirs, listed, ours):
    overridden = set().union(*(overrides(cls, theirs) for cls in ours))
    assert overridden == set(listed), "an override of rl-zoo3 that zoo_insides does not list, or one listed in vain"
    for name, expected in listed.items():
        assert name in vars(theirs) or any(name in vars(base) for base in theirs.__mro__[1:]), f"{name} is gone"
        assert parameters(getattr(theirs, name)) == expected, f"{theirs.__name__}.{name} takes other parameters"


def manager(tmp_path, **kwargs) -> ExperimentManager:
    return ExperimentManager(argparse.Namespace(), "dqn", ENV_ID, str(tmp_path), verbose=0, **kwargs)


def test_the_private_attributes_and_methods(tmp_path):
    assert eval_env_kwargs_flag(manager(tmp_path)) is None
    assert eval_env_kwargs_flag(manager(tmp_path, eval_env_kwargs={"a": 1})) == {"a": 1}
    assert "self._hyperparams = " in inspect.getsource(ExperimentManager.setup_experiment)
    tuner = manager(tmp_path)
    assert type(create_sampler(tuner, "random")).__name__ == "RandomSampler"
    assert type(create_pruner(tuner, "median")).__name__ == "MedianPruner"


def test_the_algorithm_table(monkeypatch):
    monkeypatch.setitem(ALGOS, "dqn_surface_test", DQN)
    register_algorithm("dqn_surface_test", object)  # registered already: left as it is
    assert ALGOS["dqn_surface_test"] is DQN
    monkeypatch.delitem(ALGOS, "dqn_surface_test")
    register_algorithm("dqn_surface_test", DQN)
    assert ALGOS["dqn_surface_test"] is DQN
    monkeypatch.delitem(ALGOS, "dqn_surface_test")


def test_train_builds_its_parser_and_manager_from_the_swapped_names():
    for name in TRAIN_MODULE_NAMES:
        assert hasattr(rl_zoo3.train, name), f"rl_zoo3.train.{name} is gone"
    source = inspect.getsource(rl_zoo3.train.train)
    assert "argparse.ArgumentParser(" in source and "ExperimentManager(" in source
    built = []

    class Parser(argparse.ArgumentParser):
        def parse_args(self, *args, **kwargs):
            built.append(self)
            raise SystemExit(0)

    saved = rl_zoo3.train.ExperimentManager, rl_zoo3.train.argparse
    with train_module_swapped(object, Parser), pytest.raises(SystemExit):
        rl_zoo3.train.train()
    assert (rl_zoo3.train.ExperimentManager, rl_zoo3.train.argparse) == saved
    assert "--algo" in built[0]._option_string_actions
