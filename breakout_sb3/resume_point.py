"""Where a run resumes: its newest checkpoint that is whole in every file, and the broken ones newer than it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from stable_baselines3.common.buffers import ReplayBuffer

from callbacks.checkpoint import REPLAY_FILE, BrokenCheckpointError, Checkpoint, find_checkpoints
from callbacks.replay_io import ReplayBufferFileError, read_replay_buffer, verify_replay_file


@dataclass
class ResumePoint:
    """
    :param checkpoint: the newest checkpoint whose every file is the one written (None: the run has none)
    :param replay: its replay buffer, read (None: not asked for, none, or a format-1 ``replay_buffer.pkl`` that
        rl-zoo3 loads beside the model)
    :param skipped: the newer checkpoints, newest first, each with what is wrong with it
    """

    checkpoint: Checkpoint | None
    replay: ReplayBuffer | None = None
    skipped: list[BrokenCheckpointError] = field(default_factory=list)


def find_resume_point(run_dir: str | Path, read_replay: bool) -> ResumePoint:
    """
    :param run_dir: the run folder
    :param read_replay: read the replay buffer into memory (resume); False: only check that it is whole (check)
    :return: where ``resume`` starts
    """
    skipped = []
    for path in find_checkpoints(run_dir):
        try:
            return ResumePoint(*check_checkpoint(path, read_replay), skipped)
        except BrokenCheckpointError as e:
            skipped.append(e)
    return ResumePoint(None, None, skipped)


def check_checkpoint(path: Path, read_replay: bool) -> tuple[Checkpoint, ReplayBuffer | None]:
    """
    Check every file of the checkpoint at ``path`` (:meth:`Checkpoint.read`), and read its replay buffer through,
    which checks its zstd checksum too.

    :param read_replay: keep the replay buffer read (resume); False: read it through without building it
    :return: the checkpoint, and its replay buffer if read (None: not kept, none, or a format-1 pickle)
    :raise BrokenCheckpointError: naming the file and what is wrong with it
    """
    checkpoint = Checkpoint.read(path)
    replay_path = checkpoint.replay_path
    if replay_path is None or replay_path.name != REPLAY_FILE:
        return checkpoint, None
    try:
        if read_replay:
            return checkpoint, read_replay_buffer(replay_path)
        verify_replay_file(replay_path)
        return checkpoint, None
    except ReplayBufferFileError as e:
        reason = str(e).removeprefix(f"{replay_path}: ")
        raise BrokenCheckpointError(path, f"{REPLAY_FILE}: {reason}") from None
