"""rl-zoo3's training, run with every one of its flags, plus what breakout-sb3 adds: checkpoints, signals, resume."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import shutil
import signal
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rl_zoo3.train
from huggingface_sb3 import EnvironmentName
from rl_zoo3.exp_manager import ExperimentManager
from rl_zoo3.utils import ALGOS, get_class_by_name
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, CheckpointCallback
from stable_baselines3.common.utils import get_device
from stable_baselines3.common.vec_env import VecEnv

from breakout_sb3 import ENV_ID
from breakout_sb3.config import check_hyperparams, default_config_path, hyperparams_for, read_config
from breakout_sb3.env import check_env_id
from breakout_sb3.errors import BreakoutSB3Error
from breakout_sb3.fast import AleVecEnv, FastDQN, FrameStackReplayBuffer
from callbacks._run_folder import RunFolderCallback
from callbacks.checkpoint import (
    Checkpoint,
    CheckpointError,
    EpisodeCheckpointCallback,
    latest_checkpoint,
    stateful_callbacks,
)
from callbacks.nonfinite import NonFiniteTrainingError

RESUME_FILE = "resume.json"
# rl-zoo3 flags holding paths: stored absolute so `resume` works from any directory.
PATH_FLAGS = {"-conf", "--conf-file", "-f", "--log-folder", "-tb", "--tensorboard-log", "-i", "--trained-agent"}


def default_train_args() -> list[str]:
    """rl-zoo3 flags that make its defaults the recipe's; any flag the user gives overrides them."""
    return [
        "--algo", "dqn",
        "--env", ENV_ID,
        "--conf-file", str(default_config_path()),
        "--seed", "42",  # tutorial: `seed = 42`
        "--eval-freq", "-1",  # the tutorial does no periodic evaluation; --eval-freq N turns rl-zoo3's on
    ]  # fmt: skip


@dataclass
class CheckpointOptions:
    """breakout-sb3's own train flags, applied to the run's EpisodeCheckpointCallback."""

    replay_buffer: bool = True
    keep_last: int | None = None  # None: as the YAML says


FAST_ALGO = "fast_dqn"
FAST_ENTRY = f"{ENV_ID}-fast"
# rl-zoo3 looks algorithms up in this table (its --algo choices); the fast configuration trains with FastDQN.
ALGOS.setdefault(FAST_ALGO, FastDQN)


@dataclass
class ResumePlan:
    checkpoint: Checkpoint
    run_dir: Path
    refill_steps: int


class BreakoutExperimentManager(ExperimentManager):
    """
    rl-zoo3's ``ExperimentManager``, changed where breakout-sb3 promises more:

    - the run-folder callbacks of the YAML write into the run folder;
    - ``--save-freq`` writes complete checkpoints through the run's :class:`EpisodeCheckpointCallback` (one is added
      when the YAML has none) instead of model-only zips;
    - a model continued with ``-i`` keeps counting its steps, so its epsilon schedule continues;
    - SIGINT/SIGTERM finish the step, write a checkpoint and end the run cleanly;
    - ``resume`` continues a run in its own folder from a checkpoint, with the callbacks' state and RNG restored;
    - ``config_entry`` reads another entry of the YAML than the env id (the fast configuration's), whose
      ``vec_env: ale`` trains on ale-py's vector env and whose ``replay_buffer_class`` may be an import path.
    """

    def __init__(
        self,
        *args: Any,
        train_argv: list[str],
        checkpoint_options: CheckpointOptions,
        resume: ResumePlan | None = None,
        config_entry: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.train_argv = train_argv
        self.checkpoint_options = checkpoint_options
        self.resume = resume
        self.config_entry = config_entry
        self.vec_env_kind = "sb3"
        if resume is not None:
            self.save_path = str(resume.run_dir)
            self.params_path = f"{self.save_path}/{self.env_name}"

    def read_hyperparameters(self) -> tuple[dict[str, Any], dict[str, Any]]:
        if self.config_entry is None:
            return super().read_hyperparameters()
        env_name, self.env_name = self.env_name, EnvironmentName(self.config_entry)
        try:
            return super().read_hyperparameters()
        finally:
            self.env_name = env_name

    def _preprocess_hyperparams(self, hyperparams: dict[str, Any]):
        self.vec_env_kind = hyperparams.pop("vec_env", "sb3")
        buffer_class = hyperparams.get("replay_buffer_class")
        if isinstance(buffer_class, str) and "." in buffer_class:
            hyperparams["replay_buffer_class"] = get_class_by_name(buffer_class)
        if hyperparams.get("replay_buffer_class") is FrameStackReplayBuffer and get_device(self.device).type == "cuda":
            # the replay on the GPU: sampling gathers there, without host copies
            replay_kwargs = dict(hyperparams.get("replay_buffer_kwargs") or {})
            replay_kwargs.setdefault("storage_device", "cuda")
            hyperparams["replay_buffer_kwargs"] = replay_kwargs
        result = super()._preprocess_hyperparams(hyperparams)
        if self.resume is not None:
            self.monitor_kwargs = {**self.monitor_kwargs, "override_existing": False}  # append to 0.monitor.csv
        return result

    def create_envs(self, n_envs: int, eval_env: bool = False, no_log: bool = False) -> VecEnv:
        if self.vec_env_kind != "ale" or eval_env:
            return super().create_envs(n_envs, eval_env, no_log)
        # AtariWrapper's defaults (frame skip 4, 30 no-ops), and its frame limit counted in agent steps
        max_frames = self.env_kwargs.get("max_episode_steps")
        return AleVecEnv(n_envs=n_envs, seed=self.seed, max_episode_steps=max_frames // 4 if max_frames else None)

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
        if self.resume is not None:
            return  # the run's config, args and resume.json stay those of the run
        super()._save_config(saved_hyperparams)
        argv = _absolute_paths(self.train_argv)
        if self.config.endswith((".yml", ".yaml")):  # the conf file rl-zoo3 read
            snapshot = Path(self.params_path) / "hyperparams.yml"
            shutil.copyfile(self.config, snapshot)
            argv += ["--conf-file", str(snapshot.resolve())]
        resume = {
            "format": 1,
            "argv": argv,
            "config_entry": self.config_entry,
            "checkpoint_options": dataclasses.asdict(self.checkpoint_options),
        }
        (Path(self.save_path) / RESUME_FILE).write_text(json.dumps(resume, indent=2) + "\n")

    def setup_experiment(self) -> tuple[BaseAlgorithm, dict[str, Any]] | None:
        results = super().setup_experiment()
        if self.resume is not None and results is not None:
            self._restore(results[0])
        return results

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
            with checkpoint_on_signals(checkpoint) as received:
                model.learn(self.n_timesteps, reset_num_timesteps=not self.continue_training, **kwargs)
        except NonFiniteTrainingError as e:
            last = latest_checkpoint(self.save_path)
            kept = f"the last good checkpoint, {last.path}, is kept" if last else "no checkpoint was written"
            raise BreakoutSB3Error(f"{e}; training stopped, {kept}") from None
        except CheckpointError as e:
            raise BreakoutSB3Error(f"{e}; training stopped, the previous checkpoints are kept") from None
        finally:
            assert model.env is not None
            model.env.close()
        if received:
            print(
                f"{received[0]}: stopped at step {model.num_timesteps} after checkpoint {checkpoint.last_checkpoint}.\n"
                f"Resume with: breakout-sb3 resume {self.save_path}"
            )


def refill_target(model: BaseAlgorithm, refill_steps: int) -> int:
    """:return: ``refill_steps``, or fewer if the replay buffer cannot hold that many transitions"""
    replay = model.replay_buffer
    return min(refill_steps, replay.buffer_size * replay.n_envs)  # SB3's buffer_size there is per env


class ReplayRefillCallback(BaseCallback):
    """
    Holds off gradient steps (``gradient_steps = 0``) while the replay buffer holds fewer than ``transitions``
    transitions: used when a run resumes from a checkpoint written without its replay buffer.

    :param transitions: transitions the replay buffer must hold before training resumes
    """

    def __init__(self, transitions: int, verbose: int = 1):
        super().__init__(verbose)
        self.transitions = transitions
        self._gradient_steps: int | None = None

    def _stored(self) -> int:
        return self.model.replay_buffer.size() * self.model.n_envs

    def _on_training_start(self) -> None:
        if self._stored() < self.transitions:
            self._gradient_steps, self.model.gradient_steps = self.model.gradient_steps, 0

    def _on_rollout_end(self) -> None:
        if self._gradient_steps is not None and self._stored() >= self.transitions:
            self._release()

    def _on_training_end(self) -> None:
        if self._gradient_steps is not None:
            self._release()

    def _release(self) -> None:
        self.model.gradient_steps, self._gradient_steps = self._gradient_steps, None
        if self.verbose >= 1:
            refilled = f"Replay buffer refilled ({self._stored()} transitions)"
            print(f"{refilled}: training resumes at step {self.num_timesteps}")

    def _on_step(self) -> bool:
        return True


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


def check_train_args(argv: list[str], config_entry: str | None = None) -> None:
    """Check what rl-zoo3 would only discover with a traceback: the env id, the YAML, -params, -i."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--algo", default="dqn")
    parser.add_argument("--env", default=ENV_ID)
    parser.add_argument("-conf", "--conf-file")
    parser.add_argument("-params", "--hyperparams", nargs="+", default=[])
    parser.add_argument("-i", "--trained-agent", default="")
    args, _ = parser.parse_known_args(argv)

    check_env_id(args.env)
    if args.algo not in ALGOS:
        raise BreakoutSB3Error(f"unknown algorithm '{args.algo}' (choose from {', '.join(ALGOS)})")
    overrides = parse_zoo_params(args.hyperparams)
    conf = args.conf_file or str(default_config_path())
    if conf.endswith((".yml", ".yaml")):
        hyperparams = hyperparams_for(read_config(conf), config_entry or args.env, conf)
        check_hyperparams(hyperparams, ALGOS[args.algo], conf)
        check_hyperparams(overrides, ALGOS[args.algo], "-params")
    if args.trained_agent:
        check_model_zip(Path(args.trained_agent))


def parse_zoo_params(items: list[str]) -> dict[str, Any]:
    """Read ``-params key:value`` items the way rl-zoo3 does (the value is a Python expression)."""
    params = {}
    for item in items:
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise BreakoutSB3Error(f"-params {item}: expected key:value")
        try:
            params[key] = eval(value, {})  # rl-zoo3's StoreDict evaluates the same way
        except Exception as e:
            reason = f"{type(e).__name__}: {e}"
            raise BreakoutSB3Error(f"-params {item}: cannot read the value {value!r} ({reason})") from None
    return params


def check_model_zip(path: Path) -> None:
    if not path.is_file():
        raise BreakoutSB3Error(f"model not found: {path}")
    if not zipfile.is_zipfile(path):
        raise BreakoutSB3Error(f"{path} is not a model zip (corrupt or another kind of file)")


def _absolute_paths(argv: list[str]) -> list[str]:
    result = []
    expects_path = False
    for arg in argv:
        name, sep, inline = arg.partition("=")
        if expects_path:
            arg = os.path.abspath(arg)
        elif sep and name in PATH_FLAGS:
            arg = f"{name}={os.path.abspath(inline)}"
        expects_path = not sep and arg in PATH_FLAGS
        result.append(arg)
    return result


@contextmanager
def _zoo_train_with(manager: Any, argv: list[str]) -> Iterator[None]:
    # rl-zoo3 builds its argument parser inside train(): running train() with its ExperimentManager swapped for
    # ours keeps every rl-zoo3 flag working unchanged.
    saved = rl_zoo3.train.ExperimentManager, sys.argv
    rl_zoo3.train.ExperimentManager, sys.argv = manager, argv
    try:
        yield
    finally:
        rl_zoo3.train.ExperimentManager, sys.argv = saved


def run_zoo_train(
    argv: list[str],
    checkpoint_options: CheckpointOptions,
    resume: ResumePlan | None = None,
    config_entry: str | None = None,
) -> None:
    manager = functools.partial(
        BreakoutExperimentManager,
        train_argv=argv,
        checkpoint_options=checkpoint_options,
        resume=resume,
        config_entry=config_entry,
    )
    with _zoo_train_with(manager, ["breakout-sb3", *argv]):
        rl_zoo3.train.train()


def train(argv: list[str], checkpoint_options: CheckpointOptions | None = None, fast: bool = False) -> None:
    """``breakout-sb3 train``: rl-zoo3's ``train`` with the recipe's defaults, or with its fast configuration."""
    args = default_train_args() + (["--algo", FAST_ALGO] if fast else []) + argv
    config_entry = FAST_ENTRY if fast else None
    if not {"-h", "--help"} & set(argv):
        check_train_args(args, config_entry)
    run_zoo_train(args, checkpoint_options or CheckpointOptions(), config_entry=config_entry)


def resume(run_dir: str | Path, n_timesteps: int | None = None, refill_steps: int = 50_000) -> None:
    """``breakout-sb3 resume``: continue a run from its newest complete checkpoint."""
    run_dir = Path(run_dir)
    saved_file = run_dir / RESUME_FILE
    if not saved_file.is_file():
        what = "no run folder" if not run_dir.is_dir() else f"no {RESUME_FILE} (not started by breakout-sb3 train)"
        raise BreakoutSB3Error(f"cannot resume {run_dir}: {what}")
    saved = json.loads(saved_file.read_text())
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise BreakoutSB3Error(f"cannot resume {run_dir}: no complete checkpoint in {run_dir / 'checkpoints'}")
    if n_timesteps is None:
        n_timesteps = int(checkpoint.state["total_timesteps"]) - checkpoint.num_timesteps
        if n_timesteps <= 0:
            raise BreakoutSB3Error(f"{run_dir} already reached its {checkpoint.state['total_timesteps']} steps")
    elif n_timesteps <= 0:
        raise BreakoutSB3Error(f"-n must be > 0, got {n_timesteps}")
    print(
        f"Resuming {run_dir} from {checkpoint.path.name}: step {checkpoint.num_timesteps}, "
        f"episode {checkpoint.episodes}; {n_timesteps} more steps"
    )
    argv = [*saved["argv"], "-i", str(checkpoint.model_path), "-n", str(n_timesteps)]
    options = CheckpointOptions(**saved["checkpoint_options"])
    run_zoo_train(argv, options, ResumePlan(checkpoint, run_dir, refill_steps), saved.get("config_entry"))
