"""Values that would be silently wrong: a device torch cannot use, v5 ids' own frame skip and sticky actions, fast's
n_steps. Refused with one line before anything runs, or made explicit in the run folder and in evaluate's output."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch as th
import yaml

from breakout_sb3.cli import main
from breakout_sb3.devices import check_device, device_flag
from breakout_sb3.env import env_id_of_folder, make_env, run_hyperparams
from breakout_sb3.fast import AleVecEnv
from tests.conftest import run_cli, run_clis_at_once

V5 = "ALE/Breakout-v5"
V5_FOLDER = "ALE-Breakout-v5"  # rl-zoo3's name for it in a run folder
SMALL = ["-n", "300", "-params", "buffer_size:500"]
FAST_SMALL = [*SMALL, "n_envs:2", "gradient_steps:1"]
ATARI_WRAPPER = "stable_baselines3.common.atari_wrappers.AtariWrapper"
# A CUDA device torch never has: refused on a GPU machine too
MISSING_GPU = f"cuda:{th.cuda.device_count()}"


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("breakout-sb3: error: ")
    return err


@pytest.mark.parametrize("device", [MISSING_GPU, "gpu", "meta", "cuda:x"])
def test_every_command_refuses_a_device_torch_cannot_use(tmp_path, capsys, device):
    logs = tmp_path / "logs"
    for args in (["train", "--device", device], ["train", "--fast", "--device", device], ["tune", "--device", device]):
        assert main([*args, "-f", str(logs)]) == 2, args
        err = one_line_error(capsys)
        assert "--device" in err and device in err, args
        assert not logs.exists(), "nothing was created"
    model = tmp_path / "model.zip"
    model.touch()
    for command, extra in (("evaluate", []), ("record", ["--out", str(tmp_path / "game.mp4")])):
        assert main([command, str(model), "--device", device, *extra]) == 2
        err = one_line_error(capsys)
        assert "--device" in err and device in err, command
    # resume: the device the run was started with, from its resume.json
    run = tmp_path / "run"
    run.mkdir()
    saved = {"format": 1, "argv": ["--algo", "dqn", "--device", device], "checkpoint_options": {}}
    (run / "resume.json").write_text(json.dumps(saved))
    assert main(["resume", str(run)]) == 2
    err = one_line_error(capsys)
    assert "resume.json: --device" in err and device in err


def test_the_device_messages(tmp_path, capsys):
    if not th.cuda.is_available():
        assert main(["train", "--device", "cuda", "-f", str(tmp_path)]) == 2
        err = one_line_error(capsys)
        assert "--device cuda: torch sees no CUDA device here" in err and "use --device cpu" in err
    assert main(["train", "--device", "gpu", "-f", str(tmp_path)]) == 2
    assert "--device must be auto, cpu, cuda, cuda:<index> or mps, got 'gpu'" in one_line_error(capsys)
    # auto keeps SB3's choice and says which it is, in SB3's words
    assert check_device("auto", announce=True) == th.device("cuda" if th.cuda.is_available() else "cpu")
    assert capsys.readouterr().out == f"Using {'cuda' if th.cuda.is_available() else 'cpu'} device\n"
    assert check_device("cpu") == th.device("cpu") and capsys.readouterr().out == ""
    assert device_flag(["--env", "X", "--device", "cpu", "--device=cuda"]) == "cuda"
    assert device_flag(["--env", "X"]) == "auto"


def test_values_the_env_or_fast_configuration_would_ignore_are_refused(tmp_path, capsys):
    cases = {
        ("--env", V5, "--env-kwargs", "frameskip:4"): "--env-kwargs: env_kwargs 'frameskip' 4 under AtariWrapper's "
        "frame_skip 4 would repeat each action 16 emulator frames",
        ("--fast", "--env", V5, "--env-kwargs", "frameskip:4"): "would repeat each action 16 emulator frames",
        ("--env", V5, "--eval-env-kwargs", "frameskip:2"): "--eval-env-kwargs: env_kwargs 'frameskip' 2",
        ("--env", V5, "--env-kwargs", "repeat_action_probability:1.5"): "env_kwargs 'repeat_action_probability' "
        "must be a number in [0, 1], got 1.5",
        (
            "--env",
            V5,
            "-params",
            f"env_wrapper:[{{'{ATARI_WRAPPER}': {{'action_repeat_probability': 0.1}}}}]",
        ): "-params: sticky actions twice: the env's repeat_action_probability 0.25 and AtariWrapper's "
        "action_repeat_probability 0.1",
        ("--fast", "--env", V5, "--env-kwargs", "mode:2"): "the fast configuration's vector env takes env_kwargs "
        "frameskip, max_episode_steps, repeat_action_probability only, got mode",
        ("--fast", "-params", "n_steps:3"): "-params: 'n_steps' must be 1, got 3",
        (
            "-params",
            "n_steps:3",
            "replay_buffer_class:'breakout_sb3.fast.FrameStackReplayBuffer'",
        ): "-params: 'n_steps' must be 1 with replay_buffer_class breakout_sb3.fast.FrameStackReplayBuffer",
    }
    for args, message in cases.items():
        assert main(["train", *args, "-f", str(tmp_path / "logs")]) == 2, args
        assert message in one_line_error(capsys), args
    assert not (tmp_path / "logs").exists()


def test_a_v5_run_skips_4_frames_per_step_with_its_sticky_actions_end_to_end(tmp_path):
    """
    gymnasium's ALE/Breakout-v5 under AtariWrapper: the env's own frameskip set to 1, v5's sticky actions (0.25)
    kept, both saved in the run folder and rebuilt by evaluate; also through the fast configuration.
    """
    vanilla, fast = run_clis_at_once(
        ["train", "--env", V5, *SMALL, "-f", "logs", "--no-progress"],
        ["train", "--fast", "--env", V5, *FAST_SMALL, "-f", "logs", "--no-progress"],
        cwd=tmp_path,
    )
    for result in (vanilla, fast):
        assert result.returncode == 0, result.stderr[-3000:]
        assert "env_kwargs={'max_episode_steps': 40000, 'frameskip': 1, 'repeat_action_probability': 0.25}" in (
            result.stdout
        )
        assert result.stdout.count(f"Using {'cuda' if th.cuda.is_available() else 'cpu'} device") == 1
    for algo in ("dqn", "fast_dqn"):
        (run,) = (tmp_path / "logs" / algo).glob(f"{V5_FOLDER}_*")
        config = yaml.unsafe_load((run / V5_FOLDER / "config.yml").read_text())
        env_kwargs = dict(config)["env_kwargs"]
        assert env_kwargs == {"max_episode_steps": 40_000, "frameskip": 1, "repeat_action_probability": 0.25}, algo
        assert f'"env_id": "{V5}"' in (run / "0.monitor.csv").read_text().splitlines()[0], algo
    (run,) = (tmp_path / "logs" / "dqn").glob(f"{V5_FOLDER}_*")
    assert env_id_of_folder(V5_FOLDER) == V5

    out = tmp_path / "eval.json"
    result = run_cli("evaluate", str(run), "--episodes", "1", "--json", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"1 games of {V5}, epsilon 0.05, seed 0, sticky actions 0.25" in result.stdout
    assert "Using cpu device" in result.stdout or th.cuda.is_available()
    report = json.loads(out.read_text())
    assert report["env_id"] == V5 and report["repeat_action_probability"] == 0.25

    # The env evaluate plays on, from the run folder: ALE's own sticky actions, 4 emulator frames per agent step
    env = make_env(V5, run_hyperparams(run, V5), seed=0)
    try:
        (ale,) = env.get_attr("ale")
        assert ale.getFloat("repeat_action_probability") == pytest.approx(0.25)
        env.reset()
        frames = []
        for _ in range(20):
            before = ale.getFrameNumber()
            _, _, dones, _ = env.step(np.array([0]))
            if not dones[0]:  # a reset adds its own frames
                frames.append(ale.getFrameNumber() - before)
        assert len(frames) >= 10 and set(frames) == {4}
    finally:
        env.close()


def test_the_fast_env_has_ales_sticky_actions():
    """AleVecEnv passes repeat_action_probability to ALE: with 1.0 the first action (FIRE) never replaces NOOP."""
    lives = {}
    for probability in (0.0, 1.0):
        env = AleVecEnv(n_envs=1, seed=0, noop_max=0, repeat_action_probability=probability, num_threads=1)
        try:
            env.reset()
            for _ in range(100):
                _, _, _, infos = env.step(np.array([0]))  # NOOP: the ball is served by the FIRE added to it
            lives[probability] = infos[0]["lives"]
        finally:
            env.close()
    assert lives[0.0] < 5, "the ball was served and a life lost"
    assert lives[1.0] == 5, "the emulator repeated the reset's NOOP: the ball was never served"
