"""
The training manager: the recipe's ExperimentManager (``breakout_sb3.recipe_manager``) with a run folder of its
own, its lock, its checkpoints and callbacks, and ``resume``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rl_zoo3.utils import get_latest_run_id
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback
from stable_baselines3.common.vec_env import VecEnv

from breakout_sb3.errors import BreakoutSB3Error, first_line, os_error_line
from breakout_sb3.monitor_clock import continue_monitor_clocks
from breakout_sb3.precision import FLOAT32
from breakout_sb3.recipe_manager import RecipeExperimentManager, sb3_logger_folder
from breakout_sb3.refill import ReplayRefillCallback, refill_target
from breakout_sb3.run_lock import RunLock
from breakout_sb3.run_spec import RunSpec
from breakout_sb3.shell import command_line
from breakout_sb3.signals import checkpoint_on_signals
from callbacks.atomic import atomic_path, atomic_save_model, fsync_dir, fsync_file
from callbacks.checkpoint import (
    REPLAY_FILE,
    Checkpoint,
    CheckpointError,
    EpisodeCheckpointCallback,
    latest_checkpoint,
    stateful_callbacks,
)
from callbacks.nonfinite import NonFiniteTrainingError
from callbacks.replay_io import ReplayBufferFileError, attach_replay_buffer, load_replay_buffer
from callbacks.run_folder import RunFolderCallback


@dataclass
class CheckpointOptions:
    """
    What ``train --checkpoint-without-replay`` and ``--keep-checkpoints`` ask of the run's checkpoints (saved in its
    resume.json, so that ``resume`` keeps them).

    :param replay_buffer: whether checkpoints hold the replay buffer (``save_replay_buffer`` of the YAML's
        :class:`EpisodeCheckpointCallback`, which can only turn it off)
    :param keep_last: how many complete checkpoints are kept (None: as the YAML says)
    """

    replay_buffer: bool = True
    keep_last: int | None = None  # None: as the YAML says


@dataclass
class ResumePlan:
    """
    Where ``resume`` continues a run: its folder, the checkpoint it starts from, and what it refills.

    :param checkpoint: the checkpoint, verified
    :param run_dir: the run folder
    :param refill_steps: the transitions to collect before training resumes when the checkpoint has no replay
    :param replay_buffer: the checkpoint's ``replay_buffer.zst``, already read (None: none, or a format-1 pickle
        that rl-zoo3 loads itself)
    """

    checkpoint: Checkpoint
    run_dir: Path
    refill_steps: int
    replay_buffer: ReplayBuffer | None = None


class TrainingExperimentManager(RecipeExperimentManager):
    """
    The recipe's ExperimentManager for a run of ``train`` or ``resume``, changed where breakout-sb3 promises more
    than rl-zoo3:

    - the run-folder callbacks of the YAML write into the run folder;
    - ``--save-freq`` writes complete checkpoints through the run's :class:`EpisodeCheckpointCallback` (one is added
      when the YAML has none) instead of model-only zips;
    - a model continued with ``-i`` keeps counting its steps, so its epsilon schedule continues;
    - SIGINT/SIGTERM finish the step, write a checkpoint and end the run cleanly;
    - ``resume`` continues a run in its own folder from a checkpoint, with the callbacks' state and RNG restored;
    - with ``run_lock``, a new run claims its folder (the next free id, even against another ``train`` starting at
      the same instant) and holds its lock while it trains; a resumed run's lock is taken by ``resume``;
    - every file of the run folder is written whole or not at all, and ``precision`` is saved in its config.yml and
      resume.json.

    :param train_argv: the run's rl-zoo3 flags, saved in its resume.json
    :param checkpoint_options: what the train flags ask of the run's checkpoints
    :param resume: where ``resume`` continues the run (None: a new run)
    :param run_lock: the run folder's lock: a new run takes it when it claims its folder (None: no lock)
    """

    def __init__(
        self,
        *args: Any,
        train_argv: list[str],
        checkpoint_options: CheckpointOptions,
        resume: ResumePlan | None = None,
        run_lock: RunLock | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.run_lock = run_lock
        self.train_argv = train_argv
        self.checkpoint_options = checkpoint_options
        self.resume = resume
        self.monitor_append = resume is not None
        self._end_message = ""
        if resume is not None:
            self.save_path = str(resume.run_dir)
            self.params_path = f"{self.save_path}/{self.env_name}"

    def _preprocess_hyperparams(self, hyperparams: dict[str, Any]):
        result = super()._preprocess_hyperparams(hyperparams)
        if self.resume is not None:
            self.monitor_kwargs = {**self.monitor_kwargs, "override_existing": False}  # append to 0.monitor.csv
        return result

    def create_log_folder(self) -> None:
        if self.resume is None and self.run_lock is not None:
            self._claim_run_folder()
        super().create_log_folder()

    def _claim_run_folder(self) -> None:
        """Create the run folder, at the next free id if another run took this one meanwhile, and lock it."""
        os.makedirs(self.log_path, exist_ok=True)
        while True:
            try:
                os.mkdir(self.save_path)
                break
            except FileExistsError:
                run_id = get_latest_run_id(self.log_path, self.env_name) + 1
                self.save_path = os.path.join(self.log_path, f"{self.env_name}_{run_id}")
                self.params_path = f"{self.save_path}/{self.env_name}"
        assert self.run_lock is not None
        self.run_lock.acquire(self.save_path)

    def create_envs(self, n_envs: int, eval_env: bool = False, no_log: bool = False) -> VecEnv:
        env = super().create_envs(n_envs, eval_env, no_log)
        if self.resume is not None and self.vec_env_kind != "ale" and not eval_env and not no_log:
            continue_monitor_clocks(env)  # SB3's Monitor files go on counting from the run's start
        return env

    def create_callbacks(self) -> None:
        save_freq = self.save_freq  # in env steps, before rl-zoo3 divides it by n_envs
        super().create_callbacks()
        self.callbacks = [cb for cb in self.callbacks if not isinstance(cb, CheckpointCallback)]
        checkpoint = self.checkpoint_callback
        if checkpoint is None:
            checkpoint = EpisodeCheckpointCallback(save_freq_episodes=None)
            self.callbacks.append(checkpoint)
        if save_freq > 0:
            checkpoint.save_freq_steps = save_freq
        checkpoint.save_replay_buffer = checkpoint.save_replay_buffer and self.checkpoint_options.replay_buffer
        if self.checkpoint_options.keep_last is not None:
            checkpoint.keep_last = self.checkpoint_options.keep_last
        for callback in self.callbacks:
            if isinstance(callback, RunFolderCallback) and callback.log_dir is None:
                callback.log_dir = self.save_path

    @property
    def checkpoint_callback(self) -> EpisodeCheckpointCallback | None:
        return next((cb for cb in self.callbacks if isinstance(cb, EpisodeCheckpointCallback)), None)

    def _save_config(self, saved_hyperparams: dict[str, Any]) -> None:
        """
        rl-zoo3's config files (``config.yml``, ``args.yml``, ``command.txt``), a copy of the YAML the run reads
        (``hyperparams.yml``) and ``resume.json``, each written whole or not at all: rl-zoo3 writes its files into a
        hidden folder beside ``<run>/<env>/``, from which each is flushed and renamed into place.
        """
        if self.resume is not None:
            return  # the run's config, args and resume.json stay those of the run
        if self.precision != FLOAT32:
            saved_hyperparams = OrderedDict(sorted({**saved_hyperparams, "precision": self.precision}.items()))
        final = Path(self.params_path)
        staging = final.with_name(f".{final.name}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        self.params_path = str(staging)
        try:
            super()._save_config(saved_hyperparams)
            if self.config.endswith((".yml", ".yaml")):  # the conf file rl-zoo3 read
                shutil.copyfile(self.config, staging / "hyperparams.yml")
            for file in sorted(staging.iterdir()):
                fsync_file(file)
                os.replace(file, final / file.name)
            fsync_dir(final)
        except OSError as e:  # rl-zoo3's writes do not say which file: the folder they go to
            raise OSError(e.errno, e.strerror or str(e), str(final) if e.filename is None else e.filename) from e
        finally:
            self.params_path = str(final)
            shutil.rmtree(staging, ignore_errors=True)
        snapshot = final / "hyperparams.yml" if self.config.endswith((".yml", ".yaml")) else None
        options = dataclasses.asdict(self.checkpoint_options)
        spec = RunSpec.of_new_run(self.train_argv, self.save_path, snapshot, self.config_entry, options, self.precision)
        spec.write(Path(self.save_path))

    def setup_experiment(self) -> tuple[BaseAlgorithm, dict[str, Any]] | None:
        new_folder = not Path(self.save_path).exists()
        new_algo_folder = not Path(self.log_path).exists()
        try:
            results = super().setup_experiment()
            if self.resume is not None and results is not None:
                self._restore(results[0])
        except BreakoutSB3Error:
            self._remove_if_new(new_folder, new_algo_folder)
            raise
        except OSError as e:  # a full disk, a folder that cannot be written
            self._remove_if_new(new_folder, new_algo_folder)
            raise BreakoutSB3Error(f"cannot set up the run: {os_error_line(e, self.save_path)}") from e
        except Exception as e:  # before the first step, what fails comes from the configuration: one line
            self._remove_if_new(new_folder, new_algo_folder)
            raise BreakoutSB3Error(f"cannot set up the run: {type(e).__name__}: {first_line(str(e))}") from e
        return results

    def _remove_if_new(self, new_folder: bool, new_algo_folder: bool) -> None:
        """
        Remove the run folder this failed start created (it holds nothing but the env's empty Monitor file), and the
        algorithm's folder above it (``logs/dqn``) if this start created it and it is empty.
        """
        if new_folder and self.resume is None:
            shutil.rmtree(self.save_path, ignore_errors=True)
            if new_algo_folder:
                with contextlib.suppress(OSError):  # not empty: another run started there meanwhile
                    os.rmdir(self.log_path)

    def _load_pretrained_agent(self, hyperparams: dict[str, Any], env: VecEnv) -> BaseAlgorithm:
        # rl-zoo3 loads the model and a "replay_buffer.pkl" beside it (format-1 checkpoints); then the compressed
        # replay buffer: the one resume has read, or the replay_buffer.zst beside a checkpoint's zip given to -i.
        model = super()._load_pretrained_agent(hyperparams, env)
        if self.resume is not None:
            if self.resume.replay_buffer is not None:
                attach_replay_buffer(model, self.resume.replay_buffer)
                self.resume.replay_buffer = None
            return model
        replay_path = Path(self.trained_agent).parent / REPLAY_FILE
        if replay_path.is_file():
            print(f"Loading replay buffer {replay_path}")
            try:
                load_replay_buffer(model, replay_path)
            except ReplayBufferFileError as e:
                raise BreakoutSB3Error(f"cannot load the replay buffer: {e}") from None
        return model

    def _restore(self, model: BaseAlgorithm) -> None:
        checkpoint = self.resume.checkpoint
        for key, callback in stateful_callbacks(CallbackList(self.callbacks)):
            state = checkpoint.callback_state(key)
            if state is not None:
                callback.load_state_dict(state)
        if not checkpoint.has_replay_buffer:
            target = refill_target(model, self.resume.refill_steps)
            print(f"The checkpoint has no replay buffer: refilling {target} transitions before training resumes")
            self.callbacks.append(ReplayRefillCallback(target))

    def learn(self, model: BaseAlgorithm) -> None:
        # rl-zoo3's learn(), with reset_num_timesteps=False for a continued model and checkpoint-on-signal.
        kwargs: dict[str, Any] = {}
        if self.log_interval > -1:
            kwargs["log_interval"] = self.log_interval
        elif self.log_interval < -1:
            kwargs["log_interval"] = None
        kwargs["callback"] = self.callbacks
        if self.resume is not None:
            self.resume.checkpoint.restore_rng(model)
        checkpoint = self.checkpoint_callback
        assert checkpoint is not None
        try:
            with checkpoint_on_signals(checkpoint) as received, sb3_logger_folder(self.save_path):
                model.learn(self.n_timesteps, reset_num_timesteps=not self.continue_training, **kwargs)
        except NonFiniteTrainingError as e:
            last = latest_checkpoint(self.save_path, on_skip=_quiet)
            kept = f"the last good checkpoint, {last.path}, is kept" if last else "no checkpoint was written"
            raise BreakoutSB3Error(f"{e}; training stopped, {kept}") from None
        except CheckpointError as e:
            raise BreakoutSB3Error(f"{e.strerror or e}; training stopped, {self._intact_checkpoint()}") from None
        except OSError as e:  # a full disk, a folder gone: the file that failed, and what can be resumed
            stopped = f"training stopped at step {model.num_timesteps}, {self._intact_checkpoint()}"
            raise BreakoutSB3Error(f"{os_error_line(e, self.save_path)}; {stopped}") from None
        finally:
            assert model.env is not None
            model.env.close()
        if received:
            step, last = model.num_timesteps, checkpoint.last_checkpoint
            print(f"{received[0]}: stopped at step {step} after checkpoint {last}.")
            self._end_message = f"Resume with: {command_line('breakout-sb3', 'resume', self.save_path)}"
        else:
            self._end_message = (
                f"Continue this run with: {command_line('breakout-sb3', 'resume', self.save_path)} -n STEPS"
            )

    def save_trained_model(self, model: BaseAlgorithm) -> None:
        """
        rl-zoo3's final model ``<run>/<env>.zip`` (and ``replay_buffer.pkl`` with ``--save-replay-buffer``), each
        written whole or not at all; then how to go on, once everything is written.
        """
        print(f"Saving to {self.save_path}")
        final = Path(self.save_path) / f"{self.env_name}.zip"
        try:
            atomic_save_model(model, final)
            if self.save_replay_buffer and hasattr(model, "save_replay_buffer"):
                print("Saving replay buffer")
                with atomic_path(Path(self.save_path) / "replay_buffer.pkl") as tmp:
                    model.save_replay_buffer(tmp)
            if self.normalize:
                vec_normalize = model.get_vec_normalize_env()
                assert vec_normalize is not None
                with atomic_path(Path(self.params_path) / "vecnormalize.pkl") as tmp:
                    vec_normalize.save(str(tmp))
        except OSError as e:
            raise BreakoutSB3Error(f"{os_error_line(e, self.save_path)}; {self._intact_checkpoint()}") from None
        if self._end_message:
            print(self._end_message)

    def _intact_checkpoint(self) -> str:
        """:return: the newest intact checkpoint of the run, and how to resume from it (after a failed write)"""
        last = latest_checkpoint(self.save_path, on_skip=_quiet)
        if last is None:
            return "and the run has no intact checkpoint"
        resume = command_line("breakout-sb3", "resume", self.save_path)
        return f"the newest intact checkpoint is {last.path.name} (step {last.num_timesteps}): {resume} continues it"


def _quiet(_: Exception) -> None:
    """A broken checkpoint skipped without a word (the line that reports the failure names the intact one)."""
