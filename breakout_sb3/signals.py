"""Ctrl-C and SIGTERM: finish the step, write a checkpoint, stop."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from callbacks.checkpoint import EpisodeCheckpointCallback


@contextmanager
def checkpoint_on_signals(checkpoint: EpisodeCheckpointCallback) -> Iterator[list[str]]:
    """
    While active, SIGINT (Ctrl-C) and SIGTERM ask ``checkpoint`` to write a checkpoint at the next consistent point
    and stop training; a second signal stops at once, without one.

    :return: the list of the names of the signals received
    """
    received: list[str] = []

    def handle(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if received:
            raise KeyboardInterrupt(f"second signal ({name}): stopping without a checkpoint")
        received.append(name)
        print(f"\n{name}: finishing the current step, then writing a checkpoint (again to stop at once)", flush=True)
        checkpoint.request_checkpoint_and_stop()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
