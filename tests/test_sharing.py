"""
A trained agent travels: the zips of both configurations load in plain SB3 where breakout-sb3 cannot be imported,
and docs/evaluate-and-watch.md's commands share a vanilla and a fast run with rl-zoo3's push_to_hub and read one
back with load_from_hub, with real rl-zoo3 and huggingface_sb3 code, only the Hub's network calls replaced.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from stable_baselines3 import DQN

from breakout_sb3 import ENV_ID
from callbacks import latest_checkpoint
from tests.conftest import REPO, docs_environment, run_cli, run_documented

REPO_NAME = f"dqn-{ENV_ID}"


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory) -> Path:
    """One short `breakout-sb3 train --fast` run."""
    cwd = tmp_path_factory.mktemp("fast")
    args = ["train", "--fast", "-n", "64", "-params", "buffer_size:200", "n_envs:2", "gradient_steps:1"]
    result = run_cli(*args, "--num-threads", "1", "--no-progress", "-f", "logs", cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (cwd / "logs" / "fast_dqn").glob(f"{ENV_ID}_*")
    return run


PLAIN_SB3 = """
import importlib.abc
import sys

BLOCKED = ("breakout_sb3", "callbacks")


class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}")


sys.meta_path.insert(0, Blocked())
for name in BLOCKED:
    try:
        __import__(name)
        raise SystemExit(f"{name} can be imported")
    except ModuleNotFoundError:
        pass

import ale_py
import gymnasium as gym
from stable_baselines3 import DQN
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.vec_env import VecFrameStack

gym.register_envs(ale_py)
env = VecFrameStack(make_atari_env("BreakoutNoFrameskip-v4", n_envs=1, seed=0), 4)
for path in sys.argv[1:]:
    model = DQN.load(path, device="cpu")
    obs = env.reset()
    for _ in range(50):
        action, _ = model.predict(obs, deterministic=True)
        obs, _, _, _ = env.step(action)
    print(f"{path}: {type(model).__name__} at step {model.num_timesteps}")
print("imported:", sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED))
"""


def test_zips_of_both_configurations_play_in_plain_sb3_without_breakout_sb3(trained_run, fast_run, tmp_path):
    zips = []
    for run in (trained_run, fast_run):
        zips += [run / f"{ENV_ID}.zip", latest_checkpoint(run).model_path]
    command = [sys.executable, "-c", PLAIN_SB3, *map(str, zips)]
    env = docs_environment()  # one torch thread, as the documented commands
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for path, steps in zip(zips, [700, 700, 64, 64], strict=True):
        assert f"{path}: DQN at step {steps}" in result.stdout
    assert "imported: []" in result.stdout


def sharing_blocks() -> list[list[str]]:
    """:return: the command lines of each ```sh block of docs/evaluate-and-watch.md's section on the Hub"""
    text = (REPO / "docs" / "evaluate-and-watch.md").read_text()
    section = text.split("\n## Sharing on the Hugging Face Hub\n", 1)[1].split("\n## ", 1)[0]
    blocks = section.split("```sh\n")[1:]
    return [[line for line in block.split("```", 1)[0].splitlines() if line.strip()] for block in blocks]


def offline(line: str) -> str | None:
    """:return: a documented command line with rl-zoo3's Hub scripts run by tests/hub_offline.py (None: a login)"""
    if line.startswith("hf auth login"):
        return None
    line = line.replace("python -m rl_zoo3.", f"python {REPO / 'tests' / 'hub_offline.py'} ")
    return line.replace("YOUR_HF_NAME", "someone")


def run_lines(lines: list[str], cwd: Path, **env: str) -> str:
    """Run documented command lines in ``cwd``, offline; :return: their output"""
    output = ""
    for line in filter(None, map(offline, lines)):
        result = run_documented(line, cwd, HUB_OFFLINE_CALLS=str(cwd / "hub_calls.jsonl"), **env)
        output += result.stdout + result.stderr
    return output


def calls(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "hub_calls.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def pushed(trained_run, fast_run, tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """The documented push of a vanilla and of a fast run, each in a folder of its own: (folder, run) by name."""
    vanilla_push, fast_push, _ = sharing_blocks()
    flows = {}
    cases = [("vanilla", trained_run, "dqn", vanilla_push), ("fast", fast_run, "fast_dqn", fast_push)]
    for name, run, algo, lines in cases:
        folder = tmp_path_factory.mktemp(f"share_{name}")
        copy = folder / "logs" / algo / run.name
        shutil.copytree(run, copy, ignore=shutil.ignore_patterns("checkpoints", "run.lock"))
        flows[name] = (folder, copy, lines)
    with ThreadPoolExecutor(len(flows)) as pool:  # the two pushes at once: each plays its games on one core
        outputs = dict(zip(flows, pool.map(lambda f: run_lines(f[2], f[0]), flows.values()), strict=True))
    assert all("Your model is pushed to the hub" in output for output in outputs.values())
    return {name: (folder, copy) for name, (folder, copy, _) in flows.items()}


@pytest.mark.parametrize(("name", "steps"), [("vanilla", 700), ("fast", 64)])
def test_push_to_hub_stages_the_model_its_config_card_and_replay(pushed, name, steps):
    folder, run = pushed[name]
    staged = folder / "hub" / REPO_NAME
    create, download, upload = calls(folder)
    assert create == {"call": "create_repo", "repo_id": f"someone/{REPO_NAME}"}
    assert download["call"] == "snapshot_download" and upload["call"] == "upload_folder"
    assert Path(folder, upload["folder_path"]).resolve() == staged.resolve()
    expected = {f"{REPO_NAME}.zip", "config.yml", "args.yml", "env_kwargs.yml", "train_eval_metrics.zip"}
    expected |= {"results.json", "README.md", "replay.mp4"}
    assert expected <= set(upload["files"])

    assert DQN.load(staged / f"{REPO_NAME}.zip", device="cpu").num_timesteps == steps
    assert (staged / "config.yml").read_bytes() == (run / ENV_ID / "config.yml").read_bytes()
    assert (staged / "args.yml").read_bytes() == (run / ENV_ID / "args.yml").read_bytes()
    with zipfile.ZipFile(staged / "train_eval_metrics.zip") as archive:
        assert "0.monitor.csv" in archive.namelist()
    results = json.loads((staged / "results.json").read_text())
    assert results["n_eval_episodes"] == 10 and math.isfinite(results["mean_reward"])
    card = (staged / "README.md").read_text()
    metadata = yaml.safe_load(card.split("---")[1])
    assert metadata["library_name"] == "stable-baselines3" and ENV_ID in metadata["tags"]
    (metric,) = metadata["model-index"][0]["results"][0]["metrics"]
    assert metric["value"] == f"{results['mean_reward']:.2f} +/- {results['std_reward']:.2f}"
    assert f"# **DQN** Agent playing **{ENV_ID}**" in card
    assert (staged / "replay.mp4").stat().st_size > 1000


def test_an_agent_from_the_hub_is_evaluated_as_a_run(pushed, tmp_path):
    """load_from_hub puts `sb3/dqn-BreakoutNoFrameskip-v4` into an rl-zoo3 run folder; evaluate reads it."""
    folder, _ = pushed["vanilla"]
    *_, download = sharing_blocks()
    output = run_lines(download, tmp_path, HUB_OFFLINE_REPO=str(folder / "hub" / REPO_NAME))
    asked = [(call["repo_id"], call["filename"]) for call in calls(tmp_path)]
    assert asked[:2] == [(f"sb3/{REPO_NAME}", f"{REPO_NAME}.zip"), (f"sb3/{REPO_NAME}", "config.yml")]
    assert "No normalization file" in output  # a file the repo lacks is what the Hub would answer
    run = tmp_path / "hub_logs" / "dqn" / f"{ENV_ID}_1"
    assert (run / f"{ENV_ID}.zip").is_file() and (run / ENV_ID / "config.yml").is_file()
    assert f"{run.relative_to(tmp_path) / ENV_ID}.zip: 10 games of {ENV_ID}, epsilon 0.05" in output
    assert "score " in output
