"""Every rl-zoo3 train flag works through `breakout-sb3 train` or is refused in one line; --version; train -h."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from breakout_sb3.cli import main
from breakout_sb3.zoo_args import check_train_flags
from breakout_sb3.zoo_train import zoo_train_parser
from tests.conftest import REPO, run_cli

# (flags, what the one line says): rl-zoo3 flags that `breakout-sb3 train` refuses
REFUSED = [
    (["--track"], "--track needs Weights & Biases: pip install wandb"),
    (["--wandb-entity", "me"], "--wandb-entity acts with --track only"),
    (["--wandb-project-name", "breakout"], "--wandb-project-name acts with --track only"),
    (["--wandb-group", "seeds"], "--wandb-group acts with --track only"),
    (["-tags", "a", "b"], "--wandb-tags acts with --track only"),
    (["--fast", "--vec-env", "subproc"], "--vec-env subproc: the fast configuration always steps its games in ale-py"),
    (["--fast", "--vec", "dummy"], "--vec-env dummy: the fast configuration"),  # rl-zoo3's parser reads abbreviations
    (["--algo", "ppo"], "--algo ppo: train trains dqn"),
    (["--algo", "fast_dqn"], "--algo fast_dqn: train trains dqn (--fast: fast_dqn)"),
    (["--fast", "--algo", "dqn"], "--algo dqn: train --fast trains fast_dqn"),
    (["--trial-id", "3"], "--trial-id reads a trial with the names of rl-zoo3's own DQN sampler"),
    (["--truncate-last-trajectory", "False"], "--truncate-last-trajectory applies to HER's replay buffer only"),
    (["--n-trials", "20"], "--n-trials 20 is a flag of the hyperparameter search: run breakout-sb3 tune"),
    (["--max-total-trials", "50"], "--max-total-trials 50 is a flag of the hyperparameter search"),
    (["--n-jobs", "2"], "--n-jobs 2 is a flag of the hyperparameter search"),
    (["--sampler", "random"], "--sampler random is a flag of the hyperparameter search"),
    (["--pruner", "none"], "--pruner none is a flag of the hyperparameter search"),
    (["--n-startup-trials", "5"], "--n-startup-trials 5 is a flag of the hyperparameter search"),
    (["--n-evaluations", "2"], "--n-evaluations 2 is a flag of the hyperparameter search"),
    (["--storage", "sqlite:///tune.db"], "--storage sqlite:///tune.db is a flag of the hyperparameter search"),
    (["--study-name", "s"], "--study-name s is a flag of the hyperparameter search"),
    (["--optimization-log-path", "opt"], "--optimization-log-path opt is a flag of the hyperparameter search"),
    (["--no-optim-plots"], "--no-optim-plots is a flag of the hyperparameter search"),
    (["--optimize"], "--optimize-hyperparameters is a flag of the hyperparameter search"),  # an abbreviation
    (["--gym-packages", "no_such_games"], "--gym-packages no_such_games: cannot import it"),
    (["--vec-env", "threads"], "argument --vec-env: invalid choice: 'threads'"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
]


@pytest.mark.parametrize(("args", "message"), REFUSED, ids=[" ".join(args) for args, _ in REFUSED])
def test_refused_flags_are_one_line_exit_2_and_create_nothing(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed, whatever this machine has: import fails
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("breakout-sb3: error: ") and len(err.strip().splitlines()) == 1, err
    assert message in err, err
    assert list(tmp_path.iterdir()) == [], "nothing created"


def documented_flags() -> dict[str, str]:
    """:return: the rows of docs/recipe.md's table of rl-zoo3's train flags: each long flag and its row"""
    text = (REPO / "docs" / "recipe.md").read_text()
    table = text.split("## rl-zoo3's train flags", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in table.splitlines():
        if line.startswith("| `-"):
            first_cell = line.split("|")[1]
            for flag in re.findall(r"`(--[a-z-]+)`", first_cell):
                rows[flag] = line
    return rows


def test_docs_sort_every_rl_zoo3_train_flag():
    parser_flags = {
        max(action.option_strings, key=len) for action in zoo_train_parser()._actions if action.option_strings
    }
    parser_flags.discard("--help")
    documented = documented_flags()
    assert set(documented) == parser_flags
    tested = {message.split()[0] for _, message in REFUSED if message.startswith("--")}
    assert tested <= set(documented)
    for row in set(documented.values()):  # what the table says is refused, a test above refuses
        if "refused" in row:
            assert set(re.findall(r"`(--[a-z-]+)`", row.split("|")[1])) & tested, row


@pytest.mark.parametrize(
    ("args", "fast"),
    [
        (["--vec-env", "subproc"], False),
        (["--algo", "dqn"], False),
        (["--algo", "fast_dqn"], True),
        (["--eval-freq", "25000", "--eval-episodes", "5", "--n-eval-envs", "2", "--save-replay-buffer"], True),
        (["-uuid", "--verbose", "0", "-P", "--num-threads", "1", "-tb", "tb", "--log-interval", "4"], True),
    ],
)
def test_flags_that_pass_through_are_not_refused(args, fast):
    check_train_flags(args, fast=fast)


def test_flags_that_pass_through_work_in_a_run(tmp_path):
    """rl-zoo3's evaluation, its replay pickle, -uuid, --verbose 0 and --gym-packages, in one short run."""
    (tmp_path / "my_games.py").write_text(
        "import gymnasium as gym\n"
        "gym.register('MyBreakoutNoFrameskip-v4', entry_point='ale_py.env:AtariEnv',\n"
        "             kwargs=dict(game='breakout', obs_type='rgb', frameskip=1, repeat_action_probability=0.0))\n"
    )
    args = ["train", "--env", "MyBreakoutNoFrameskip-v4", "--gym-packages", "my_games", "-n", "100"]
    args += ["-params", "buffer_size:200", "--eval-freq", "50", "--eval-episodes", "1", "--n-eval-envs", "2"]
    args += ["--save-replay-buffer", "-uuid", "--verbose", "0", "--num-threads", "1", "-f", "logs", "--no-progress"]
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (tmp_path / "logs" / "dqn").iterdir()
    assert re.fullmatch(r"MyBreakoutNoFrameskip-v4_1_[0-9a-f-]{36}", run.name)  # -uuid
    assert (run / "MyBreakoutNoFrameskip-v4.zip").is_file() and (run / "replay_buffer.pkl").is_file()
    evaluations = np.load(run / "evaluations.npz")
    assert list(evaluations["timesteps"]) == [50, 100] and evaluations["results"].shape == (2, 1)
    assert "Eval num_timesteps=100" in result.stdout  # SB3's EvalCallback prints, whatever --verbose says
    assert "Creating test environment" not in result.stdout  # rl-zoo3's own messages follow --verbose 0


def test_train_help_is_rl_zoo3s_under_breakout_sb3_train(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "-h"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "usage: breakout-sb3 train [-h]" in out
    assert "--vec-env {dummy,subproc}" in out  # rl-zoo3's flags, listed by rl-zoo3's parser


def test_version_is_one_line_with_the_stack(tmp_path):
    console_script = shutil.which("breakout-sb3", path=str(Path(sys.executable).parent))
    assert console_script is not None
    env = {**os.environ, "COLUMNS": "40"}  # a narrow terminal: the line is not wrapped
    result = subprocess.run([console_script, "--version"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert line.startswith(f"breakout-sb3 {importlib.metadata.version('breakout-sb3')} (")
    for name in ("stable-baselines3", "rl-zoo3", "gymnasium", "ale-py", "torch"):
        assert f"{name} {importlib.metadata.version(name)}" in line
    assert f"Python {sys.version.split()[0]}" in line
