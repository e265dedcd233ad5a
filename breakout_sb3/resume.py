"""``breakout-sb3 resume``: continue a run from its newest intact checkpoint, its Monitor files cut back to it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from breakout_sb3.devices import check_device, device_flag
from breakout_sb3.errors import BreakoutSB3Error
from breakout_sb3.manager import CheckpointOptions, ResumePlan
from breakout_sb3.resume_point import find_resume_point
from breakout_sb3.run_lock import run_lock
from breakout_sb3.run_spec import RESUME_FILE, RESUME_FORMAT, RunSpec
from breakout_sb3.train import run_zoo_train, with_progress
from callbacks.atomic import atomic_write
from callbacks.checkpoint import Checkpoint, checkpoint_dir, set_aside
from callbacks.run_folder import side_path


def resume(
    run_dir: str | Path, n_timesteps: int | None = None, refill_steps: int = 50_000, progress: bool = True
) -> None:
    """
    ``breakout-sb3 resume``: continue a run, wherever its folder now is, with its own values (its ``resume.json``
    and its copy of the YAML), from its newest checkpoint whose every file is the one written. Newer checkpoints
    (broken) are set aside in ``checkpoints/set_aside/``, and the run's Monitor files are cut back to the checkpoint.

    :param run_dir: the run folder
    :param n_timesteps: further agent steps (None: up to the run's original total)
    :param refill_steps: transitions collected before training resumes, if the checkpoint has no replay buffer
    :param progress: show SB3's progress bar (steps/s, ETA)
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BreakoutSB3Error(f"cannot resume {run_dir}: no run folder")
    if not (run_dir / RESUME_FILE).is_file():
        raise BreakoutSB3Error(f"cannot resume {run_dir}: no {RESUME_FILE} (not started by breakout-sb3 train)")
    if n_timesteps is not None and n_timesteps <= 0:
        raise BreakoutSB3Error(f"-n must be > 0, got {n_timesteps}")
    with run_lock(run_dir) as lock:  # before anything in the folder is read or changed
        try:
            spec, version, notes = RunSpec.read(run_dir)
        except BreakoutSB3Error as e:
            raise BreakoutSB3Error(f"cannot resume {e}") from None
        argv = spec.train_argv(run_dir, notes)
        check_device(device_flag(argv), where=str(run_dir / RESUME_FILE))  # the device the run was started on
        point = find_resume_point(run_dir, read_replay=True)
        for broken in point.skipped:
            print(f"note: skipping checkpoint {broken.path.name}: {broken.reason}", file=sys.stderr)
        checkpoint = point.checkpoint
        if checkpoint is None:
            raise BreakoutSB3Error(f"cannot resume {run_dir}: no complete checkpoint in {checkpoint_dir(run_dir)}")
        if n_timesteps is None:
            n_timesteps = checkpoint.state.total_timesteps - checkpoint.num_timesteps
            if n_timesteps <= 0:
                raise BreakoutSB3Error(f"{run_dir} already reached its {checkpoint.state.total_timesteps} steps")
        # Nothing was changed up to here; from here on the run folder is this resume's.
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        if version != RESUME_FORMAT:
            spec.write(run_dir)
            print(f"{RESUME_FILE} rewritten in format {RESUME_FORMAT}: paths relative to the run folder")
        for broken in point.skipped:
            moved = set_aside(broken.path)
            print(f"Set aside {broken.path.name} as {moved.relative_to(run_dir)}: {broken.reason}")
        print(f"Resuming {run_dir} from {checkpoint.path.name}: {checkpoint.describe()}; {n_timesteps} more steps")
        roll_back_monitor_files(checkpoint, run_dir)  # before the resumed run's Monitor opens them to append
        argv = with_progress([*argv, "-i", str(checkpoint.model_path), "-n", str(n_timesteps)], progress)
        options = CheckpointOptions(**spec.checkpoint_options)
        plan = ResumePlan(checkpoint, run_dir, refill_steps, replay_buffer=point.replay)
        run_zoo_train(argv, options, plan, spec.config_entry, lock=lock, precision=spec.precision)


def roll_back_monitor_files(checkpoint: Checkpoint, log_dir: str | Path, verbose: int = 1) -> None:
    """
    Cut each Monitor file of ``log_dir`` back to its size at ``checkpoint``, so that it holds the games up to the
    checkpoint only; the rows after are moved, with the file's header, to ``<name>.monitor.after_step_<N>.csv``
    (``.2``, ``.3``... if that exists), which SB3's ``load_results`` does not read. Call it before the resumed
    run creates its envs (its ``Monitor`` appends to the file). A file missing or shorter than recorded is left
    as it is, with a line saying so.

    :param checkpoint: the checkpoint the run resumes from
    :param log_dir: the run folder (where the Monitor files are)
    :param verbose: 0: silent; 1: a line per file rolled back or left as it is
    """
    recorded = checkpoint.state.monitor_files
    if recorded is None:
        if verbose >= 1:
            name, version = checkpoint.path.name, checkpoint.state.format
            print(f"{name} (format {version}) has no Monitor file sizes: not rolled back")
        return
    for name, size in recorded.items():
        message = _roll_back_monitor_file(Path(log_dir) / name, size, checkpoint.num_timesteps)
        if message is not None and verbose >= 1:
            print(message)


def _roll_back_monitor_file(path: Path, size: int, step: int) -> str | None:
    """:return: what was done, or None if there was nothing to do"""
    if not path.is_file():
        return f"{path.name} is missing (it held {size} bytes at step {step}): not rolled back"
    actual = path.stat().st_size
    if actual < size:
        return f"{path.name} is shorter ({actual} bytes) than at step {step} ({size} bytes): not rolled back"
    if actual == size:
        return None
    with open(path, "rb") as f:
        header = b""
        for line in f:  # Monitor's "#{json}" line, then its column names
            header += line
            if not line.startswith(b"#") or len(header) >= size:
                break
        f.seek(size)
        later = f.read()
    side = side_path(path, f"after_step_{step}")
    atomic_write(side, lambda f: f.write(header[:size] + later))
    os.truncate(path, size)
    rows = later.count(b"\n") + (not later.endswith(b"\n"))
    return f"{rows} rows after step {step} moved from {path.name} to {side.name}"
