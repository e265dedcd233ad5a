"""Shared helpers: small real runs on the real ALE Breakout env with real SB3."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch as th
import yaml
from stable_baselines3 import DQN
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.vec_env import VecFrameStack

import breakout_sb3.env  # noqa: F401  (registers the ALE environments)
from breakout_sb3 import ENV_ID
from breakout_sb3.config import default_config_path

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def one_torch_thread():
    """
    One torch thread for a module's tests: ale-py's C++ threads and torch's OpenMP threads spin-wait against each
    other on the 2 cores of CI (DQN's updates get several times slower). Use with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    threads = th.get_num_threads()
    th.set_num_threads(1)
    yield
    th.set_num_threads(threads)


def recipe() -> dict[str, Any]:
    """The recipe's hyperparameters, as hyperparams/dqn.yml gives them."""
    return yaml.safe_load(default_config_path().read_text())[ENV_ID]


def write_config(folder: Path, callbacks: list | None = None, fast: dict | None = None, **overrides: Any) -> Path:
    """
    A copy of hyperparams/dqn.yml with test-sized overrides (never a change of the recipe itself); with ``fast``,
    also a fast entry: these keys over the same hyperparameters.
    """
    hyperparams = recipe()
    hyperparams.update(overrides)
    if callbacks is not None:
        hyperparams["callback"] = callbacks
    config = {ENV_ID: hyperparams}
    if fast is not None:
        config[f"{ENV_ID}-fast"] = {**hyperparams, **fast}
    path = folder / "dqn_test.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def breakout_env(n_envs: int = 1, seed: int = 42, monitor_dir: str | None = None):
    """SB3's AtariWrapper + VecFrameStack(4) over BreakoutNoFrameskip-v4, as the recipe builds it."""
    return VecFrameStack(make_atari_env(ENV_ID, n_envs=n_envs, seed=seed, monitor_dir=monitor_dir), 4)


def recipe_kwargs(**overrides: Any) -> dict[str, Any]:
    """The recipe's DQN arguments (hyperparams/dqn.yml) with a test-sized replay buffer, on the CPU."""
    params = dict(
        learning_rate=0.00025,
        buffer_size=2_000,
        learning_starts=32,
        batch_size=32,
        gamma=0.99,
        train_freq=4,
        gradient_steps=1,
        target_update_interval=10_000,
        max_grad_norm=1.0,
        policy_kwargs=dict(optimizer_kwargs=dict(eps=1e-7)),
        seed=42,
        device="cpu",
    )
    params.update(overrides)
    return params


def small_breakout_dqn(env=None, **overrides: Any) -> DQN:
    """The recipe's DQN with a test-sized replay buffer."""
    return DQN("CnnPolicy", env if env is not None else breakout_env(), **recipe_kwargs(**overrides))


def run_cli(*args: str, cwd: Path, module: str = "breakout_sb3", timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def run_clis_at_once(*commands: list[str], cwd: Path, timeout: float = 300) -> list[subprocess.CompletedProcess]:
    """
    Runs several ``breakout-sb3`` commands at the same time, each with one torch thread (``--num-threads 1``, so
    that on a 2-core machine each has a core): two short trainings take the time of one.
    """
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "breakout_sb3", *args, "--num-threads", "1"],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    results = []
    for process in processes:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            raise
        results.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    return results


def run_folders(log_folder: Path) -> list[Path]:
    return sorted((log_folder / "dqn").glob(f"{ENV_ID}_*"), key=lambda p: int(p.name.rsplit("_", 1)[1]))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """One short `breakout-sb3 train` run, shared by the tests that only read its outputs."""
    cwd = tmp_path_factory.mktemp("trained")
    result = run_cli("train", "-n", "700", "-params", "buffer_size:1000", "-f", "logs", cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    (folder,) = run_folders(cwd / "logs")
    return folder


def readme_section(heading: str) -> str:
    """:return: the text of the README's section ``## heading``, up to the next section"""
    text = (REPO / "README.md").read_text()
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def sh_lines(text: str) -> list[str]:
    """:return: the command lines of the first ```sh block in ``text``"""
    block = re.search(r"^```sh\n(.*?)^```$", text, flags=re.M | re.S)
    assert block is not None, "no sh block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def docs_environment(**env: str) -> dict[str, str]:
    """
    The environment documented commands run in: this Python's ``bin`` first on the PATH (its ``python`` and
    ``breakout-sb3``), and one torch thread, which keeps the pace of a run on a busy 2-core machine and changes none
    of its numbers.
    """
    bin_dir = Path(sys.executable).parent
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1", **env}


def run_documented(line: str, cwd: Path, timeout: float = 900, **env: str) -> subprocess.CompletedProcess:
    """Run a documented command line as a user would, in ``cwd``; it must succeed."""
    result = subprocess.run(
        ["bash", "-c", line], cwd=cwd, env=docs_environment(**env), capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{line}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The README's smoke run as written, in a scratch folder: the folder, and each command's output by command."""
    folder = tmp_path_factory.mktemp("smoke")
    outputs = {}
    for line in sh_lines(readme_section("A smoke run")):
        result = run_documented(line, folder)
        outputs[line.split()[1]] = result.stdout + result.stderr
    return folder, outputs
