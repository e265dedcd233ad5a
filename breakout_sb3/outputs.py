"""Check that an output file can be written where the user asks, before any work that would be lost otherwise."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from breakout_sb3.errors import BreakoutSB3Error


def check_output_path(path: str | Path, flag: str) -> Path:
    """
    Check that a file can be written at ``path`` (its folder exists, is writable, and ``path`` is not a folder) by
    creating and removing a file beside it, so that an evaluation or a recording is not played for nothing.

    :param path: the file the command will write
    :param flag: the command-line flag that named it, for the message (``--json``, ``--out``)
    :return: ``path``
    """
    path = Path(path)
    if path.is_dir():
        raise BreakoutSB3Error(f"{flag} {path}: is a folder, not a file")
    folder = path.parent
    if not folder.is_dir():
        raise BreakoutSB3Error(f"{flag} {path}: no folder {folder}")
    try:
        # Creating a file is the check that agrees with the later write (ACLs and network file systems fool os.access)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".probe")
    except OSError as e:
        raise BreakoutSB3Error(f"{flag} {path}: cannot write in {folder} ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)
    return path
