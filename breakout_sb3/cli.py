"""``breakout-sb3``: train (rl-zoo3's flags), evaluate."""

from __future__ import annotations

import argparse
import sys

from breakout_sb3 import ENV_ID
from breakout_sb3.errors import BreakoutSB3Error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="breakout-sb3",
        description="Train and evaluate SB3's DQN on Atari Breakout with the DQN Breakout tutorial's recipe.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser(
        "train",
        add_help=False,
        help="train with rl-zoo3 and hyperparams/dqn.yml; every rl-zoo3 train flag works (train -h lists them)",
    )

    evaluate = commands.add_parser("evaluate", help="play full games with a model zip and report the score")
    evaluate.add_argument("model", help="a model zip, or a run folder (its final model is used)")
    evaluate.add_argument("--episodes", type=int, default=10, help="full games to play (default: 10)")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the env and of exploration (default: 0)")
    evaluate.add_argument(
        "--epsilon",
        type=float,
        default=None,
        help="probability of a random action (default: 0.05, as the DQN papers evaluate; 0 for greedy)",
    )
    evaluate.add_argument("--env", default=ENV_ID, help=f"environment id (default: {ENV_ID})")
    evaluate.add_argument("--device", default="auto", help="torch device (default: auto)")
    evaluate.add_argument("--json", metavar="PATH", help="also write the scores and their statistics as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    try:
        if args.command == "train":
            from breakout_sb3.experiment import train

            train(rest)
            return 0
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        if args.command == "evaluate":
            from breakout_sb3.evaluate import DEFAULT_EVAL_EPSILON, evaluate

            result = evaluate(
                args.model,
                env_id=args.env,
                episodes=args.episodes,
                seed=args.seed,
                epsilon=DEFAULT_EVAL_EPSILON if args.epsilon is None else args.epsilon,
                device=args.device,
                json_path=args.json,
            )
            print(result.summary())
            return 0
    except BreakoutSB3Error as e:
        print(f"breakout-sb3: error: {e}", file=sys.stderr)
        return 2
    raise AssertionError(f"unhandled command {args.command}")
