"""``breakout-sb3 check``: whether each file of a run is the one written, and where resume would start."""

from __future__ import annotations

import csv
import io
import itertools
from dataclasses import dataclass, field
from pathlib import Path

from breakout_sb3.errors import BreakoutSB3Error
from breakout_sb3.resume_point import check_checkpoint
from breakout_sb3.run_lock import current_writer
from breakout_sb3.run_spec import RESUME_FILE, RunSpec
from callbacks.checkpoint import (
    MONITOR_GLOB,
    BrokenCheckpointError,
    Checkpoint,
    find_checkpoints,
    set_aside_checkpoints,
)
from callbacks.csv_stats import CSV_HEADER

# Exit statuses, as fsck tools give them (2, not a run folder, is the one-line error's)
RESUMABLE, NOT_RESUMABLE = 0, 1


@dataclass
class CheckpointStatus:
    """
    :param name: the checkpoint's folder (``step_<N>``)
    :param step: its step (None: unreadable)
    :param problem: what is wrong with it, naming the file (None: every file is the one written)
    """

    name: str
    step: int | None
    problem: str | None = None


@dataclass
class FileStatus:
    """
    :param name: the file, in the run folder
    :param rows: its rows (episodes for the CSV, games for a Monitor file), a torn last line not counted
    :param notes: what is wrong with it or will change, one line each
    :param blocking: resume would fail on it as it is
    """

    name: str
    rows: int
    notes: list[str] = field(default_factory=list)
    blocking: bool = False


@dataclass
class RunCheck:
    """What ``breakout-sb3 check`` found in a run folder (its ``--json`` output)."""

    run: str
    writer: str | None
    resume_file: str
    checkpoints: list[CheckpointStatus]
    set_aside: list[str]
    files: list[FileStatus]
    resume_from: str | None
    would_set_aside: list[str]
    problems: list[str]

    @property
    def resumable(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        """:return: the report, as ``check`` prints it"""
        lines = [f"run {self.run}", f"  {RESUME_FILE}: {self.resume_file}"]
        writer = f"being written by {self.writer}: what follows may change meanwhile" if self.writer else "none"
        lines.append(f"  writer: {writer}")
        lines.append("  checkpoints:" if self.checkpoints else "  checkpoints: none")
        for checkpoint in self.checkpoints:
            lines.append(
                f"    {checkpoint.name}  {'broken: ' + checkpoint.problem if checkpoint.problem else 'intact'}"
            )
        if self.set_aside:
            lines.append(f"  set aside earlier: {', '.join(self.set_aside)}")
        for status in self.files:
            lines.append(f"  {status.name}: {status.rows} rows" + "".join(f"; {note}" for note in status.notes))
        if self.resume_from is not None:
            aside = f", setting aside {', '.join(self.would_set_aside)}" if self.would_set_aside else ""
            lines.append(f"  resume would start from {self.resume_from}{aside}")
        lines += [f"  cannot resume: {problem}" for problem in self.problems]
        lines.append("resumable as it is" if self.resumable else "not resumable as it is")
        return lines


def check_run(run_dir: str | Path) -> RunCheck:
    """
    Check a run folder without changing anything in it and without taking its lock: every file of every checkpoint
    against the size and SHA-256 its ``state.json`` records (each replay buffer read through, its zstd checksum
    checked, without building it), ``resume.json``, and the CSV and Monitor files against the checkpoint ``resume``
    would start from.

    :raise BreakoutSB3Error: if ``run_dir`` is not a run folder (no ``resume.json``, no checkpoints)
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not ((run_dir / RESUME_FILE).is_file() or (run_dir / "checkpoints").is_dir()):
        raise BreakoutSB3Error(f"{run_dir} is not a run folder (no {RESUME_FILE}, no checkpoints/)")
    problems = []
    try:
        _, version, _ = RunSpec.read(run_dir)
        resume_file = f"format {version}"
    except BreakoutSB3Error as e:
        resume_file = str(e).removeprefix(f"{run_dir}: ")
        problems.append(resume_file)

    statuses, start, newer = [], None, []
    for path in find_checkpoints(run_dir):
        try:
            checkpoint, _ = check_checkpoint(path, read_replay=False)
        except BrokenCheckpointError as e:
            statuses.append(CheckpointStatus(path.name, _step_of(path), e.reason))
            if start is None:
                newer.append(path.name)
            continue
        statuses.append(CheckpointStatus(path.name, checkpoint.num_timesteps))
        start = start or checkpoint
    if start is None:
        problems.append("no intact checkpoint")
    files = [_check_csv(run_dir, start), *_check_monitor_files(run_dir, start)]
    files = [status for status in files if status is not None]
    problems += [f"{status.name}: {status.notes[-1]}" for status in files if status.blocking]
    return RunCheck(
        run=str(run_dir),
        writer=current_writer(run_dir),
        resume_file=resume_file,
        checkpoints=statuses,
        set_aside=[str(p.relative_to(run_dir)) for p in set_aside_checkpoints(run_dir)],
        files=files,
        resume_from=None if start is None else f"{start.path.name} ({start.describe()})",
        would_set_aside=newer if start is not None else [],
        problems=problems,
    )


def _step_of(path: Path) -> int | None:
    try:
        return int(path.name.removeprefix("step_"))
    except ValueError:
        return None


def _check_csv(run_dir: Path, start: Checkpoint | None) -> FileStatus | None:
    """The CSV statistics file: header, a torn last line, consecutive episodes, rows after the resume point."""
    state = next((s for k, s in (start.state.callbacks if start else {}).items() if k.startswith("CSVStats")), None)
    name = state.get("filename", "training_stats.csv") if state else "training_stats.csv"
    path = run_dir / name
    if not path.is_file():
        return None
    data = path.read_bytes()
    status = FileStatus(name, 0)
    body, torn = _whole_lines(data)
    if torn:
        status.notes.append("a torn last line (resume cuts it)")
    rows = list(csv.reader(io.StringIO(body.decode(errors="replace"), newline="")))
    if not rows:
        return status
    if tuple(rows[0]) != CSV_HEADER:
        status.notes.append("another header than breakout-sb3's (resume refuses to append to it)")
        status.blocking = True
        return status
    episodes = []
    for number, row in enumerate(rows[1:], start=2):
        try:
            if len(row) != len(CSV_HEADER):
                raise ValueError(f"{len(row)} fields")
            episodes.append(int(row[0]))
        except ValueError as e:
            status.notes.append(f"line {number} is malformed ({e})")
            status.blocking = True
            return status
    status.rows = len(episodes)
    gap = next((i for i, (a, b) in enumerate(itertools.pairwise(episodes)) if b != a + 1), None)
    if episodes and (episodes[0] != 1 or gap is not None):
        where = (
            "does not start at episode 1" if episodes[0] != 1 else f"goes from {episodes[gap]} to {episodes[gap + 1]}"
        )
        status.notes.append(f"episodes not consecutive: it {where}")
    if state is not None:
        at = int(state["episode"])
        later = sum(1 for episode in episodes if episode > at)
        if later:
            status.notes.append(f"{later} rows after the resume point's episode {at} (resume moves them aside)")
        elif len(episodes) < at:
            status.notes.append(f"{at - len(episodes)} rows fewer than at the resume point (episode {at})")
    return status


def _check_monitor_files(run_dir: Path, start: Checkpoint | None) -> list[FileStatus]:
    """SB3's Monitor files: a torn last line, and the games after the resume point."""
    recorded = (start.state.monitor_files if start else None) or {}
    statuses = []
    for path in sorted(run_dir.glob(MONITOR_GLOB)):
        data = path.read_bytes()
        body, torn = _whole_lines(data)
        status = FileStatus(path.name, max(body.count(b"\n") - 2, 0))  # Monitor's "#{json}" line and column names
        if torn:
            status.notes.append("a torn last line")
        size = recorded.get(path.name)
        if size is not None and len(data) < size:
            status.notes.append(f"shorter than at the resume point ({len(data)} bytes, {size} then)")
        elif size is not None and len(data) > size:
            later = data[size:].count(b"\n")
            status.notes.append(f"{later} games after the resume point (resume moves them aside)")
        statuses.append(status)
    return statuses


def _whole_lines(data: bytes) -> tuple[bytes, bool]:
    """:return: ``data`` up to its last line end, and whether anything (a torn line) came after it"""
    end = data.rfind(b"\n") + 1
    return data[:end], end < len(data)
