"""The recipe on another Atari game through the YAML's `atari` entries: train, then evaluate, vanilla and fast."""

from __future__ import annotations

import json

import yaml
from stable_baselines3 import DQN

from tests.conftest import run_cli, run_clis_at_once

GAME = "PongNoFrameskip-v4"  # no lives, six actions: nothing Breakout-specific can pass unnoticed
CONFIGS = {
    "dqn": ["-n", "300", "-params", "buffer_size:500"],
    "fast_dqn": ["--fast", "-n", "400", "-params", "buffer_size:800", "n_envs:4", "gradient_steps:1"],
}


def test_train_and_evaluate_another_game(tmp_path):
    commands = [["train", "--env", GAME, *args, "-f", "logs"] for args in CONFIGS.values()]
    for result in run_clis_at_once(*commands, cwd=tmp_path):
        assert result.returncode == 0, result.stderr[-3000:]
    for algo in CONFIGS:
        (run,) = (tmp_path / "logs" / algo).glob(f"{GAME}_*")
        model = DQN.load(run / f"{GAME}.zip", device="cpu")
        assert model.action_space.n == 6 and model.observation_space.shape == (4, 84, 84), algo
        # The recipe, as the `atari` entry gives it (rl-zoo3 writes the hyperparameters it used into the run folder)
        used = dict(yaml.unsafe_load((run / GAME / "config.yml").read_text()))  # an OrderedDict, as rl-zoo3 dumps it
        assert used["learning_rate"] == 0.00025 and used["target_update_interval"] == 10000, algo
        assert any("TwoPhaseEpsilonCallback" in str(callback) for callback in used["callback"]), algo

        out = tmp_path / f"eval_{algo}.json"
        result = run_cli("evaluate", str(run), "--episodes", "1", "--seed", "1", "--json", str(out), cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        report = json.loads(out.read_text())
        # A whole Pong game: the score of a game that one side won by reaching 21 points
        assert report["episodes"] == 1 and -21 <= report["scores"][0] <= 21, algo
        assert report["model"].endswith(f"{GAME}.zip"), algo
