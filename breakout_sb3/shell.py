"""Command lines printed for the user to run: they paste into a shell as they are."""

from __future__ import annotations

import os
import shlex


def command_line(*words: str | os.PathLike) -> str:
    """:return: a command line that a shell runs as these words, whatever their characters (spaces, quotes, é)"""
    return " ".join(shlex.quote(str(word)) for word in words)
