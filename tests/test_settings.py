"""The table of every value a user types drives the parsers, the help, the range checks and the defaults."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import typing

import pytest
from stable_baselines3 import DQN
from stable_baselines3.common.atari_wrappers import AtariWrapper

from breakout_sb3 import config, ranges, settings
from breakout_sb3.atari_settings import AtariSettings
from breakout_sb3.cli import TRAIN_HELP, build_parser, main
from breakout_sb3.errors import BreakoutSB3Error
from breakout_sb3.evaluate import DEFAULT_EVAL_EPSILON
from breakout_sb3.fast import FastDQN
from breakout_sb3.flags import flag_usage, scalar_type
from breakout_sb3.tune import TUNE_HELP, Heartbeat, TuneOptions
from breakout_sb3.tune.command import check_tune_flags
from breakout_sb3.zoo_args import default_train_args, parse_zoo_flags
from tests.conftest import recipe

COMMANDS = {
    "train": settings.TRAIN,
    "resume": settings.RESUME,
    "check": settings.CHECK,
    "evaluate": settings.EVALUATE,
    "record": settings.RECORD,
    "plot": settings.PLOT,
    "tune": settings.TUNE,
}


def subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    (commands,) = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return commands.choices[command]


def actions(command: str) -> dict[str, argparse.Action]:
    """:return: the argparse actions of ``command``, under their longest spelling"""
    found = {}
    for action in subparser(build_parser(), command)._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        found[max(action.option_strings, key=len) if action.option_strings else action.dest] = action
    return found


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_flag_is_the_tables(command):
    parsed = actions(command)
    assert set(parsed) == set(COMMANDS[command]), "every argument of the command is declared in the table, once"
    for name, setting in COMMANDS[command].items():
        action = parsed[name]
        assert action.help == (setting.help or None), name
        if name.startswith("-"):
            assert action.default == setting.default, name
            assert set(action.option_strings) == {name, *setting.aliases}, name
        if setting.annotation is bool:
            assert isinstance(action, argparse._StoreTrueAction), name
        elif typing.get_origin(setting.annotation) is typing.Literal:
            assert tuple(action.choices) == typing.get_args(setting.annotation), name


def test_a_default_changed_in_the_table_changes_the_parsers(monkeypatch):
    heartbeat = settings.TUNE["--heartbeat-interval"]
    monkeypatch.setitem(settings.TUNE, "--heartbeat-interval", dataclasses.replace(heartbeat, default=7))
    refill = settings.RESUME["--refill-steps"]
    monkeypatch.setitem(settings.RESUME, "--refill-steps", dataclasses.replace(refill, default=123))
    parser = build_parser()
    assert parser.parse_known_args(["tune"])[0].heartbeat_interval == 7
    assert parser.parse_args(["resume", "run"]).refill_steps == 123
    assert "(default: 123)" in subparser(parser, "resume").format_help()


def test_the_help_blocks_of_train_and_tune_are_the_tables():
    for block, table in ((TRAIN_HELP, settings.TRAIN), (TUNE_HELP, settings.TUNE)):
        text = " ".join(block.split())
        for name, setting in table.items():
            assert f"[{flag_usage(name, setting, in_usage=True)}]" in text
            assert f"{flag_usage(name, setting)} {' '.join(setting.help_line().split())}" in text, name
    assert "(default 20)" in TUNE_HELP and "(default 600)" in TUNE_HELP
    assert "--seed 42 --eval-freq -1 --log-interval 100" in " ".join(TRAIN_HELP.split())


def test_the_code_uses_the_tables_defaults():
    tune = settings.TUNE
    assert Heartbeat() == Heartbeat(
        tune["--heartbeat-interval"].default, tune["--grace-period"].default, tune["--max-retry"].default
    )
    assert (Heartbeat().interval, Heartbeat().grace_period, Heartbeat().max_retry) == (20, 120, 3)
    assert TuneOptions().db_wait == tune["--db-wait"].default == 600
    assert DEFAULT_EVAL_EPSILON == settings.EVALUATE["--epsilon"].default == settings.RECORD["--epsilon"].default
    args = default_train_args()
    for flag, setting in settings.ZOO_TRAIN.items():
        if setting.default is not None:
            assert args[args.index(flag) + 1] == str(setting.default)
    assert args[args.index("--seed") + 1] == "42"


def test_the_range_checks_are_the_tables():
    numeric = {int, float}
    for view, table in (
        (ranges.RESUME_FLAGS, settings.RESUME),
        (ranges.PLAY_FLAGS, settings.EVALUATE),
        (ranges.RECORD_FLAGS, settings.RECORD),
        (ranges.PLOT_FLAGS, settings.PLOT),
        (ranges.TUNE_FLAGS, settings.TUNE),
    ):
        assert view == {
            name: setting.annotation
            for name, setting in table.items()
            if setting.annotation is not bool and scalar_type(setting.annotation) in numeric
        }
    assert {
        **{flag: setting.annotation for flag, setting in settings.ZOO_TRAIN.items()},
        "--keep-checkpoints": settings.TRAIN["--keep-checkpoints"].annotation,
    } == ranges.TRAIN_FLAGS
    for key, setting in settings.DQN_KEYS.items():
        assert ranges.HYPERPARAMS[key] is setting.annotation
    for key, setting in settings.ZOO_KEYS.items():
        assert config.ZOO_KEYS[key] is setting.annotation
    assert config.BREAKOUT_SB3_KEYS == {"vec_env": ("sb3", "ale")}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tune", "--heartbeat-interval", "0"], "tune: --heartbeat-interval must be an integer >= 1, got 0"),
        (["tune", "--max-retry", "-1"], "tune: --max-retry must be an integer >= 0, got -1"),
        (["tune", "--db-wait", "-5"], "tune: --db-wait must be an integer >= 0, got -5"),
        (["train", "--keep-checkpoints", "0"], "train: --keep-checkpoints must be an integer >= 1, got 0"),
        (["resume", "run", "--refill-steps", "-1"], "resume: --refill-steps must be an integer >= 0, got -1"),
        (["record", "m.zip", "--episodes", "21"], "record: --episodes must be an integer in [1, 20], got 21"),
    ],
)
def test_a_value_out_of_the_tables_range_is_one_line(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    assert capsys.readouterr().err == f"breakout-sb3: error: {message}\n"
    assert list(tmp_path.iterdir()) == []


def test_heartbeat_checks_its_values_with_the_table():
    with pytest.raises(BreakoutSB3Error, match=r"^tune: --grace-period must be an integer >= 1, got 0$"):
        Heartbeat(interval=1, grace_period=0).check()
    with pytest.raises(
        BreakoutSB3Error, match=r"^tune: --grace-period \(20 s\) must be longer than --heartbeat-interval"
    ):
        Heartbeat(interval=20, grace_period=20).check()


def test_tunes_choices_are_the_tables():
    sampler = typing.get_args(settings.TUNE_ZOO["--sampler"].annotation)
    assert sampler == ("tpe", "random", "auto")
    with pytest.raises(BreakoutSB3Error, match=r"^tune: --sampler must be one of tpe, random, auto, got 'grid'$"):
        check_tune_flags(parse_zoo_flags(["--sampler", "grid"], "tune"), None)
    with pytest.raises(BreakoutSB3Error, match=r"^tune: --pruner must be one of median, halving, none, got 'x'$"):
        check_tune_flags(parse_zoo_flags(["--pruner", "x"], "tune"), None)


def test_the_yaml_keys_are_the_algorithms():
    assert set(settings.DQN_KEYS) <= set(inspect.signature(DQN).parameters)
    assert set(settings.FAST_DQN_KEYS) <= set(config.constructor_parameters(FastDQN))
    assert not set(settings.ZOO_KEYS) & set(inspect.signature(DQN).parameters)


def test_atari_wrapper_defaults_are_sb3s():
    parameters = inspect.signature(AtariWrapper).parameters
    assert set(settings.ATARI_WRAPPER_KWARGS) == set(parameters) - {"env"}
    for key, setting in settings.ATARI_WRAPPER_KWARGS.items():
        assert setting.default == parameters[key].default, key
        assert getattr(AtariSettings(), key) == setting.default, key


def test_atari_settings_of_an_entry():
    entry = recipe()
    atari = AtariSettings.of(entry)
    wrapper = entry["env_wrapper"][0]["stable_baselines3.common.atari_wrappers.AtariWrapper"]
    assert atari.wrapped and atari.wrapper_frame_skip == wrapper["frame_skip"] == 4
    assert atari.noop_max == wrapper["noop_max"]
    assert atari.max_episode_steps == entry["env_kwargs"]["max_episode_steps"]
    assert (atari.frameskip, atari.repeat_action_probability) == (None, None)  # the env id's own
    given = {
        "env_wrapper": {"stable_baselines3.common.atari_wrappers.AtariWrapper": {"frame_skip": 3, "noop_max": 0}},
        "env_kwargs": {"max_episode_steps": 1000, "repeat_action_probability": 0.25},
    }
    atari = AtariSettings.of(given)
    assert (atari.frame_skip, atari.noop_max, atari.screen_size) == (3, 0, 84)
    assert (atari.max_episode_steps, atari.repeat_action_probability) == (1000, 0.25)
    plain = AtariSettings.of({"env_kwargs": {"frameskip": 4}})
    assert not plain.wrapped and plain.wrapper_frame_skip == 1 and plain.frameskip == 4
