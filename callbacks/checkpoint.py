"""Complete, atomic checkpoints every N finished episodes and/or every N steps, and finding the newest one."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import shutil
import sys
import time
import warnings
import zipfile
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, EventCallback

from callbacks.atomic import fsync_dir, write_synced
from callbacks.episodes import EpisodeScores, EpisodeStats
from callbacks.nonfinite import NonFiniteTrainingError, first_non_finite_parameter
from callbacks.replay_io import check_replay_file_header, write_replay_buffer
from callbacks.run_folder import RunFolderCallback
from callbacks.validation import PositiveInt, checked_init, first_problem

# 2: the replay buffer compressed (replay_buffer.zst), and the size of the run's Monitor files
# 3: each file's SHA-256 beside its size, and state.json's own SHA-256 over its other keys
CHECKPOINT_FORMAT = 3
READABLE_FORMATS = (1, 2, 3)
MODEL_FILE = "model.zip"
REPLAY_FILE = "replay_buffer.zst"
# Format 1 pickled the replay buffer as SB3 does, where rl-zoo3's `-i model.zip` loads it by itself.
LEGACY_REPLAY_FILE = "replay_buffer.pkl"
RNG_FILE = "rng.pkl"
STATE_FILE = "state.json"
# SB3's Monitor files (Monitor.EXT), as SB3's load_results finds them
MONITOR_GLOB = "*monitor.csv"
# checkpoints/set_aside/: checkpoints taken out of use (broken, or newer than the one a run resumed from), kept
SET_ASIDE_FOLDER = "set_aside"


class CheckpointError(OSError):
    """A checkpoint could not be written; the previous checkpoints are untouched."""


class BrokenCheckpointError(ValueError):
    """
    A checkpoint folder that cannot be used as it is: a file missing, torn, or not the one that was written.

    :param path: the checkpoint folder
    :param reason: what is wrong, naming the file (e.g. ``model.zip is torn (19,922,944 bytes, 27,236,523 written)``)
    """

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def file_sha256(path: str | os.PathLike) -> str:
    """:return: the SHA-256 of the file at ``path``, in hex (what ``sha256sum`` prints)"""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def state_sha256(state: dict[str, Any]) -> str:
    """:return: the SHA-256 of a checkpoint's state, its own ``sha256`` key left out (keys sorted, as JSON)"""
    content = {key: value for key, value in state.items() if key != "sha256"}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


class FileRecord(BaseModel):
    """
    One file of a checkpoint, as ``state.json`` records it.

    :param size: its size in bytes
    :param sha256: its SHA-256 in hex (None in formats 1 and 2, which record the size only)
    """

    model_config = ConfigDict(frozen=True, strict=True)

    size: int
    sha256: str | None


class CheckpointState(BaseModel):
    """
    A checkpoint's ``state.json``: read, version-checked and written here only. Formats 1 and 2 read as the
    current one: a file recorded by its size alone has no SHA-256, format 1 has no Monitor file sizes, and a
    checkpoint older than ``episode_stats`` counted Monitor episodes.

    :param format: the format it was written in (one of ``READABLE_FORMATS``)
    :param num_timesteps: the model's step count (all envs) when it was written
    :param total_timesteps: the run's total, as ``learn()`` was given it
    :param episodes: finished episodes, counted as ``episode_stats`` says
    :param episode_stats: ``"monitor"`` or ``"learner"`` (see :class:`~callbacks.CSVStatsCallback`)
    :param time: when it was written (``time.time()``)
    :param files: each file of the folder (but ``state.json``), by name
    :param monitor_files: the size of each Monitor file of the run (None: format 1)
    :param callbacks: the ``state_dict()`` of each stateful callback, by key (:func:`stateful_callbacks`)
    """

    model_config = ConfigDict(frozen=True, strict=True)

    format: int = CHECKPOINT_FORMAT
    num_timesteps: int
    total_timesteps: int
    episodes: int
    episode_stats: EpisodeStats = "monitor"
    time: float
    files: dict[str, FileRecord]
    monitor_files: dict[str, int] | None = None
    callbacks: dict[str, dict[str, Any]]

    @field_validator("files", mode="before")
    @classmethod
    def _size_only_records(cls, files: Any) -> Any:
        """Formats 1 and 2 record a file by its size alone."""
        if not isinstance(files, dict):
            return files
        return {name: {"size": r, "sha256": None} if type(r) is int else r for name, r in files.items()}

    @classmethod
    def read(cls, folder: Path) -> CheckpointState:
        """
        :param folder: the checkpoint folder
        :return: its ``state.json``, checked: a readable format, its own SHA-256 (format 3), every field and its type
        :raise BrokenCheckpointError: one line naming ``state.json`` and what is wrong with it
        """
        try:
            content = json.loads((folder / STATE_FILE).read_text())
        except FileNotFoundError:
            raise BrokenCheckpointError(folder, f"{STATE_FILE} is missing") from None
        except (OSError, ValueError) as e:
            raise BrokenCheckpointError(folder, f"{STATE_FILE} is unreadable ({e})") from None
        version = content.get("format") if isinstance(content, dict) else content
        if type(version) is not int or version not in READABLE_FORMATS:
            raise BrokenCheckpointError(folder, f"{STATE_FILE}: unknown checkpoint format {version!r}")
        if version >= 3 and content.get("sha256") != state_sha256(content):
            raise BrokenCheckpointError(folder, f"{STATE_FILE} is corrupt (its content is not the one written)")
        try:
            return cls.model_validate(content)
        except ValidationError as e:
            raise BrokenCheckpointError(folder, f"{STATE_FILE}: {first_problem(e)}") from None

    def to_json(self) -> dict[str, Any]:
        """:return: the content of its ``state.json``, with the SHA-256 of the rest as ``sha256``"""
        content = self.model_dump()
        return {**content, "sha256": state_sha256(content)}

    def write(self, folder: Path) -> None:
        """Write ``state.json`` into ``folder``, flushed to disk."""
        text = json.dumps(self.to_json(), indent=2)
        write_synced(folder / STATE_FILE, lambda f: f.write(text.encode()))


@dataclass
class Checkpoint:
    """
    One checkpoint folder: ``model.zip`` (online and target networks, optimizer, ``num_timesteps``, ...),
    ``replay_buffer.zst`` (unless written without it; ``replay_buffer.pkl`` in format 1), ``rng.pkl`` and
    ``state.json`` (:class:`CheckpointState`: the step, the episode count, the state of every callback that has
    one, the size and SHA-256 of each file, the size of the run's Monitor files, and its own SHA-256; written last).
    """

    path: Path
    state: CheckpointState

    @property
    def num_timesteps(self) -> int:
        return self.state.num_timesteps

    @property
    def episodes(self) -> int:
        return self.state.episodes

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def replay_path(self) -> Path | None:
        """The replay buffer file (load it with :func:`callbacks.load_replay_buffer`), None if written without."""
        for name in (REPLAY_FILE, LEGACY_REPLAY_FILE):
            if name in self.state.files:
                return self.path / name
        return None

    @property
    def has_replay_buffer(self) -> bool:
        return self.replay_path is not None

    def callback_state(self, key: str) -> dict[str, Any] | None:
        return self.state.callbacks.get(key)

    def describe(self) -> str:
        """
        :return: where the run stood, counted as each of its files counts, e.g. ``step 1692, 9 episodes in the
            Monitor files, 49 in training_stats.csv`` (games and lives under ``AtariWrapper``)
        """
        parts = [f"step {self.num_timesteps}", episodes_text(self.episodes, self.state.episode_stats)]
        for key, state in self.state.callbacks.items():
            if key.split("#")[0] == "CSVStatsCallback":
                parts.append(f"{state['episode']} in {state.get('filename', 'training_stats.csv')}")
        return ", ".join(parts)

    def restore_rng(self, model: BaseAlgorithm) -> None:
        """Put back the Python, NumPy, torch and action-space random generators as they were when saved."""
        with open(self.path / RNG_FILE, "rb") as f:
            rng = pickle.load(f)
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        th.set_rng_state(rng["torch"])
        if rng["torch_cuda"] is not None and th.cuda.is_available():
            th.cuda.set_rng_state_all(rng["torch_cuda"])
        if rng["action_space"] is not None:
            model.action_space.np_random.bit_generator.state = rng["action_space"]

    @classmethod
    def read(cls, path: Path, verify: Collection[str] | None = None) -> Checkpoint:
        """
        Read a checkpoint folder and check it: ``state.json`` (:meth:`CheckpointState.read`), every file's presence
        and size, and the SHA-256 of the files in ``verify`` (format 3; older formats: the zip's CRCs and the
        replay's zstd header instead).

        :param path: the checkpoint folder
        :param verify: the files whose content is checked (None: all of them; ``[MODEL_FILE]`` for a reader that
            only plays the model)
        :raise BrokenCheckpointError: naming the file and what is wrong with it
        """
        state = CheckpointState.read(path)
        try:
            for name, record in state.files.items():
                actual = (path / name).stat().st_size
                if actual != record.size:
                    raise BrokenCheckpointError(path, f"{name} is torn ({actual:,} bytes, {record.size:,} written)")
            for name, record in state.files.items():
                if verify is None or name in verify:
                    _check_content(path, name, record.sha256)
        except FileNotFoundError as e:
            raise BrokenCheckpointError(path, f"{Path(e.filename).name} is missing") from None
        except OSError as e:  # unreadable, or deleted while being read (a writer pruning it)
            raise BrokenCheckpointError(path, f"{Path(e.filename or name).name} is unreadable ({e.strerror})") from None
        return cls(path, state)


def _check_content(folder: Path, name: str, sha256: str | None) -> None:
    """Check a checkpoint file's content: its SHA-256 (format 3), else what formats 1 and 2 allow."""
    if sha256 is not None:
        if file_sha256(folder / name) != sha256:
            raise BrokenCheckpointError(folder, f"{name} is corrupt (its SHA-256 is not the one written)")
    elif name == MODEL_FILE:
        problem = zip_problem(folder / name)
        if problem is not None:
            raise BrokenCheckpointError(folder, f"{name} is {problem}")
    elif name == REPLAY_FILE:
        try:
            check_replay_file_header(folder / name)  # its checksum is checked when it is loaded
        except ValueError as e:
            raise BrokenCheckpointError(folder, f"{name}: {str(e).removeprefix(f'{folder / name}: ')}") from None


def zip_problem(path: Path) -> str | None:
    """:return: what is wrong with the zip at ``path`` (torn, corrupt, not a zip), None if its every CRC checks"""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as e:
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"not a whole zip, torn or of another kind ({detail})"
    return None if bad is None else f"corrupt ({bad} fails its CRC)"


def episodes_text(episodes: int, episode_stats: str) -> str:
    """:return: ``episodes`` named as ``episode_stats`` counts them"""
    return f"{episodes} episodes {'in the Monitor files' if episode_stats == 'monitor' else '(every done)'}"


def checkpoint_dir(log_dir: str | Path) -> Path:
    return Path(log_dir) / "checkpoints"


def find_checkpoints(log_dir: str | Path) -> list[Path]:
    """:return: the checkpoint folders under ``log_dir``, newest (most steps) first"""
    folder = checkpoint_dir(log_dir)
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.glob("step_*") if p.is_dir()), key=lambda p: p.name, reverse=True)


def warn_skipped(error: BrokenCheckpointError) -> None:
    """The default report of a checkpoint skipped by :func:`complete_checkpoints`: a Python warning."""
    warnings.warn(f"skipping incomplete checkpoint: {error}", stacklevel=4)


def complete_checkpoints(
    log_dir: str | Path,
    verify: Collection[str] | None = None,
    on_skip: Callable[[BrokenCheckpointError], None] = warn_skipped,
) -> Iterator[Checkpoint]:
    """
    :param verify: the files of each checkpoint whose content is checked (None: all; see :meth:`Checkpoint.read`)
    :param on_skip: called with the error of each checkpoint that is skipped (default: a Python warning)
    :return: the complete checkpoints under ``log_dir``, newest first
    """
    for path in find_checkpoints(log_dir):
        try:
            yield Checkpoint.read(path, verify)
        except BrokenCheckpointError as e:
            on_skip(e)


def latest_checkpoint(
    log_dir: str | Path,
    verify: Collection[str] | None = None,
    on_skip: Callable[[BrokenCheckpointError], None] = warn_skipped,
) -> Checkpoint | None:
    """:return: the newest complete checkpoint under ``log_dir`` (see :func:`complete_checkpoints`), None if none"""
    return next(complete_checkpoints(log_dir, verify, on_skip), None)


def set_aside(checkpoint: Path) -> Path:
    """
    Move a checkpoint folder out of use, into ``checkpoints/set_aside/`` beside it (``<name>.2``, ``.3``... if that
    name is taken), where neither resuming nor ``keep_last`` counts it and nothing deletes it.

    :return: its new place
    """
    folder = checkpoint.parent / SET_ASIDE_FOLDER
    folder.mkdir(exist_ok=True)
    target, k = folder / checkpoint.name, 1
    while target.exists():
        k += 1
        target = folder / f"{checkpoint.name}.{k}"
    os.rename(checkpoint, target)
    fsync_dir(checkpoint.parent)
    return target


def set_aside_checkpoints(log_dir: str | Path) -> list[Path]:
    """:return: the checkpoint folders set aside in ``log_dir`` (:func:`set_aside`), by name"""
    folder = checkpoint_dir(log_dir) / SET_ASIDE_FOLDER
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def monitor_file_sizes(log_dir: str | Path) -> dict[str, int]:
    """:return: the size of each Monitor file (``*monitor.csv``) in ``log_dir``"""
    return {p.name: p.stat().st_size for p in sorted(Path(log_dir).glob(MONITOR_GLOB)) if p.is_file()}


def stateful_callbacks(callback: BaseCallback) -> Iterator[tuple[str, BaseCallback]]:
    """
    :return: (key, callback) for every callback in the tree that has ``state_dict``/``load_state_dict``; the key is
        the class name, with ``#2``, ``#3``... for further callbacks of the same class
    """
    seen: dict[str, int] = {}

    def walk(node: BaseCallback) -> Iterator[BaseCallback]:
        yield node
        if isinstance(node, CallbackList):
            for child in node.callbacks:
                yield from walk(child)
        elif isinstance(node, EventCallback) and node.callback is not None:
            yield from walk(node.callback)

    for node in walk(callback):
        if hasattr(node, "state_dict") and hasattr(node, "load_state_dict"):
            name = type(node).__name__
            seen[name] = seen.get(name, 0) + 1
            yield (name if seen[name] == 1 else f"{name}#{seen[name]}"), node


class EpisodeCheckpointCallback(RunFolderCallback):
    """
    Writes a complete checkpoint every ``save_freq_episodes`` finished episodes and/or every ``save_freq_steps``
    env steps, and at every end of training (the total reached, a callback's stop, a signal), into
    ``<log_dir>/checkpoints/step_<num_timesteps>/``:

    - ``model.zip``: the model, loadable with plain ``DQN.load`` (online and target networks, optimizer, step count)
    - ``replay_buffer.zst``: the replay buffer (unless ``save_replay_buffer=False``), zstd-compressed with a
      checksum, only its filled part for SB3's ``ReplayBuffer``; load it with :func:`callbacks.load_replay_buffer`
    - ``rng.pkl``: the Python, NumPy, torch and action-space random generator states
    - ``state.json``: step, episode count, the ``state_dict()`` of every other callback of the same ``learn()``
      call that has one (e.g. the CSV's episode count and the stop rule's window), the size and SHA-256 of each
      file, the size of each Monitor file (``*monitor.csv``) of ``log_dir``, so that a resumed run can cut them
      back, and the SHA-256 of its own content, so that a reader can verify every file before using it

    A checkpoint is written into a hidden folder beside its final name, flushed to disk, then renamed into place, so a
    crash at any instant leaves the previous checkpoints and either a complete new one or none. Only the newest
    ``keep_last`` intact ones are kept: a broken one (damaged after it was written) is set aside in
    ``checkpoints/set_aside/``, never counted. It is written at the start of the rollout following the trigger,
    where SB3 has stored the last transition and finished its bookkeeping, so the model can be trained on from it
    exactly. A model with a non-finite weight is never written (:class:`~callbacks.nonfinite.NonFiniteTrainingError`).

    :param save_freq_episodes: finished episodes between two checkpoints (None: not by episodes)
    :param save_freq_steps: env steps (``num_timesteps``, all envs) between two checkpoints (None: not by steps)
    :param save_replay_buffer: include the replay buffer (SB3's buffer takes 56 kB per transition in memory,
        Breakout transitions about 0.1 kB compressed)
    :param keep_last: number of checkpoints kept (None: all)
    :param save_at_end: also write one when training ends (its steps done, a callback's stop), so that a run can
        be continued from where it ended; False for ``learn()`` called in chunks that are not ends of a run
    :param episode_stats: ``"monitor"`` (episodes recorded by SB3's ``Monitor``: whole games under ``AtariWrapper``)
        or ``"learner"`` (every ``done``); see :class:`~callbacks.CSVStatsCallback`
    :param log_dir: run folder (None: the training env's Monitor folder, i.e. rl-zoo3's run folder)
    :param verbose: Verbosity level: 0 for no output, 1 for info messages, 2 for debug messages
    """

    @checked_init
    def __init__(
        self,
        save_freq_episodes: PositiveInt | None = 100,
        save_freq_steps: PositiveInt | None = None,
        save_replay_buffer: bool = True,
        keep_last: PositiveInt | None = 2,
        save_at_end: bool = True,
        episode_stats: EpisodeStats = "monitor",
        log_dir: str | None = None,
        verbose: int = 1,
    ):
        super().__init__(log_dir, verbose)
        self.save_freq_episodes = save_freq_episodes
        self.save_freq_steps = save_freq_steps
        self.save_replay_buffer = save_replay_buffer
        self.keep_last = keep_last
        self.save_at_end = save_at_end
        self._scores = EpisodeScores(episode_stats)
        self.episodes = 0
        self.last_checkpoint: Path | None = None
        self._last_saved_step = 0
        self._pending = False
        self._stop_requested = False
        self._stopping = False
        self._intact: set[str] = set()  # checkpoints of the run verified by this process

    def state_dict(self) -> dict[str, Any]:
        return {"episodes": self.episodes, "last_saved_step": self._last_saved_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.episodes = int(state["episodes"])
        self._last_saved_step = int(state["last_saved_step"])

    def request_checkpoint_and_stop(self) -> None:
        """Write a checkpoint at the next consistent point, then stop training (e.g. from a signal handler)."""
        self._stop_requested = True

    def _init_callback(self) -> None:
        super()._init_callback()
        # What a crash left half-written: never a checkpoint (they are renamed into place only when complete).
        for leftover in checkpoint_dir(self.log_dir).glob(".step_*.tmp"):
            shutil.rmtree(leftover, ignore_errors=True)

    def _on_training_start(self) -> None:
        self._last_saved_step = max(self._last_saved_step, self.model.num_timesteps)

    def _on_step(self) -> bool:
        if self._stopping:
            return False
        for _ in self._scores.update(self.locals["rewards"], self.locals["dones"], self.locals["infos"]):
            self.episodes += 1
            if self.save_freq_episodes is not None and self.episodes % self.save_freq_episodes == 0:
                self._pending = True
        if self.save_freq_steps is not None and self.num_timesteps - self._last_saved_step >= self.save_freq_steps:
            self._pending = True
        return True

    def _on_rollout_start(self) -> None:
        if self._pending or self._stop_requested:
            self.save()
            self._pending = False
        if self._stop_requested:
            self._stopping = True

    def _on_training_end(self) -> None:
        # Every end of training is a checkpoint (the total reached, a callback's stop, a signal), so that the run
        # can always be continued from where it ended; unless this callback stopped it right after writing one.
        written = self.last_checkpoint is not None and self._last_saved_step == self.model.num_timesteps
        if self.save_at_end and not self._stopping and not written:
            self.save()
        self._pending = False

    def save(self) -> Path:
        """Write a checkpoint of the current state now. :return: its folder"""
        assert self.log_dir is not None
        bad = first_non_finite_parameter(self.model)
        if bad is not None:
            raise NonFiniteTrainingError(
                f"non-finite weight in {bad} at step {self.model.num_timesteps}: checkpoint not written"
            )
        folder = checkpoint_dir(self.log_dir)
        final = folder / f"step_{self.model.num_timesteps:010d}"
        tmp = folder / f".{final.name}.tmp"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            state = self._write(tmp)
            if final.exists():  # a checkpoint of this very step: replace it
                shutil.rmtree(final)
            os.rename(tmp, final)
            fsync_dir(folder)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise CheckpointError(e.errno, f"cannot write checkpoint {final}: {e.strerror or e}") from e
        self.last_checkpoint = final
        self._last_saved_step = self.model.num_timesteps
        self._prune()
        if self.verbose >= 1:
            print(f"Checkpoint at {Checkpoint(final, state).describe()}: {final}")
        return final

    def _write(self, folder: Path) -> CheckpointState:
        """:return: the checkpoint's state, as written into ``state.json``"""
        files = {MODEL_FILE: self.model.save}
        replay = getattr(self.model, "replay_buffer", None)
        if self.save_replay_buffer and replay is not None:
            files[REPLAY_FILE] = lambda f: write_replay_buffer(replay, f)
        files[RNG_FILE] = lambda f: pickle.dump(self._rng_state(), f)
        records = {}
        for name, write in files.items():
            write_synced(folder / name, write)
            records[name] = FileRecord(size=(folder / name).stat().st_size, sha256=file_sha256(folder / name))
        callbacks = self.locals.get("callback", self)
        state = CheckpointState(
            num_timesteps=int(self.model.num_timesteps),
            total_timesteps=int(self.model._total_timesteps),
            episodes=self.episodes,
            episode_stats=self._scores.episode_stats,
            time=time.time(),
            files=records,
            monitor_files=monitor_file_sizes(self.log_dir),
            callbacks={key: cb.state_dict() for key, cb in stateful_callbacks(callbacks)},
        )
        state.write(folder)
        fsync_dir(folder)
        return state

    def _rng_state(self) -> dict[str, Any]:
        action_rng = getattr(self.model.action_space, "np_random", None)
        return {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": th.get_rng_state(),
            "torch_cuda": th.cuda.get_rng_state_all() if th.cuda.is_available() else None,
            "action_space": action_rng.bit_generator.state if action_rng is not None else None,
        }

    def _prune(self) -> None:
        """
        Keep the newest ``keep_last`` intact checkpoints, delete the older ones; a broken checkpoint among the newest
        is set aside (:func:`set_aside`), never counted, so that an intact one is never deleted in favour of it.
        """
        if self.keep_last is None:
            return
        kept = 0
        for path in find_checkpoints(self.log_dir):
            if kept >= self.keep_last:
                shutil.rmtree(path, ignore_errors=True)
                continue
            problem = self._problem(path)
            if problem is None:
                kept += 1
                continue
            moved = set_aside(path)
            if self.verbose >= 1:
                print(f"note: checkpoint {path.name} is broken ({problem}): set aside as {moved}", file=sys.stderr)

    def _problem(self, path: Path) -> str | None:
        """:return: what is wrong with the checkpoint at ``path``, None if it is intact (checked once a process)"""
        if path == self.last_checkpoint or path.name in self._intact:
            return None
        try:
            Checkpoint.read(path)
        except BrokenCheckpointError as e:
            return e.reason
        self._intact.add(path.name)
        return None
