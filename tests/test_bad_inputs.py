"""Every out-of-range value a user can type is refused before anything runs: one line, exit 2, no run folder."""

from __future__ import annotations

import math
import typing
from typing import Any

import annotated_types
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from breakout_sb3 import ranges
from breakout_sb3.cli import main
from callbacks import CSVStatsCallback, EpisodeCheckpointCallback, StopTrainingOnRunningScore, TwoPhaseEpsilonCallback
from callbacks.validation import shown
from tests.conftest import run_cli

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def bounds(annotation: Any) -> tuple[type, dict[str, float], tuple[Any, ...]]:
    """:return: the base type, the bounds (ge/gt/le/lt) and the special literal values an annotation allows"""
    literals: tuple[Any, ...] = ()
    base, found = None, {}
    for part in typing.get_args(annotation) if typing.get_origin(annotation) is typing.Union else [annotation]:
        if typing.get_origin(part) is typing.Literal:
            literals += typing.get_args(part)
            continue
        base, *extras = typing.get_args(part) or (part,)
        for extra in extras:
            for item in getattr(extra, "metadata", [extra]):
                for name in ("ge", "gt", "le", "lt"):
                    if isinstance(item, getattr(annotated_types, name.capitalize())):
                        found[name] = getattr(item, name)
    return base, found, literals


def out_of_range(annotation: Any) -> st.SearchStrategy:
    """Values ``annotation`` refuses: beyond its bounds, non-finite, or of another type."""
    base, found, literals = bounds(annotation)
    low = found.get("ge", found.get("gt"))
    high = found.get("le", found.get("lt"))
    options = [st.sampled_from(["abc", True, None, [1]])]
    if base is int:
        if low is not None:
            below = st.integers(max_value=int(low) - (1 if "ge" in found else 0))
            options.append(below.filter(lambda v: v not in literals))
        if high is not None:
            options.append(st.integers(min_value=int(high) + (1 if "le" in found else 0)))
        options.append(st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: not v.is_integer()))
    else:
        options.append(st.sampled_from([math.nan, math.inf, -math.inf]))
        if low is not None:
            below = st.floats(max_value=low, exclude_max="ge" in found, allow_nan=False, allow_infinity=False)
            options.append(below)
        if high is not None:
            above = st.floats(min_value=high, exclude_min="le" in found, allow_nan=False, allow_infinity=False)
            options.append(above)
    return st.one_of(options)


def source(value: Any) -> str:
    """``value`` written as the Python expression rl-zoo3's ``-params`` evaluates."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"float('{value}')"
    return repr(value)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("breakout-sb3: error: ")
    return err


@st.composite
def bad_hyperparam(draw) -> tuple[str, Any]:
    key = draw(st.sampled_from(sorted(ranges.HYPERPARAMS)))
    return key, draw(out_of_range(ranges.HYPERPARAMS[key]))


@SETTINGS
@given(bad=bad_hyperparam(), fast=st.booleans())
def test_every_recipe_key_refuses_values_out_of_its_range(tmp_path, capsys, bad, fast):
    key, value = bad
    logs = tmp_path / "logs"
    args = ["train", *(["--fast"] if fast else []), "-params", f"{key}:{source(value)}", "-f", str(logs)]
    assert main(args) == 2
    err = one_line_error(capsys)
    assert f"'{key}'" in err or f" {key}:" in err
    assert not logs.exists(), "nothing was created"


@st.composite
def bad_train_flag(draw) -> tuple[str, Any]:
    flag = draw(st.sampled_from(sorted(ranges.TRAIN_FLAGS)))
    value = draw(out_of_range(ranges.TRAIN_FLAGS[flag]).filter(lambda v: isinstance(v, (int, float, str))))
    return flag, value


@SETTINGS
@given(bad=bad_train_flag())
def test_every_numeric_train_flag_refuses_values_out_of_its_range(tmp_path, capsys, bad):
    flag, value = bad
    logs = tmp_path / "logs"
    assert main(["train", f"{flag}={value}", "-f", str(logs)]) == 2
    err = one_line_error(capsys)
    assert flag in err and str(value) in err
    assert not logs.exists()


@st.composite
def bad_play_flag(draw) -> tuple[str, str, Any]:
    command = draw(st.sampled_from(["evaluate", "record"]))
    table = ranges.PLAY_FLAGS if command == "evaluate" else ranges.RECORD_FLAGS
    flag = draw(st.sampled_from(sorted(table)))
    value = draw(out_of_range(table[flag]).filter(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)))
    return command, flag, value


@SETTINGS
@given(bad=bad_play_flag())
def test_evaluate_and_record_refuse_flags_out_of_range(tmp_path, capsys, bad):
    command, flag, value = bad
    out = tmp_path / "game.mp4"
    extra = ["--out", str(out)] if command == "record" else []
    assert main([command, str(tmp_path / "model.zip"), flag, str(value), *extra]) == 2
    err = one_line_error(capsys)
    assert flag in err
    assert not out.exists()


@SETTINGS
@given(
    bad=st.one_of(
        st.tuples(st.just("--n-timesteps"), out_of_range(ranges.RESUME_FLAGS["--n-timesteps"])),
        st.tuples(st.just("--refill-steps"), out_of_range(ranges.RESUME_FLAGS["--refill-steps"])),
    ).filter(lambda bad: isinstance(bad[1], int) and not isinstance(bad[1], bool))
)
def test_resume_refuses_flags_out_of_range(tmp_path, capsys, bad):
    flag, value = bad
    assert main(["resume", str(tmp_path), flag, str(value)]) == 2
    assert flag in one_line_error(capsys)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_plot_refuses_a_non_finite_threshold(tmp_path, capsys, value):
    assert main(["plot", str(tmp_path), "--threshold", value, "--out", str(tmp_path / "x.png")]) == 2
    assert "--threshold" in one_line_error(capsys)


CALLBACK_RANGES = {
    TwoPhaseEpsilonCallback: ["initial_eps", "middle_eps", "final_eps", "random_steps", "first_decay_steps"],
    CSVStatsCallback: ["window"],
    StopTrainingOnRunningScore: ["threshold", "window", "min_episodes"],
    EpisodeCheckpointCallback: ["save_freq_episodes", "save_freq_steps", "keep_last"],
}


@st.composite
def bad_callback_argument(draw) -> tuple[type, str, Any]:
    cls = draw(st.sampled_from(list(CALLBACK_RANGES)))
    name = draw(st.sampled_from(CALLBACK_RANGES[cls]))
    annotation = typing.get_type_hints(cls.__init__, include_extras=True)[name]
    value = draw(out_of_range(annotation).filter(lambda v: v is not None))
    return cls, name, value


@SETTINGS
@given(bad=bad_callback_argument())
def test_the_callbacks_check_their_arguments_in_their_constructors(bad):
    cls, name, value = bad
    with pytest.raises(ValueError) as error:
        cls(**{name: value})
    message = str(error.value)
    assert len(message.splitlines()) == 1
    assert message.startswith(f"{cls.__name__}: {name} must be ") and message.endswith(f"got {shown(value)}")


def test_the_messages_name_key_value_and_range(tmp_path, capsys):
    cases = {
        ("-params", "gamma:2.0"): "-params: 'gamma' must be a number in [0, 1], got 2.0",
        ("-params", "learning_rate:-1"): "-params: 'learning_rate' must be a number > 0, got -1",
        (
            "-params",
            "buffer_size:16",
        ): "'buffer_size' must be >= batch_size (32): the replay must hold one batch, got 16",
        ("-params", "train_freq:0"): "-params: 'train_freq' must be an integer >= 1, got 0",
        ("--fast", "-params", "n_envs:0"): "-params: 'n_envs' must be an integer in [1, 1024], got 0",
        ("--fast", "-params", "overlap_env:3"): "-params: 'overlap_env' must be true or false, got 3",
        ("-params", "max_grad_norm:0"): "-params: 'max_grad_norm' must be a number > 0, got 0",
        ("--env-kwargs", "max_episode_steps:0"): "env_kwargs 'max_episode_steps' must be an integer >= 1, got 0",
        ("--seed", "-3"): "train: --seed must be an integer in [0, 4,294,967,295] or -1, got -3",
        ("--eval-episodes", "-1e-3"): "train: argument --eval-episodes: expected one argument",
        ("-params", "buffer_size:100000000"): "'buffer_size' 100,000,000 needs about 5646.8 GB for the replay buffer",
    }
    for args, message in cases.items():
        assert main(["train", *args, "-f", str(tmp_path / "logs")]) == 2
        assert message in one_line_error(capsys)
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize("params", [["n_envs:0"], ["n_envs:-2"], ["batch_size:0"]])
def test_the_console_script_never_crashes_on_them(tmp_path, params):
    result = run_cli("train", "--fast", "-params", *params, "-f", "logs", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("breakout-sb3: error: ")
    assert not (tmp_path / "logs").exists()


def test_a_start_that_fails_after_the_run_folder_exists_removes_it(tmp_path, capsys):
    # A value no range can foresee: the network cannot be built; the env (and its Monitor file) already exists.
    logs = tmp_path / "logs"
    assert main(["train", "-params", "policy_kwargs:dict(net_arch=[-5])", "-f", str(logs), "--no-progress"]) == 2
    err = one_line_error(capsys)
    assert "cannot set up the run" in err
    assert not list(logs.glob("dqn/*")), "no empty run folder left behind"
    assert not (logs / "dqn").exists(), "nor the empty algorithm folder the start created"
    # A run folder of an earlier run stays, and the algorithm folder with it
    (logs / "dqn" / "BreakoutNoFrameskip-v4_1").mkdir(parents=True)
    assert main(["train", "-params", "policy_kwargs:dict(net_arch=[-5])", "-f", str(logs), "--no-progress"]) == 2
    assert [p.name for p in (logs / "dqn").iterdir()] == ["BreakoutNoFrameskip-v4_1"]
