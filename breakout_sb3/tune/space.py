"""
The search space of ``breakout-sb3 tune``: declared in the YAML beside the recipe, sampled for each trial, and
applied to the rl-zoo3 entry being tuned.

The YAML's ``breakout-sb3-tune`` section names hyperparameters (the algorithm's constructor arguments) and, under a
callback's import path, that callback's arguments. Each gets either a range or a list of choices::

    breakout-sb3-tune:
      learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}
      batch_size: {choices: [16, 32, 64, 128]}
      callbacks.TwoPhaseEpsilonCallback:
        middle_eps: {low: 0.01, high: 0.2}

A range of integers samples integers (``step`` optional), otherwise floats (``log`` or ``step`` optional). The
section is not an environment id, so rl-zoo3 and ``breakout-sb3 train`` never read it.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from rl_zoo3.utils import get_class_by_name

from breakout_sb3.config import class_specs, constructor_parameters
from breakout_sb3.errors import BreakoutSB3Error
from breakout_sb3.ranges import check_hyperparam_ranges
from breakout_sb3.tune.optuna_insides import contains

SPACE_KEY = "breakout-sb3-tune"
# Set from the batch size, so that the replay ratio (samples per agent step) stays the entry's.
FOLLOW_BATCH_SIZE = ("train_freq", "gradient_steps")
# Constructor arguments that are objects, or that rl-zoo3 takes from its command line: not searchable.
NOT_SEARCHABLE = {
    "self", "env", "policy", "policy_kwargs", "replay_buffer_class", "replay_buffer_kwargs", "seed", "device",
    "verbose", "tensorboard_log", "_init_setup_model", *FOLLOW_BATCH_SIZE,
}  # fmt: skip


@dataclass(frozen=True)
class Param:
    """
    One searched value.

    :param name: the Optuna parameter's name: the hyperparameter, or ``<CallbackClass>.<argument>``
    :param distribution: what Optuna samples it from
    :param key: the hyperparameter, or the callback's argument
    :param callback: the callback's import path (None for a hyperparameter)
    """

    name: str
    distribution: BaseDistribution
    key: str
    callback: str | None = None


class SearchSpace:
    """
    The searched hyperparameters and callback arguments of one rl-zoo3 entry.

    :param params: what is searched
    :param entry: the entry being tuned (``-params`` merged in); its values are the first trial
    :param algo_class: the algorithm the entry trains (for the defaults of the keys the entry leaves out)
    :param where: the YAML file, for error messages
    """

    def __init__(self, params: list[Param], entry: dict[str, Any], algo_class: type, where: str):
        self.params = params
        self.entry = entry
        self.algo_class = algo_class
        self.where = where
        if any(p.key == "batch_size" and p.callback is None for p in params):
            _check_replay_ratio_can_follow(entry, algo_class, where)
        self.recipe = {p.name: self._entry_value(p) for p in params}

    @classmethod
    def from_config(
        cls, config: dict[str, Any], entry: dict[str, Any], algo_class: type, where: str, fixed: set[str]
    ) -> SearchSpace:
        """
        :param config: the whole YAML file
        :param entry: the entry being tuned, ``-params`` merged in
        :param algo_class: the algorithm the entry trains
        :param where: the YAML file, for error messages
        :param fixed: hyperparameters given with ``-params``: fixed, so not searched
        """
        section = config.get(SPACE_KEY)
        if section is None:
            raise BreakoutSB3Error(f"{where}: no search space (a '{SPACE_KEY}:' section); see hyperparams/dqn.yml")
        if not isinstance(section, dict) or not section:
            raise BreakoutSB3Error(f"{where}: '{SPACE_KEY}' must map hyperparameters to ranges or choices")
        callbacks = dict(class_specs(entry.get("callback")))
        searchable = set(constructor_parameters(algo_class)) - NOT_SEARCHABLE
        params = []
        for key, spec in section.items():
            if key in callbacks:
                if not isinstance(spec, dict) or not spec:
                    raise BreakoutSB3Error(f"{where}: {SPACE_KEY} {key}: expected its arguments' ranges or choices")
                class_name = key.rsplit(".", 1)[-1]
                parameters = inspect.signature(get_class_by_name(key)).parameters
                for argument, argument_spec in spec.items():
                    if argument not in parameters:
                        raise BreakoutSB3Error(f"{where}: {SPACE_KEY}: {key} has no argument '{argument}'")
                    name = f"{class_name}.{argument}"
                    distribution = _distribution(argument_spec, f"{where}: {SPACE_KEY} {name}")
                    params.append(Param(name, distribution, argument, key))
            elif key in searchable:
                if key not in fixed:
                    params.append(Param(key, _distribution(spec, f"{where}: {SPACE_KEY} {key}"), key))
            elif key in FOLLOW_BATCH_SIZE:
                raise BreakoutSB3Error(
                    f"{where}: {SPACE_KEY}: '{key}' is not searched: it follows batch_size, which keeps the entry's "
                    "replay ratio (samples per agent step)"
                )
            elif "." in key:
                raise BreakoutSB3Error(f"{where}: {SPACE_KEY}: {key} is not one of the entry's callbacks")
            else:
                raise BreakoutSB3Error(
                    f"{where}: {SPACE_KEY}: '{key}' cannot be searched (only {algo_class.__name__}'s arguments and "
                    "the entry's callbacks' arguments can)"
                )
        names = [p.name for p in params]
        if len(set(names)) != len(names):
            raise BreakoutSB3Error(f"{where}: {SPACE_KEY}: two callbacks of the same class name")
        space = cls(params, entry, algo_class, where)
        space.check_bounds()
        return space

    def _entry_value(self, param: Param) -> Any:
        """:return: the entry's own value of ``param`` (its default where the entry leaves it out), checked in range"""
        if param.callback is None:
            if param.key in self.entry:
                value = self.entry[param.key]
            else:
                value = constructor_parameters(self.algo_class)[param.key].default
        else:
            kwargs = dict(class_specs(self.entry.get("callback")))[param.callback]
            default = inspect.signature(get_class_by_name(param.callback)).parameters[param.key].default
            value = kwargs.get(param.key, default)
        value = _as_distribution_type(value, param.distribution)
        if not contains(param.distribution, value):
            raise BreakoutSB3Error(
                f"{self.where}: {SPACE_KEY} {param.name}: the entry's own value {value!r} is not in its search space "
                f"({_describe(param.distribution)}); the entry's values are the first trial"
            )
        return value

    def check_bounds(self) -> None:
        """Check that each bound and choice passes the hyperparameters' and the callbacks' own range checks."""
        for param in self.params:
            for value in _extremes(param.distribution):
                entry = self.apply(self.entry, {**self.recipe, param.name: value})
                where = f"{self.where}: {SPACE_KEY} {param.name} {value!r}"
                if param.callback is None:
                    check_hyperparam_ranges(entry, where)
                else:
                    kwargs = dict(class_specs(entry["callback"]))[param.callback]
                    try:
                        get_class_by_name(param.callback)(**kwargs)
                    except (ValueError, TypeError) as e:
                        raise BreakoutSB3Error(f"{where}: {e}") from None

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """:return: the trial's value of each searched parameter (the queued values for a queued trial)"""
        values = {}
        for param in self.params:
            distribution = param.distribution
            if isinstance(distribution, CategoricalDistribution):
                values[param.name] = trial.suggest_categorical(param.name, distribution.choices)
            elif isinstance(distribution, IntDistribution):
                values[param.name] = trial.suggest_int(
                    param.name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
                )
            else:
                assert isinstance(distribution, FloatDistribution)
                values[param.name] = trial.suggest_float(
                    param.name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
                )
        return values

    def apply(self, entry: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
        """
        :param entry: an rl-zoo3 entry, as the YAML gives it
        :param values: a value for some of the searched parameters, by name
        :return: a copy of ``entry`` with the values set (callback arguments in its ``callback`` list), and
            ``train_freq``/``gradient_steps`` set for a new batch size so that the replay ratio stays the entry's
        """
        result = copy.deepcopy(entry)
        callback_values: dict[str, dict[str, Any]] = {}
        for param in self.params:
            if param.name not in values:
                continue
            if param.callback is None:
                result[param.key] = values[param.name]
            else:
                callback_values.setdefault(param.callback, {})[param.key] = values[param.name]
        if callback_values:
            result["callback"] = [
                {path: {**kwargs, **callback_values[path]}} if path in callback_values else _spec(path, kwargs)
                for path, kwargs in class_specs(entry.get("callback"))
            ]
        if result.get("batch_size") != entry.get("batch_size"):
            result.update(_follow_batch_size(entry, self.algo_class, result["batch_size"]))
        return result


def _spec(path: str, kwargs: dict[str, Any]) -> str | dict[str, dict[str, Any]]:
    return {path: kwargs} if kwargs else path


def _default(entry: dict[str, Any], algo_class: type, key: str) -> Any:
    return entry[key] if key in entry else constructor_parameters(algo_class)[key].default


def _check_replay_ratio_can_follow(entry: dict[str, Any], algo_class: type, where: str) -> None:
    train_freq = _default(entry, algo_class, "train_freq")
    unit = train_freq[1] if isinstance(train_freq, (list, tuple)) else "step"
    gradient_steps = _default(entry, algo_class, "gradient_steps")
    if unit != "step" or not isinstance(gradient_steps, int) or gradient_steps < 1:
        raise BreakoutSB3Error(
            f"{where}: {SPACE_KEY} batch_size: keeping the replay ratio needs train_freq in steps and gradient_steps "
            f">= 1, the entry has train_freq {train_freq!r}, gradient_steps {gradient_steps!r}"
        )


def _follow_batch_size(entry: dict[str, Any], algo_class: type, batch_size: int) -> dict[str, Any]:
    """
    :return: ``train_freq`` and ``gradient_steps`` for ``batch_size`` that keep the entry's replay ratio,
        ``gradient_steps * batch_size / (train_freq * n_envs)`` samples per agent step (n_envs does not change)
    """
    train_freq = _default(entry, algo_class, "train_freq")
    every = train_freq[0] if isinstance(train_freq, (list, tuple)) else train_freq
    gradient_steps = _default(entry, algo_class, "gradient_steps")
    per_env_step = Fraction(gradient_steps * _default(entry, algo_class, "batch_size"), every * batch_size)
    new_train_freq: Any = per_env_step.denominator
    if isinstance(train_freq, (list, tuple)):
        new_train_freq = [per_env_step.denominator, train_freq[1]]
    return {"train_freq": new_train_freq, "gradient_steps": per_env_step.numerator}


def _distribution(spec: Any, where: str) -> BaseDistribution:
    if not isinstance(spec, dict):
        raise BreakoutSB3Error(f"{where}: expected {{low: .., high: ..}} or {{choices: [..]}}, got {spec!r}")
    if "choices" in spec:
        choices = spec["choices"]
        if set(spec) != {"choices"} or not isinstance(choices, list) or not choices:
            raise BreakoutSB3Error(f"{where}: expected {{choices: [a non-empty list]}}, got {spec!r}")
        if len(set(map(repr, choices))) != len(choices):
            raise BreakoutSB3Error(f"{where}: a choice is listed twice in {choices!r}")
        return CategoricalDistribution(choices)
    unknown = set(spec) - {"low", "high", "log", "step"}
    if unknown or not {"low", "high"} <= set(spec):
        raise BreakoutSB3Error(f"{where}: expected {{low: .., high: ..}} with optional log or step, got {spec!r}")
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    numbers = [v for v in (low, high, step) if v is not None]
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in numbers) or not isinstance(log, bool):
        raise BreakoutSB3Error(f"{where}: low, high and step must be numbers and log true or false, got {spec!r}")
    try:
        if all(isinstance(v, int) for v in numbers):
            return IntDistribution(low, high, log=log, step=1 if step is None else step)
        return FloatDistribution(float(low), float(high), log=log, step=None if step is None else float(step))
    except ValueError as e:
        raise BreakoutSB3Error(f"{where}: {e}") from None


def _as_distribution_type(value: Any, distribution: BaseDistribution) -> Any:
    if isinstance(distribution, IntDistribution) and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(distribution, FloatDistribution) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _extremes(distribution: BaseDistribution) -> list[Any]:
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    assert isinstance(distribution, (IntDistribution, FloatDistribution))
    return [distribution.low, distribution.high]


def _describe(distribution: BaseDistribution) -> str:
    if isinstance(distribution, CategoricalDistribution):
        return "one of " + ", ".join(map(repr, distribution.choices))
    assert isinstance(distribution, (IntDistribution, FloatDistribution))
    kind = "integers" if isinstance(distribution, IntDistribution) else "numbers"
    scale = ", log scale" if distribution.log else ""
    step = f", step {distribution.step}" if distribution.step not in (None, 1) else ""
    return f"{kind} in [{distribution.low}, {distribution.high}]{scale}{step}"
