"""Find, read and check rl-zoo3 hyperparameter files before rl-zoo3 sees them."""

from __future__ import annotations

import inspect
import typing
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from rl_zoo3.utils import get_class_by_name

from breakout_sb3 import settings
from breakout_sb3.errors import BreakoutSB3Error, first_line
from callbacks.validation import describe, matches, shown

# Keys rl-zoo3's ExperimentManager consumes itself (the others go to the algorithm's constructor), and keys
# breakout-sb3's ExperimentManager consumes (hyperparams/dqn.yml's fast entry): their types and ranges are the table's.
ZOO_KEYS: dict[str, Any] = {key: setting.annotation for key, setting in settings.ZOO_KEYS.items()}
BREAKOUT_SB3_KEYS: dict[str, tuple[str, ...]] = {
    key: typing.get_args(setting.annotation) for key, setting in settings.BREAKOUT_SB3_KEYS.items()
}
# Constructor arguments rl-zoo3 passes from its command line: in the YAML they would be passed twice.
ZOO_COMMAND_LINE_KEYS = {
    "seed": "--seed",
    "env": "--env",
    "device": "--device",
    "verbose": "--verbose",
    "tensorboard_log": "--tensorboard-log",
}
# Values rl-zoo3 turns from strings into objects before the constructor sees them.
ZOO_STRING_KEYS = {"learning_rate", "policy_kwargs", "replay_buffer_class", "replay_buffer_kwargs", "policy"}


def default_config_path() -> Path:
    """:return: ``hyperparams/dqn.yml``, from the installed package or from a source checkout"""
    installed = resources.files("breakout_sb3") / "hyperparams" / "dqn.yml"
    if installed.is_file():
        return Path(str(installed))
    checkout = Path(__file__).resolve().parent.parent / "hyperparams" / "dqn.yml"
    if checkout.is_file():
        return checkout
    raise BreakoutSB3Error("hyperparams/dqn.yml is missing from the breakout-sb3 installation")


def read_config(path: str | Path) -> dict[str, Any]:
    """:return: the YAML file's top-level mapping of env ids to hyperparameters"""
    path = Path(path)
    if not path.is_file():
        raise BreakoutSB3Error(f"hyperparameter file not found: {path}")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or first_line(e)
        raise BreakoutSB3Error(f"{path}: malformed YAML{where}: {problem}") from None
    if not isinstance(config, dict):
        raise BreakoutSB3Error(f"{path}: expected a mapping of environment ids to hyperparameters")
    return config


def entry_names(env_id: str, atari: bool, fast: bool = False) -> tuple[str, ...]:
    """
    :return: the YAML entries that can hold ``env_id``'s hyperparameters, in rl-zoo3's order: its own entry, then
        ``atari`` for an Atari game, then ``default``; for the fast configuration ``<env_id>-fast``, then ``atari-fast``
    """
    if fast:
        return (f"{env_id}-fast", "atari-fast") if atari else (f"{env_id}-fast",)
    return (env_id, "atari", "default") if atari else (env_id, "default")


def hyperparams_for(
    config: dict[str, Any], env_id: str, path: str | Path, atari: bool, fast: bool = False
) -> tuple[str, dict[str, Any]]:
    """:return: the name of the entry that holds ``env_id``'s hyperparameters (see :func:`entry_names`), and them"""
    names = entry_names(env_id, atari, fast)
    for key in names:
        if key in config:
            hyperparams = config[key]
            if not isinstance(hyperparams, dict):
                raise BreakoutSB3Error(f"{path}: the entry {key!r} must be a mapping of hyperparameters")
            return key, dict(hyperparams)
    entries = ", ".join(map(str, config))
    raise BreakoutSB3Error(
        f"{path}: no hyperparameters for {env_id} (looked for {', '.join(names)}; entries: {entries})"
    )


def class_specs(spec: Any) -> list[tuple[str, dict[str, Any]]]:
    """
    :param spec: an rl-zoo3 ``callback`` or ``env_wrapper`` value: an import path, a ``{path: kwargs}`` mapping, or a
        list of them
    :return: (import path, kwargs) of each class it names
    """
    if spec is None:
        return []
    result = []
    for item in spec if isinstance(spec, list) else [spec]:
        if isinstance(item, str):
            result.append((item, {}))
        elif isinstance(item, dict):
            result += [(name, kwargs or {}) for name, kwargs in item.items()]
        else:
            raise BreakoutSB3Error(f"expected an import path or a mapping of one to its arguments, got {item!r}")
    return result


def atari_wrapper_spec(env_wrapper: Any) -> dict[str, Any] | None:
    """:return: the kwargs given to SB3's ``AtariWrapper`` in an rl-zoo3 ``env_wrapper`` value, None if it has none"""
    for name, kwargs in class_specs(env_wrapper):
        if name.rsplit(".", 1)[-1] == "AtariWrapper":
            return kwargs
    return None


def atari_wrapper_kwargs(env_wrapper: Any) -> dict[str, Any]:
    """:return: the kwargs given to SB3's ``AtariWrapper`` in an rl-zoo3 ``env_wrapper`` value (empty if none)"""
    return atari_wrapper_spec(env_wrapper) or {}


def check_classes(hyperparams: dict[str, Any], where: str) -> None:
    """
    Check that every class the ``callback``, ``env_wrapper`` and ``vec_env_wrapper`` keys name can be imported and
    takes the arguments given; the callbacks of this project's ``callbacks`` package are built once, so their own
    checks of their arguments' ranges run before anything else does.
    """
    for key in ("callback", "env_wrapper", "vec_env_wrapper"):
        try:
            specs = class_specs(hyperparams.get(key))
        except BreakoutSB3Error as e:
            raise BreakoutSB3Error(f"{where}: '{key}': {e}") from None
        for name, kwargs in specs:
            try:
                cls = get_class_by_name(name)
            except (ImportError, AttributeError, ValueError) as e:
                raise BreakoutSB3Error(f"{where}: '{key}': cannot import {name} ({e})") from None
            if not isinstance(kwargs, dict):
                raise BreakoutSB3Error(f"{where}: '{key}': the arguments of {name} must be a mapping, got {kwargs!r}")
            try:
                inspect.signature(cls).bind_partial(**kwargs)
            except TypeError as e:
                raise BreakoutSB3Error(f"{where}: '{key}': {name}: {e}") from None
            if cls.__module__.split(".")[0] == "callbacks":
                try:
                    cls(**kwargs)
                except (ValueError, TypeError) as e:
                    raise BreakoutSB3Error(f"{where}: {e}") from None


def check_hyperparams(hyperparams: dict[str, Any], algo_class: type, where: str) -> None:
    """
    Refuse unknown keys and values of the wrong type, with one line naming the key.

    Constructor arguments are checked against the type annotations of ``algo_class.__init__``.
    """
    parameters = constructor_parameters(algo_class)
    known = set(parameters) - {"self", "env", "_init_setup_model"}
    for key, value in hyperparams.items():
        if key in BREAKOUT_SB3_KEYS:
            if value not in BREAKOUT_SB3_KEYS[key]:
                choices = ", ".join(BREAKOUT_SB3_KEYS[key])
                raise BreakoutSB3Error(f"{where}: '{key}' must be one of {choices}, got {value!r}")
            continue
        if key in ZOO_COMMAND_LINE_KEYS:
            raise BreakoutSB3Error(
                f"{where}: '{key}' cannot be a hyperparameter; rl-zoo3 takes it from {ZOO_COMMAND_LINE_KEYS[key]}"
            )
        if key in ZOO_KEYS:
            if not matches(value, ZOO_KEYS[key]):
                raise BreakoutSB3Error(f"{where}: '{key}' must be {describe(ZOO_KEYS[key])}, got {shown(value)}")
            continue
        if key not in known:
            raise BreakoutSB3Error(f"{where}: unknown hyperparameter '{key}'{_suggestion(key, known | set(ZOO_KEYS))}")
        if key in ZOO_STRING_KEYS and isinstance(value, str):
            continue
        annotation = parameters[key].annotation
        if key == "train_freq" and isinstance(value, list):
            value = tuple(value)
        if not matches(value, annotation):
            raise BreakoutSB3Error(f"{where}: '{key}' must be {describe(annotation)}, got {shown(value)}")


def constructor_parameters(algo_class: type) -> dict[str, inspect.Parameter]:
    """:return: the named parameters of ``algo_class.__init__``, with those its ``**kwargs`` passes to its bases"""
    parameters: dict[str, inspect.Parameter] = {}
    for cls in algo_class.__mro__:
        if "__init__" not in vars(cls):
            continue
        own = inspect.signature(cls.__init__).parameters
        for name, parameter in own.items():
            if parameter.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                parameters.setdefault(name, parameter)
        if not any(p.kind == inspect.Parameter.VAR_KEYWORD for p in own.values()):
            break
    return parameters


def _suggestion(key: str, known: set[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
