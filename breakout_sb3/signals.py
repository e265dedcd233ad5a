"""Ctrl-C and SIGTERM in two steps: the first asks for a clean stop, a second one stops at once."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from callbacks.checkpoint import EpisodeCheckpointCallback


@contextmanager
def two_step_stop(
    on_first: Callable[[str], None], second: str = "", received: list[str] | None = None
) -> Iterator[list[str]]:
    """
    While active, the first SIGINT (Ctrl-C) or SIGTERM is appended to ``received`` and passed to ``on_first``, which
    asks for a clean stop; a second one raises ``KeyboardInterrupt`` at once.

    :param on_first: called with the name of the first signal
    :param second: added to the KeyboardInterrupt's message, after ``second signal (<name>)``
    :param received: the list the names of the signals received are appended to (None: a new one)
    :return: ``received``
    """
    names: list[str] = [] if received is None else received

    def handle(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if names:
            raise KeyboardInterrupt(f"second signal ({name}){second}")
        names.append(name)
        on_first(name)

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield names
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def checkpoint_on_signals(checkpoint: EpisodeCheckpointCallback) -> Iterator[list[str]]:
    """
    While active, SIGINT (Ctrl-C) and SIGTERM ask ``checkpoint`` to write a checkpoint at the next consistent point
    and stop training; a second signal stops at once, without one.

    :return: the list of the names of the signals received
    """

    def ask_for_checkpoint(name: str) -> None:
        print(f"\n{name}: finishing the current step, then writing a checkpoint (again to stop at once)", flush=True)
        checkpoint.request_checkpoint_and_stop()

    with two_step_stop(ask_for_checkpoint, second=": stopping without a checkpoint") as received:
        yield received
