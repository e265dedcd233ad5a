"""``breakout-sb3``: train (rl-zoo3's flags), resume, check, evaluate, record, plot, tune."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import platform
import sys
import textwrap
from typing import Any, NoReturn

from breakout_sb3 import ENV_ID, __version__, settings
from breakout_sb3.errors import BreakoutSB3Error, first_line
from breakout_sb3.flags import add_flags, help_rows, help_usage


def _train_help() -> str:
    recipe = [f"{flag} {setting.default}" for flag, setting in settings.ZOO_TRAIN.items() if setting.default]
    defaults = ["--algo dqn", f"--env {ENV_ID}", "--conf-file hyperparams/dqn.yml", *recipe, "--progress."]
    return f"""\
{help_usage("breakout-sb3 train", settings.TRAIN, "[rl-zoo3 flags]")}

{help_rows(settings.TRAIN, column=31)}

{textwrap.fill(f"Defaults: {' '.join(defaults)} rl-zoo3's flags follow.", width=116, break_on_hyphens=False)}
"""


TRAIN_HELP = _train_help()


# what `breakout-sb3 --version` reports besides breakout-sb3: the line a bug report needs
REPORTED_DISTRIBUTIONS = ("stable-baselines3", "rl-zoo3", "gymnasium", "ale-py", "torch")


def version_line() -> str:
    """:return: ``breakout-sb3 0.1.0 (stable-baselines3 2.9.2, rl-zoo3 2.9.1, ..., torch 2.13.0+cpu, Python 3.11.9)``"""
    versions = []
    for name in REPORTED_DISTRIBUTIONS:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} not installed")
    return f"breakout-sb3 {__version__} ({', '.join(versions)}, Python {platform.python_version()})"


class VersionAction(argparse.Action):
    """``--version``: :func:`version_line` on one line (argparse's own version action wraps it), then exit."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, help: str | None = None):
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> NoReturn:
        print(version_line())
        parser.exit()


# rl-zoo3's flag for its hyperparameter optimization: `breakout-sb3 train -optimize` runs `breakout-sb3 tune`
OPTIMIZE_FLAGS = {"-optimize", "--optimize-hyperparameters"}


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with its errors on one line: ``breakout-sb3: error: ...``, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"breakout-sb3: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="breakout-sb3",
        description="Train, resume, evaluate, record and plot SB3's DQN on Atari Breakout with the DQN Breakout "
        "tutorial's recipe.",
    )
    parser.add_argument("--version", action=VersionAction, help="show the versions of breakout-sb3 and its stack")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train",
        add_help=False,
        help="train with rl-zoo3 and hyperparams/dqn.yml; every rl-zoo3 train flag works (train -h lists them)",
    )
    add_flags(train, settings.TRAIN)
    resume = commands.add_parser("resume", help="continue a run from its newest complete checkpoint")
    add_flags(resume, settings.RESUME)
    check = commands.add_parser(
        "check",
        help="check a run folder without changing it: each checkpoint's files, the CSV and Monitor files, and where "
        "resume would start (exit 0: resumable as it is, 1: not, 2: not a run folder)",
    )
    add_flags(check, settings.CHECK)
    evaluate = commands.add_parser("evaluate", help="play full games with a model zip and report the score")
    add_flags(evaluate, settings.EVALUATE)
    record = commands.add_parser("record", help="record full games played by a model as an mp4")
    add_flags(record, settings.RECORD)
    plot = commands.add_parser("plot", help="draw the learning curve of one or more runs as a PNG")
    add_flags(plot, settings.PLOT)
    tune = commands.add_parser(
        "tune",
        add_help=False,
        help="search hyperparameters, or sweep seeds, as one worker of an Optuna study (tune -h lists its flags)",
    )
    add_flags(tune, settings.TUNE)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    try:
        args, rest = parser.parse_known_args(argv)
        if args.command not in ("train", "tune") and rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
    except SystemExit as e:  # -h, or a one-line usage error
        return e.code if isinstance(e.code, int) else 2
    try:
        return _run(args, rest)
    except BreakoutSB3Error as e:
        print(f"breakout-sb3: error: {e}", file=sys.stderr)
        return getattr(e, "exit_status", 2)  # 2: the user's input; tune's unreachable storage: its own
    except KeyboardInterrupt as e:
        print(f"breakout-sb3: interrupted{f' ({e})' if str(e) else ''}", file=sys.stderr)
        return 130
    except OSError as e:  # a full disk, a file that cannot be read or written: the file and the reason, in one line
        where = f"{e.filename}: " if e.filename is not None else ""
        print(f"breakout-sb3: error: {where}{e.strerror or first_line(e)}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, rest: list[str]) -> int:
    from breakout_sb3 import ranges

    if args.command == "train":
        from breakout_sb3.manager import CheckpointOptions
        from breakout_sb3.train import train

        if {"-h", "--help"} & set(rest):
            print(TRAIN_HELP)
        ranges.check_flags(_given(args, ranges.ranges_of(settings.TRAIN)), ranges.TRAIN_FLAGS, "train")
        if OPTIMIZE_FLAGS & set(rest):  # rl-zoo3's hyperparameter optimization is `breakout-sb3 tune`
            from breakout_sb3.tune import tune

            tune([arg for arg in rest if arg not in OPTIMIZE_FLAGS], fast=args.fast)
            return 0
        options = CheckpointOptions(replay_buffer=not args.checkpoint_without_replay, keep_last=args.keep_checkpoints)
        train(rest, options, fast=args.fast, progress=not args.no_progress, precision=args.precision)
    elif args.command == "resume":
        from breakout_sb3.resume import resume

        ranges.check_flags(_given(args, ranges.RESUME_FLAGS), ranges.RESUME_FLAGS, "resume")
        resume(args.run, n_timesteps=args.n_timesteps, refill_steps=args.refill_steps, progress=not args.no_progress)
    elif args.command == "check":
        from breakout_sb3.check import NOT_RESUMABLE, RESUMABLE, check_run

        report = check_run(args.run)
        if args.json:
            print(json.dumps({**dataclasses.asdict(report), "resumable": report.resumable}, indent=2))
        else:
            print("\n".join(report.lines()))
        return RESUMABLE if report.resumable else NOT_RESUMABLE
    elif args.command == "evaluate":
        from breakout_sb3.evaluate import evaluate

        model_arguments = _model_arguments(args, ranges.PLAY_FLAGS, "evaluate")
        # the scores are shown before the JSON file is written, so that a failed write loses nothing
        evaluate(args.model, **model_arguments, json_path=args.json, report=lambda r: print(r.summary(), flush=True))
    elif args.command == "record":
        from breakout_sb3.record import record

        scores = record(args.model, **_model_arguments(args, ranges.RECORD_FLAGS, "record"), out=args.out)
        print(f"{args.out}: {len(scores)} games, scores {', '.join(f'{s:g}' for s in scores)}")
    elif args.command == "plot":
        from breakout_sb3.plot import plot

        ranges.check_flags(_given(args, ranges.PLOT_FLAGS), ranges.PLOT_FLAGS, "plot")
        print(plot(args.runs, out=args.out, threshold=args.threshold, mean_groups=args.mean))
    elif args.command == "tune":
        from breakout_sb3.tune import Heartbeat, TuneOptions, tune

        ranges.check_flags(_given(args, ranges.TUNE_FLAGS), ranges.TUNE_FLAGS, "tune")
        heartbeat = Heartbeat(args.heartbeat_interval, args.grace_period, args.max_retry)
        tune(rest, fast=args.fast, options=TuneOptions(seeds=args.seeds, heartbeat=heartbeat, db_wait=args.db_wait))
    return 0


def _model_arguments(args: argparse.Namespace, flag_ranges: dict[str, Any], command: str) -> dict[str, Any]:
    """
    :param flag_ranges: the ranges of ``--episodes``, ``--seed`` and ``--epsilon``
    :param command: the command named in errors
    :return: the arguments ``evaluate`` and ``record`` share, checked
    """
    from breakout_sb3 import ranges
    from breakout_sb3.model_files import run_env_id

    env_id = args.env or run_env_id(args.model) or ENV_ID
    ranges.check_flags(_given(args, flag_ranges), flag_ranges, command)
    return dict(env_id=env_id, episodes=args.episodes, seed=args.seed, epsilon=args.epsilon, device=args.device)


def _given(args: argparse.Namespace, flags: dict[str, Any]) -> dict[str, Any]:
    """:return: the value argparse read for each of ``flags`` (None: not given, and no default)"""
    return {flag: getattr(args, flag.lstrip("-").replace("-", "_")) for flag in flags}
