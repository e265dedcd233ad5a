"""``breakout-sb3``: train (rl-zoo3's flags), resume, check, evaluate, record, plot, tune."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import platform
import sys
from typing import Any, NoReturn

from breakout_sb3 import ENV_ID, __version__
from breakout_sb3.errors import BreakoutSB3Error, first_line
from breakout_sb3.precision import FLOAT32, PRECISIONS

TRAIN_HELP = """\
breakout-sb3 train [--fast] [--precision P] [--checkpoint-without-replay] [--keep-checkpoints K] [--no-progress]
                   [rl-zoo3 flags]

  --fast                       the fast configuration: FastDQN on ale-py's vector env, the YAML's
                               <env>-fast entry (or atari-fast): the recipe, run fast
  --precision {float32,bf16}   the update's arithmetic (default float32); bf16: mixed precision, the networks under
                               bf16 autocast, on CPUs with AVX-512 BF16 or AMX and GPUs with bf16 (docs/fast.md)
  --checkpoint-without-replay  checkpoints hold the model and callback state only (resume then refills the replay)
  --keep-checkpoints K         keep the K newest checkpoints (default: the YAML's keep_last, 2 in the recipe)
  --no-progress                no progress bar (shown by default: steps/s and ETA)

Defaults: --algo dqn --env BreakoutNoFrameskip-v4 --conf-file hyperparams/dqn.yml --seed 42 --eval-freq -1
--log-interval 100 --progress. rl-zoo3's flags follow.
"""


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
    train.add_argument("--fast", action="store_true")
    train.add_argument("--precision", choices=PRECISIONS, default=FLOAT32)
    train.add_argument("--checkpoint-without-replay", action="store_true")
    train.add_argument("--keep-checkpoints", type=int, metavar="K")
    train.add_argument("--no-progress", action="store_true")

    resume = commands.add_parser("resume", help="continue a run from its newest complete checkpoint")
    resume.add_argument("run", help="the run folder (logs/dqn/BreakoutNoFrameskip-v4_<n>)")
    resume.add_argument(
        "-n", "--n-timesteps", type=int, help="further agent steps (default: up to the run's original n_timesteps)"
    )
    resume.add_argument(
        "--refill-steps",
        type=int,
        default=50_000,
        help="transitions collected before training resumes, if the checkpoint has no replay buffer (default: 50000)",
    )
    resume.add_argument("--no-progress", action="store_true", help="no progress bar")

    check = commands.add_parser(
        "check",
        help="check a run folder without changing it: each checkpoint's files, the CSV and Monitor files, and where "
        "resume would start (exit 0: resumable as it is, 1: not, 2: not a run folder)",
    )
    check.add_argument("run", help="the run folder (logs/dqn/BreakoutNoFrameskip-v4_<n>)")
    check.add_argument("--json", action="store_true", help="print the report as JSON")

    evaluate = commands.add_parser("evaluate", help="play full games with a model zip and report the score")
    _add_model_arguments(evaluate, episodes=10)
    evaluate.add_argument("--json", metavar="PATH", help="also write the scores and their statistics as JSON")

    record = commands.add_parser("record", help="record full games played by a model as an mp4")
    _add_model_arguments(record, episodes=1)
    record.add_argument("--out", default="game.mp4", help="the mp4 to write (default: game.mp4)")

    _add_plot_parser(commands)
    _add_tune_parser(commands)
    return parser


def _add_plot_parser(commands: Any) -> None:
    plot = commands.add_parser("plot", help="draw the learning curve of one or more runs as a PNG")
    plot.add_argument("runs", nargs="*", help="run folders or training_stats.csv files (several: overlaid)")
    plot.add_argument(
        "--mean",
        nargs="+",
        action="append",
        metavar="RUN",
        help="runs of one configuration (e.g. seeds) drawn as their mean ± standard error; repeat for more groups",
    )
    plot.add_argument("--out", default="curve.png", help="the PNG to write (default: curve.png)")
    plot.add_argument("--threshold", type=float, default=40.0, help="stop threshold line (default: 40)")


def _add_tune_parser(commands: Any) -> None:
    tune = commands.add_parser(
        "tune",
        add_help=False,
        help="search hyperparameters, or sweep seeds, as one worker of an Optuna study (tune -h lists its flags)",
    )
    tune.add_argument("--fast", action="store_true")
    tune.add_argument("--seeds", type=int, nargs="+", metavar="S")
    tune.add_argument("--heartbeat-interval", type=int, default=20, metavar="S")
    tune.add_argument("--grace-period", type=int, default=120, metavar="S")
    tune.add_argument("--max-retry", type=int, default=3, metavar="N")
    tune.add_argument("--db-wait", type=int, default=600, metavar="S")


def _add_model_arguments(parser: argparse.ArgumentParser, episodes: int) -> None:
    parser.add_argument("model", help="a model zip, or a run folder (its final model is used)")
    parser.add_argument("--episodes", type=int, default=episodes, help=f"full games to play (default: {episodes})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the env and of exploration (default: 0)")
    parser.add_argument(
        "--epsilon",
        type=float,
        default=None,
        help="probability of a random action (default: 0.05, as the DQN papers evaluate; 0 for greedy)",
    )
    parser.add_argument("--env", help=f"environment id (default: the run's, else {ENV_ID})")
    parser.add_argument("--device", default="auto", help="torch device (default: auto)")


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
        ranges.check_flags({"--keep-checkpoints": args.keep_checkpoints}, ranges.TRAIN_FLAGS, "train")
        if OPTIMIZE_FLAGS & set(rest):  # rl-zoo3's hyperparameter optimization is `breakout-sb3 tune`
            from breakout_sb3.tune import tune

            tune([arg for arg in rest if arg not in OPTIMIZE_FLAGS], fast=args.fast)
            return 0
        options = CheckpointOptions(replay_buffer=not args.checkpoint_without_replay, keep_last=args.keep_checkpoints)
        train(rest, options, fast=args.fast, progress=not args.no_progress, precision=args.precision)
    elif args.command == "resume":
        from breakout_sb3.resume import resume

        flags = {"--n-timesteps": args.n_timesteps, "--refill-steps": args.refill_steps}
        ranges.check_flags(flags, ranges.RESUME_FLAGS, "resume")
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

        ranges.check_flags({"--threshold": args.threshold}, ranges.PLOT_FLAGS, "plot")
        print(plot(args.runs, out=args.out, threshold=args.threshold, mean_groups=args.mean))
    elif args.command == "tune":
        from breakout_sb3.tune import Heartbeat, TuneOptions, tune

        ranges.check_flags({"--db-wait": args.db_wait}, ranges.TUNE_FLAGS, "tune")
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
    from breakout_sb3.evaluate import DEFAULT_EVAL_EPSILON
    from breakout_sb3.model_files import run_env_id

    epsilon = DEFAULT_EVAL_EPSILON if args.epsilon is None else args.epsilon
    env_id = args.env or run_env_id(args.model) or ENV_ID
    ranges.check_flags({"--episodes": args.episodes, "--seed": args.seed, "--epsilon": epsilon}, flag_ranges, command)
    return dict(env_id=env_id, episodes=args.episodes, seed=args.seed, epsilon=epsilon, device=args.device)
