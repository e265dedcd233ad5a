"""rl-zoo3's ``train``, run with a manager class of ours and its own flag parser under our name."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import rl_zoo3.train

from breakout_sb3.errors import BreakoutSB3Error
from breakout_sb3.zoo_insides import train_module_swapped

TRAIN_PROG = "breakout-sb3 train"


class ZooArgumentParser(argparse.ArgumentParser):
    """
    The parser rl-zoo3's ``train`` builds, under breakout-sb3's name (``usage: breakout-sb3 train ...``) and with
    its errors on one line (:class:`BreakoutSB3Error`, naming the command).

    :param stop_when_built: instead of parsing, raise :class:`_ParserBuilt` with the parser, flags and all
    """

    def __init__(self, *args: Any, stop_when_built: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.stop_when_built = stop_when_built

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self.stop_when_built:
            self.stop_when_built = False
            raise _ParserBuilt(self)
        return super().parse_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        raise BreakoutSB3Error(f"{self.prog.removeprefix('breakout-sb3 ')}: {message}")


class _ParserBuilt(Exception):
    def __init__(self, parser: ZooArgumentParser):
        super().__init__()
        self.parser = parser


def zoo_train(manager: Callable[..., Any], argv: list[str], prog: str = TRAIN_PROG) -> None:
    """
    Run rl-zoo3's ``train`` with ``argv`` as its command line and ``manager`` in place of its ExperimentManager.

    rl-zoo3 builds its argument parser inside ``train()``: running it with its ExperimentManager swapped for ours
    keeps every rl-zoo3 flag working unchanged.

    :param manager: called as rl-zoo3 calls ExperimentManager (a subclass, or a ``functools.partial`` of one)
    :param argv: rl-zoo3 train flags, without the program name
    :param prog: the command named in the help's usage line and in errors
    """
    saved_argv = sys.argv
    sys.argv = [prog, *argv]
    try:
        with train_module_swapped(manager, lambda: ZooArgumentParser(prog=prog)):
            rl_zoo3.train.train()
    finally:
        sys.argv = saved_argv


def zoo_train_parser(prog: str = TRAIN_PROG) -> ZooArgumentParser:
    """:return: rl-zoo3's own ``train`` parser (built inside ``train()``, which stops there), with one-line errors"""

    def not_reached(*args: Any, **kwargs: Any) -> NoReturn:
        raise AssertionError("rl-zoo3's train() went past parsing its flags")

    try:
        with train_module_swapped(not_reached, lambda: ZooArgumentParser(prog=prog, stop_when_built=True)):
            rl_zoo3.train.train()
    except _ParserBuilt as built:
        return built.parser
    raise AssertionError("rl-zoo3's train() built no parser")


def given_train_flags(argv: list[str], prog: str = TRAIN_PROG) -> dict[str, Any]:
    """
    :param argv: rl-zoo3 train flags
    :return: the flags given in ``argv``, by their long name (``--vec-env``, ``--wandb-tags`` for ``-tags``), as
        rl-zoo3's own parser reads them (abbreviations included); the flags not given are left out
    :raise BreakoutSB3Error: a flag rl-zoo3 does not know, or a value it refuses, in one line
    """
    parser = zoo_train_parser(prog)
    flags = {}
    for action in parser._actions:
        action.default = argparse.SUPPRESS  # only the flags given end up in the namespace
        if action.option_strings:
            flags[action.dest] = max(action.option_strings, key=len)
    return {flags[dest]: value for dest, value in vars(parser.parse_args(argv)).items()}
