"""End to end: train -> zip -> evaluate through the CLI and through rl-zoo3, and every bad input."""

from __future__ import annotations

import csv
import json
import zipfile

import pytest
import yaml
from stable_baselines3 import DQN

from breakout_sb3 import ENV_ID
from breakout_sb3.cli import main
from tests.conftest import REPO, run_cli, run_folders, write_config


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_train_writes_a_run_folder_with_model_csv_and_config(trained_run):
    model = DQN.load(trained_run / f"{ENV_ID}.zip", device="cpu")
    assert model.num_timesteps == 700
    assert model.buffer_size == 1000
    assert model.learning_rate(1.0) == 0.00025 and model.gamma == 0.99 and model.target_update_interval == 10_000
    rows = read_csv(trained_run / "training_stats.csv")
    assert rows[0][0] == "Episode" and len(rows) > 2
    args = yaml.unsafe_load((trained_run / ENV_ID / "args.yml").read_text())
    assert args["seed"] == 42 and args["eval_freq"] == -1


def test_evaluate_a_run_folder_and_write_json(trained_run, tmp_path):
    out = tmp_path / "eval.json"
    result = run_cli("evaluate", str(trained_run), "--episodes", "2", "--seed", "3", "--json", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["episodes"] == 2 and len(report["scores"]) == 2 and report["epsilon"] == 0.05
    assert report["model"].endswith(f"{ENV_ID}.zip")
    assert f"score {report['mean']:.2f} ± {report['std']:.2f}" in result.stdout
    assert f"min {report['min']:g}, max {report['max']:g}" in result.stdout


def test_evaluate_is_reproducible_for_a_seed(trained_run, tmp_path, capsys):
    zip_path = trained_run / f"{ENV_ID}.zip"
    args = ["evaluate", str(zip_path), "--episodes", "1", "--seed", "7", "--epsilon", "0.2", "--device", "cpu"]
    assert main([*args, "--json", str(tmp_path / "a.json")]) == 0
    assert main([*args, "--json", str(tmp_path / "b.json")]) == 0
    a = json.loads((tmp_path / "a.json").read_text())
    b = json.loads((tmp_path / "b.json").read_text())
    assert a["scores"] == b["scores"] and a["epsilon"] == 0.2


def test_train_through_plain_rl_zoo3_with_the_yaml_unchanged(tmp_path):
    result = run_cli(
        "--algo", "dqn", "--env", ENV_ID, "--conf-file", str(REPO / "hyperparams" / "dqn.yml"),
        "-n", "300", "-params", "buffer_size:500", "--seed", "42", "--eval-freq", "-1", "-f", "logs",
        cwd=tmp_path, module="rl_zoo3.train",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (folder,) = run_folders(tmp_path / "logs")
    assert DQN.load(folder / f"{ENV_ID}.zip", device="cpu").num_timesteps == 300
    assert read_csv(folder / "training_stats.csv")[0][0] == "Episode"


def test_train_continued_with_i_keeps_counting_steps_and_epsilon(tmp_path):
    callbacks = [{"callbacks.TwoPhaseEpsilonCallback": {"random_steps": 100, "first_decay_steps": 400}}]
    conf = write_config(tmp_path, callbacks=callbacks, buffer_size=500)
    first = run_cli("train", "--conf-file", str(conf), "-n", "400", "-f", "logs", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    (run1,) = run_folders(tmp_path / "logs")
    again = run_cli(
        "train", "--conf-file", str(conf), "-n", "100", "-f", "logs", "-i", str(run1 / f"{ENV_ID}.zip"),
        "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert "it/s" in first.stdout and "it/s" not in again.stdout
    run2 = run_folders(tmp_path / "logs")[-1]
    model = DQN.load(run2 / f"{ENV_ID}.zip", device="cpu")
    assert model.num_timesteps == 500
    # 1.0 held for 100 steps, then to 0.1 over 400: 0.1 at step 500 (it would be back at 1.0 if reset)
    assert model.exploration_rate == pytest.approx(0.1)


def test_yaml_and_cli_defaults_are_the_recipe():
    hyperparams = yaml.safe_load((REPO / "hyperparams" / "dqn.yml").read_text())[ENV_ID]
    assert hyperparams["learning_rate"] == 0.00025
    assert hyperparams["max_grad_norm"] == 1.0
    assert hyperparams["gamma"] == 0.99
    assert hyperparams["batch_size"] == 32
    assert hyperparams["buffer_size"] == 100_000
    assert hyperparams["train_freq"] == 4 and hyperparams["gradient_steps"] == 1
    assert hyperparams["learning_starts"] == 32
    assert hyperparams["target_update_interval"] == 10_000
    assert hyperparams["frame_stack"] == 4
    assert hyperparams["n_timesteps"] == 25_050_000
    assert hyperparams["env_kwargs"] == {"max_episode_steps": 40_000}
    (atari,) = hyperparams["env_wrapper"]
    assert atari["stable_baselines3.common.atari_wrappers.AtariWrapper"] == {
        "noop_max": 30, "frame_skip": 4, "screen_size": 84, "terminal_on_life_loss": True, "clip_reward": True,
    }  # fmt: skip
    callbacks = dict(next(iter(c.items())) if isinstance(c, dict) else (c, {}) for c in hyperparams["callback"])
    assert callbacks["callbacks.TwoPhaseEpsilonCallback"] == {
        "initial_eps": 1.0, "middle_eps": 0.1, "final_eps": 0.01,
        "random_steps": 50_000, "first_decay_steps": 1_000_000, "second_decay_steps": 24_000_000,
    }  # fmt: skip
    assert callbacks["callbacks.StopTrainingOnRunningScore"]["threshold"] == 40
    assert callbacks["callbacks.StopTrainingOnRunningScore"]["window"] == 100
    assert callbacks["callbacks.EpisodeCheckpointCallback"]["save_freq_episodes"] == 100
    assert "callbacks.NonFiniteLossCallback" in callbacks


def test_fast_entry_is_the_recipe_at_the_recipes_replay_ratio():
    config = yaml.safe_load((REPO / "hyperparams" / "dqn.yml").read_text())
    recipe, fast = config[ENV_ID], config[f"{ENV_ID}-fast"]
    speed_keys = {"vec_env", "n_envs", "train_freq", "gradient_steps", "replay_buffer_class"}
    assert set(fast) - set(recipe) <= speed_keys
    assert {key: value for key, value in fast.items() if key not in speed_keys} == {
        key: value for key, value in recipe.items() if key not in speed_keys
    }
    # gradient steps x batch per agent step: the recipe's one batch of 32 every 4 steps
    ratio = fast["gradient_steps"] * fast["batch_size"] / (fast["train_freq"] * fast["n_envs"])
    assert ratio == recipe["gradient_steps"] * recipe["batch_size"] / recipe["train_freq"] == 8


def test_the_recipe_network_and_optimizer(trained_run):
    model = DQN.load(trained_run / f"{ENV_ID}.zip", device="cpu")
    convs = [m for m in model.q_net.features_extractor.cnn if hasattr(m, "kernel_size")]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [(32, 8, 4), (64, 4, 2), (64, 3, 1)]
    assert convs[0].in_channels == 4
    assert model.q_net.features_extractor.linear[0].out_features == 512
    assert model.q_net.q_net[0].out_features == 4
    assert model.policy.optimizer.defaults["eps"] == 1e-7
    assert model.policy.optimizer.defaults["lr"] == 0.00025
    assert model.max_grad_norm == 1.0


ENTRY = f"{ENV_ID}:\n  policy: CnnPolicy\n  n_timesteps: 100\n"


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        (ENTRY + "  batch_size: [32\n", "malformed YAML at line 5"),
        (ENTRY + "  lerning_rate: 0.1\n", "unknown hyperparameter 'lerning_rate' (did you mean 'learning_rate'?)"),
        (ENTRY + "  batch_size: big\n", "'batch_size' must be an integer, got 'big'"),
        (ENTRY + "  seed: 1\n", "'seed' cannot be a hyperparameter"),
        ("- just\n- a list\n", "expected a mapping"),
        ("CartPole-v1:\n  policy: MlpPolicy\n", f"no hyperparameters for {ENV_ID}"),
    ],
)
def test_bad_yaml_is_one_line(tmp_path, capsys, yaml_text, message):
    conf = tmp_path / "bad.yml"
    conf.write_text(yaml_text)
    assert main(["train", "--conf-file", str(conf), "-f", str(tmp_path / "logs")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("breakout-sb3: error: ") and message in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "-params", "lerning_rate:0.1"], "-params: unknown hyperparameter 'lerning_rate'"),
        (["train", "-params", "gamma:'high'"], "-params: 'gamma' must be a finite number, got 'high'"),
        (["train", "-params", "batch_size:thirty"], "-params batch_size:thirty: cannot read the value"),
        (["train", "--env", "Breakout-v9"], "unknown environment id 'Breakout-v9'"),
        (["train", "--conf-file", "missing.yml"], "hyperparameter file not found: missing.yml"),
        (["train", "-i", "missing.zip"], "model not found: missing.zip"),
        (["evaluate", "missing.zip"], "model not found: missing.zip"),
        (["evaluate", "some_folder", "--env", "Breakout-v9"], "unknown environment id 'Breakout-v9'"),
        (["evaluate", "empty_folder"], "no model zip in empty_folder"),
        (["evaluate", "not_a_zip.zip"], "not_a_zip.zip is not a model zip"),
    ],
)
def test_bad_command_line_is_one_line(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty_folder").mkdir()
    (tmp_path / "not_a_zip.zip").write_text("hello")
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("breakout-sb3: error: ") and message in err
    assert len(err.splitlines()) == 1


def test_truncated_and_foreign_zips_are_refused_without_traceback(trained_run, tmp_path):
    data = (trained_run / f"{ENV_ID}.zip").read_bytes()
    (tmp_path / "truncated.zip").write_bytes(data[: len(data) // 2])
    with zipfile.ZipFile(tmp_path / "foreign.zip", "w") as archive:
        archive.writestr("hello.txt", "not a model")
    for name in ("truncated.zip", "foreign.zip"):
        result = run_cli("evaluate", name, "--episodes", "1", cwd=tmp_path)
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("breakout-sb3: error: ")
        assert name in result.stderr


def test_malformed_yaml_through_the_console_script_has_no_traceback(tmp_path):
    (tmp_path / "bad.yml").write_text(f"{ENV_ID}:\n  gamma: [0.99\n")
    result = run_cli("train", "--conf-file", "bad.yml", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("breakout-sb3: error: bad.yml: malformed YAML")


def test_train_help_is_rl_zoo3s(tmp_path):
    result = run_cli("train", "--help", cwd=tmp_path)
    assert result.returncode == 0
    flags = ("--n-timesteps", "--log-folder", "--hyperparams", "--tensorboard-log", "--save-freq", "--trained-agent")
    for flag in flags:
        assert flag in result.stdout
