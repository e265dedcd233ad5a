"""The commands' argparse arguments and help blocks, read from the table of :mod:`breakout_sb3.settings`."""

from __future__ import annotations

import argparse
import textwrap
import types
import typing
from typing import Annotated, Any

from breakout_sb3.settings import Setting


def add_flags(parser: argparse.ArgumentParser, flags: dict[str, Setting]) -> None:
    """
    Add each flag (or positional argument: a name without a leading ``-``) of a command's table to ``parser``.

    :param parser: the command's parser
    :param flags: the command's table
    """
    for name, setting in flags.items():
        parser.add_argument(*setting.aliases, name, **argparse_kwargs(setting, positional=not name.startswith("-")))


def argparse_kwargs(setting: Setting, positional: bool = False) -> dict[str, Any]:
    """
    :return: ``add_argument``'s keyword arguments for ``setting``: ``bool`` a ``store_true`` switch, a ``Literal``
        its choices, ``list[T]`` one or more values (none or more for a positional argument), ``list[list[T]]`` a
        flag that may be repeated; the value's type is the annotation's ``int`` or ``float``, else a string
    """
    kwargs: dict[str, Any] = {"help": setting.help or None}
    if setting.annotation is bool:
        return {**kwargs, "action": "store_true"}
    annotation = setting.annotation
    if typing.get_origin(annotation) is list:
        (annotation,) = typing.get_args(annotation)
        if typing.get_origin(annotation) is list:
            (annotation,) = typing.get_args(annotation)
            kwargs["action"] = "append"
        kwargs["nargs"] = "*" if positional else "+"
    if typing.get_origin(annotation) is typing.Literal:
        kwargs["choices"] = typing.get_args(annotation)
    elif scalar_type(annotation) in (int, float):
        kwargs["type"] = scalar_type(annotation)
    if not positional or kwargs.get("nargs") == "*":
        kwargs["default"] = setting.default
    if setting.metavar is not None:
        kwargs["metavar"] = setting.metavar
    return kwargs


def scalar_type(annotation: Any) -> type | None:
    """:return: the Python type of the values ``annotation`` allows (``int`` for ``PositiveInt | Literal[-1]``)"""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return scalar_type(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return type(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return scalar_type(typing.get_args(annotation)[0])
    return annotation if isinstance(annotation, type) else None


def flag_usage(name: str, setting: Setting, in_usage: bool = False) -> str:
    """
    :param in_usage: for the usage line, where a flag with choices shows its metavar
    :return: how a help block shows a flag and its value: ``--fast``, ``--precision {float32,bf16}``,
        ``--max-retry N``, ``--seeds S [S ...]``
    """
    kwargs = argparse_kwargs(setting)
    if kwargs.get("action") == "store_true":
        return name
    value = setting.metavar or name.lstrip("-").upper()
    if "choices" in kwargs and not (in_usage and setting.metavar):
        value = "{" + ",".join(kwargs["choices"]) + "}"
    return f"{name} {value} [{value} ...]" if kwargs.get("nargs") == "+" else f"{name} {value}"


def help_usage(command: str, flags: dict[str, Setting], rest: str, width: int = 116) -> str:
    """
    :param command: ``breakout-sb3 train``
    :param flags: the command's own flags
    :param rest: what follows them (``[rl-zoo3 flags]``)
    :return: the usage lines of a help block, the command's own flags in brackets
    """
    # "\0" holds an item's words together: the lines break between items only
    items = [f"[{flag_usage(name, setting, in_usage=True)}]".replace(" ", "\0") for name, setting in flags.items()]
    indent = " " * (len(command) + 1)
    words = " ".join([command, *items, rest.replace(" ", "\0")])
    lines = textwrap.fill(words, width=width, subsequent_indent=indent, break_on_hyphens=False)
    return lines.replace("\0", " ")


def help_rows(flags: dict[str, Setting], column: int, width: int = 116) -> str:
    """
    :param flags: the command's own flags
    :param column: where the help lines start
    :return: one row per flag: how it is written, then its help line (the default written in), wrapped at ``width``
    """
    rows = []
    for name, setting in flags.items():
        first = f"  {flag_usage(name, setting)}".ljust(column)
        indent = " " * column
        row = textwrap.fill(
            setting.help_line(), width, initial_indent=first, subsequent_indent=indent, break_on_hyphens=False
        )
        rows.append(row)
    return "\n".join(rows)
