"""
Every name of rl-zoo3's insides that breakout-sb3 relies on, in one place: the methods of its ``ExperimentManager``
and ``TrialEvalCallback`` that our subclasses override (with the parameters rl-zoo3 calls them with), the private
attributes and methods they use, the algorithm table we add to, and the names of ``rl_zoo3.train`` that
``breakout_sb3.zoo_train`` swaps. An upgrade of rl-zoo3 checks this file; ``tests/test_zoo_surface.py`` fails when any
of it changes (a name gone, other parameters, an override not listed here). The rl-zoo3 version it was tested with is
pyproject.toml's pin.
"""

from __future__ import annotations

import argparse
import contextlib
import types
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import rl_zoo3.train
from rl_zoo3.exp_manager import ExperimentManager
from rl_zoo3.utils import ALGOS

if TYPE_CHECKING:
    from optuna.pruners import BasePruner
    from optuna.samplers import BaseSampler

# ExperimentManager's methods that the recipe, training and tuning managers override, and their parameters.
OVERRIDDEN_MANAGER_METHODS: dict[str, tuple[str, ...]] = {
    "read_hyperparameters": ("self",),
    "_preprocess_hyperparams": ("self", "hyperparams"),
    "create_log_folder": ("self",),
    "create_envs": ("self", "n_envs", "eval_env", "no_log"),
    "create_callbacks": ("self",),
    "_save_config": ("self", "saved_hyperparams"),
    "setup_experiment": ("self",),
    "_load_pretrained_agent": ("self", "hyperparams", "env"),
    "learn": ("self", "model"),
    "save_trained_model": ("self", "model"),
    "hyperparameters_optimization": ("self",),
    "objective": ("self", "trial"),
}
# TrialEvalCallback's methods that the tuning manager's evaluation callback overrides.
OVERRIDDEN_TRIAL_EVAL_METHODS: dict[str, tuple[str, ...]] = {"_on_step": ("self",)}
# The names of rl_zoo3.train that zoo_train swaps while rl-zoo3's train() runs.
TRAIN_MODULE_NAMES = ("ExperimentManager", "argparse")


def trained_hyperparams(manager: ExperimentManager) -> dict[str, Any]:
    """:return: the algorithm's arguments as ``setup_experiment`` prepared them (schedules, action noise, ...)"""
    return manager._hyperparams


def eval_env_kwargs_flag(manager: ExperimentManager) -> dict[str, Any] | None:
    """:return: the ``--eval-env-kwargs`` given (None: not given; rl-zoo3 then builds the eval env without kwargs)"""
    return manager._eval_env_kwargs_args


def create_sampler(manager: ExperimentManager, name: str) -> BaseSampler:
    """:return: the Optuna sampler rl-zoo3 builds for ``--sampler name``"""
    return manager._create_sampler(name)


def create_pruner(manager: ExperimentManager, name: str) -> BasePruner:
    """:return: the Optuna pruner rl-zoo3 builds for ``--pruner name``"""
    return manager._create_pruner(name)


def register_algorithm(name: str, algo_class: type) -> None:
    """Add ``algo_class`` to rl-zoo3's algorithm table (``--algo``'s choices) as ``name``; again, it does nothing."""
    ALGOS.setdefault(name, algo_class)


@contextlib.contextmanager
def train_module_swapped(manager: Callable[..., Any], parser: Callable[[], argparse.ArgumentParser]) -> Iterator[None]:
    """Inside, rl-zoo3's ``train()`` runs with ``manager`` as its ExperimentManager and ``parser`` as its parser."""
    module = rl_zoo3.train
    saved = module.ExperimentManager, module.argparse
    module.ExperimentManager = manager
    module.argparse = types.SimpleNamespace(ArgumentParser=parser)  # train() uses argparse for its parser only
    try:
        yield
    finally:
        module.ExperimentManager, module.argparse = saved
