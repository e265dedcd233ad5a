"""``breakout-sb3 resume``: continue a run from its newest complete checkpoint, its Monitor files cut back to it."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from stable_baselines3.common.buffers import ReplayBuffer

from breakout_sb3.devices import check_device, device_flag
from breakout_sb3.errors import BreakoutSB3Error
from breakout_sb3.manager import RESUME_FILE, CheckpointOptions, ResumePlan
from breakout_sb3.precision import FLOAT32
from breakout_sb3.run_lock import run_lock
from breakout_sb3.train import run_zoo_train, with_progress
from callbacks.atomic import atomic_write
from callbacks.checkpoint import REPLAY_FILE, Checkpoint, complete_checkpoints
from callbacks.replay_io import ReplayBufferFileError, read_replay_buffer
from callbacks.run_folder import side_path


def resume(
    run_dir: str | Path, n_timesteps: int | None = None, refill_steps: int = 50_000, progress: bool = True
) -> None:
    """
    ``breakout-sb3 resume``: continue a run from its newest complete checkpoint whose replay buffer reads back
    whole (checksum included), after cutting the run's Monitor files back to that checkpoint.

    :param run_dir: the run folder
    :param n_timesteps: further agent steps (None: up to the run's original total)
    :param refill_steps: transitions collected before training resumes, if the checkpoint has no replay buffer
    :param progress: show SB3's progress bar (steps/s, ETA)
    """
    run_dir = Path(run_dir)
    saved_file = run_dir / RESUME_FILE
    if not saved_file.is_file():
        what = "no run folder" if not run_dir.is_dir() else f"no {RESUME_FILE} (not started by breakout-sb3 train)"
        raise BreakoutSB3Error(f"cannot resume {run_dir}: {what}")
    if n_timesteps is not None and n_timesteps <= 0:
        raise BreakoutSB3Error(f"-n must be > 0, got {n_timesteps}")
    with run_lock(run_dir) as lock:  # before anything in the folder is read or changed
        saved = json.loads(saved_file.read_text())
        check_device(device_flag(saved["argv"]), where=str(saved_file))  # the device the run was started on
        checkpoint, replay = _resume_point(run_dir)
        if n_timesteps is None:
            n_timesteps = int(checkpoint.state["total_timesteps"]) - checkpoint.num_timesteps
            if n_timesteps <= 0:
                raise BreakoutSB3Error(f"{run_dir} already reached its {checkpoint.state['total_timesteps']} steps")
        print(f"Resuming {run_dir} from {checkpoint.path.name}: {checkpoint.describe()}; {n_timesteps} more steps")
        roll_back_monitor_files(checkpoint, run_dir)  # before the resumed run's Monitor opens them to append
        argv = with_progress([*saved["argv"], "-i", str(checkpoint.model_path), "-n", str(n_timesteps)], progress)
        options = CheckpointOptions(**saved["checkpoint_options"])
        plan = ResumePlan(checkpoint, run_dir, refill_steps, replay_buffer=replay)
        precision = saved.get("precision", FLOAT32)  # a run started before --precision existed: float32
        run_zoo_train(argv, options, plan, saved.get("config_entry"), lock=lock, precision=precision)


def _resume_point(run_dir: Path) -> tuple[Checkpoint, ReplayBuffer | None]:
    """
    :return: the newest complete checkpoint whose replay buffer reads back whole, and that replay buffer (None if it
        has none, or a format-1 ``replay_buffer.pkl`` that rl-zoo3 loads beside the model)
    """
    for checkpoint in complete_checkpoints(run_dir):
        replay_path = checkpoint.replay_path
        if replay_path is None or replay_path.name != REPLAY_FILE:
            return checkpoint, None
        try:
            return checkpoint, read_replay_buffer(replay_path)
        except ReplayBufferFileError as e:
            warnings.warn(f"skipping checkpoint {checkpoint.path.name}: {e}", stacklevel=2)
    raise BreakoutSB3Error(f"cannot resume {run_dir}: no complete checkpoint in {run_dir / 'checkpoints'}")


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
    recorded: dict[str, int] | None = checkpoint.state.get("monitor_files")
    if recorded is None:
        if verbose >= 1:
            name, version = checkpoint.path.name, checkpoint.state["format"]
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
