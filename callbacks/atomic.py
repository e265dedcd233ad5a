"""Write a file so that a crash at any instant leaves the old file or the new one, never half of one."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from stable_baselines3.common.base_class import BaseAlgorithm


def write_synced(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write`` on ``path`` opened for binary writing, then flush the file to disk."""
    with open(path, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries to disk (the names created or renamed in it)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a file written by someone else (a library given its name) to disk."""
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """
    Call ``write`` on a temporary file beside ``path``, flush it to disk, then rename it onto ``path``.

    :return: ``path``
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write_synced(tmp, write)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise _naming(e, path) from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _naming(error: OSError, path: Path) -> OSError:
    """:return: ``error`` naming ``path`` (the file the user knows), not the temporary name it was written under"""
    return type(error)(error.errno, error.strerror or str(error), str(path)) if error.errno else error


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """
    For writers that take a file name (matplotlib's ``savefig``, a video encoder): yields a temporary name beside
    ``path`` with the same extension (``.<stem>.tmp<suffix>``, which writers read the format from); when the block
    ends, the file written there is flushed to disk and renamed onto ``path``. If the block raises, the temporary file
    is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise _naming(e, path) from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_save_model(model: BaseAlgorithm, path: str | os.PathLike) -> Path:
    """Save ``model`` as a zip at ``path`` (a name ending in ``.zip``) atomically."""
    return atomic_write(path, model.save)
