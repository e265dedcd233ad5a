"""rl-zoo3's ExperimentManager, changed where breakout-sb3 promises more."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
from huggingface_sb3 import EnvironmentName
from rl_zoo3.exp_manager import ExperimentManager
from rl_zoo3.utils import ALGOS, get_class_by_name, get_latest_run_id
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback
from stable_baselines3.common.vec_env import VecEnv

from breakout_sb3.atari_settings import AtariSettings
from breakout_sb3.devices import check_device
from breakout_sb3.env import atari_env_kwargs
from breakout_sb3.errors import BreakoutSB3Error, first_line, os_error_line
from breakout_sb3.fast import AleVecEnv, FastDQN, FrameStackReplayBuffer
from breakout_sb3.monitor_clock import continue_monitor_clocks
from breakout_sb3.precision import FLOAT32, MIXED_ALGO, MixedPrecisionDQN
from breakout_sb3.refill import ReplayRefillCallback, refill_target
from breakout_sb3.run_lock import RunLock
from breakout_sb3.run_spec import RunSpec
from breakout_sb3.shell import command_line
from breakout_sb3.signals import checkpoint_on_signals
from breakout_sb3.zoo_args import FAST_ALGO
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
    """breakout-sb3's own train flags, applied to the run's EpisodeCheckpointCallback."""

    replay_buffer: bool = True
    keep_last: int | None = None  # None: as the YAML says


def register_fast_dqn() -> None:
    """
    Add FastDQN to rl-zoo3's algorithm table as ``fast_dqn``: rl-zoo3 looks ``--algo`` up there (its choices),
    and the fast configuration trains with it. Call it before rl-zoo3 parses its flags; calling it again does nothing.
    """
    ALGOS.setdefault(FAST_ALGO, FastDQN)


def register_mixed_precision_dqn() -> None:
    """Add plain DQN with a ``precision`` to rl-zoo3's algorithm table as ``dqn_mixed`` (``train --precision bf16``)."""
    ALGOS.setdefault(MIXED_ALGO, MixedPrecisionDQN)


@dataclass
class ResumePlan:
    checkpoint: Checkpoint
    run_dir: Path
    refill_steps: int
    # the checkpoint's replay_buffer.zst, already read (None: none, or a format-1 pickle that rl-zoo3 loads itself)
    replay_buffer: ReplayBuffer | None = None


class BreakoutExperimentManager(ExperimentManager):
    """
    rl-zoo3's ``ExperimentManager``, changed where breakout-sb3 promises more:

    - the run-folder callbacks of the YAML write into the run folder;
    - ``--save-freq`` writes complete checkpoints through the run's :class:`EpisodeCheckpointCallback` (one is added
      when the YAML has none) instead of model-only zips;
    - a model continued with ``-i`` keeps counting its steps, so its epsilon schedule continues;
    - SIGINT/SIGTERM finish the step, write a checkpoint and end the run cleanly;
    - ``resume`` continues a run in its own folder from a checkpoint, with the callbacks' state and RNG restored;
    - with ``run_lock``, a new run claims its folder (the next free id, even against another ``train`` starting at
      the same instant) and holds its lock while it trains; a resumed run's lock is taken by ``resume``;
    - ``config_entry`` reads another entry of the YAML than the env id (the fast configuration's), whose
      ``vec_env: ale`` trains on ale-py's vector env and whose ``replay_buffer_class`` may be an import path;
    - ``precision`` is the update's arithmetic of FastDQN and ``dqn_mixed`` models (given to the model, also one
      continued with ``-i``), written into the run's config.yml and resume.json.
    """

    def __init__(
        self,
        *args: Any,
        train_argv: list[str],
        checkpoint_options: CheckpointOptions,
        resume: ResumePlan | None = None,
        config_entry: str | None = None,
        run_lock: RunLock | None = None,
        precision: str = FLOAT32,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.run_lock = run_lock
        self.precision = precision
        self.train_argv = train_argv
        self.checkpoint_options = checkpoint_options
        self.resume = resume
        self.config_entry = config_entry
        self.vec_env_kind = "sb3"
        self.atari_settings = AtariSettings()
        self._end_message = ""
        if resume is not None:
            self.save_path = str(resume.run_dir)
            self.params_path = f"{self.save_path}/{self.env_name}"

    def read_hyperparameters(self) -> tuple[dict[str, Any], dict[str, Any]]:
        if self.config_entry is None:
            return self._with_explicit_env_kwargs(*super().read_hyperparameters())
        env_name, self.env_name = self.env_name, EnvironmentName(self.config_entry)
        try:
            hyperparams, saved = super().read_hyperparameters()
        finally:
            self.env_name = env_name
        return self._with_explicit_env_kwargs(hyperparams, saved)

    def _with_explicit_env_kwargs(
        self, hyperparams: dict[str, Any], saved: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """
        :return: the hyperparameters, and those the run's config.yml saves, with the env's frame skip and sticky
            actions explicit in their env_kwargs (:func:`atari_env_kwargs`); the evaluation env gets them too
        """
        env_id = self.env_name.gym_id
        given = hyperparams.get("env_kwargs", self.env_kwargs)  # rl-zoo3: --env-kwargs replaced the YAML's
        env_kwargs = atari_env_kwargs(env_id, {**hyperparams, "env_kwargs": given}, self.config)
        hyperparams["env_kwargs"] = env_kwargs
        if self._eval_env_kwargs_args is None:  # rl-zoo3 would build it without the YAML's env_kwargs
            self.eval_env_kwargs = env_kwargs
        else:
            eval_hyperparams = {**hyperparams, "env_kwargs": self._eval_env_kwargs_args}
            self.eval_env_kwargs = atari_env_kwargs(env_id, eval_hyperparams, "--eval-env-kwargs")
        return hyperparams, OrderedDict(sorted({**saved, "env_kwargs": env_kwargs}.items()))

    def _preprocess_hyperparams(self, hyperparams: dict[str, Any]):
        self.vec_env_kind = hyperparams.pop("vec_env", "sb3")
        self.atari_settings = AtariSettings.of(hyperparams)
        buffer_class = hyperparams.get("replay_buffer_class")
        if isinstance(buffer_class, str) and "." in buffer_class:
            hyperparams["replay_buffer_class"] = get_class_by_name(buffer_class)
        # SB3 prints the device of a model it builds at verbose >= 1 (tune builds its trials' at 2), not of one it loads
        sb3_shows_device = self.verbose >= (2 if self.optimize_hyperparameters else 1) and not self.continue_training
        device = check_device(self.device, announce=not sb3_shows_device)  # resume's saved --device too
        if hyperparams.get("replay_buffer_class") is FrameStackReplayBuffer and device.type == "cuda":
            # the replay on the model's GPU, named with its index (plain "cuda" is whichever GPU is current): sampling
            # gathers there, without host copies, and can be captured with the updates
            replay_kwargs = dict(hyperparams.get("replay_buffer_kwargs") or {})
            replay_kwargs.setdefault("storage_device", str(device))
            hyperparams["replay_buffer_kwargs"] = replay_kwargs
        if self.algo in (FAST_ALGO, MIXED_ALGO):
            hyperparams["precision"] = self.precision  # the zip's own (a model continued with -i) is overridden
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
        if self.vec_env_kind != "ale" or eval_env:
            env = super().create_envs(n_envs, eval_env, no_log)
            if self.resume is not None and not eval_env and not no_log:
                continue_monitor_clocks(env)
            return env
        # AtariWrapper's no-ops and frame skip, and its frame limit counted in agent steps
        atari = self.atari_settings
        frame_skip, max_frames = atari.frame_skip, atari.max_episode_steps
        return AleVecEnv(
            game=gym.spec(self.env_name.gym_id).kwargs["game"],
            n_envs=n_envs,
            seed=self.seed,
            noop_max=atari.noop_max,
            frame_skip=frame_skip,
            max_episode_steps=max_frames // frame_skip if max_frames else None,
            repeat_action_probability=atari.repeat_action_probability or 0.0,
            env_id=self.env_name.gym_id,
            monitor_file=None if no_log else str(Path(self.save_path) / "0.monitor.csv"),
            monitor_append=self.resume is not None,
        )

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


@contextlib.contextmanager
def sb3_logger_folder(folder: str) -> Iterator[None]:
    """
    Point SB3's logger at ``folder`` while training: without a TensorBoard folder, SB3's ``configure()`` creates an
    empty ``<tempdir>/SB3-<date>`` folder for a logger that only prints. ``SB3_LOGDIR`` set by the user wins.
    """
    if "SB3_LOGDIR" in os.environ:
        yield
        return
    os.environ["SB3_LOGDIR"] = folder
    try:
        yield
    finally:
        os.environ.pop("SB3_LOGDIR", None)
