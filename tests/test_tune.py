"""
`breakout-sb3 tune` end to end, on a real PostgreSQL server (tests/postgres.py) and on SQLite: workers sharing one
study, a worker killed with -9 or stopped with Ctrl-C, workers outliving a server stopped or restarted under them,
seed sweeps, the exported best trial, every bad storage input.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from stable_baselines3 import DQN

from breakout_sb3 import ENV_ID
from breakout_sb3.cli import main
from breakout_sb3.config import class_specs, default_config_path, read_config
from breakout_sb3.tune.storage import Heartbeat, open_storage, open_study
from tests.conftest import run_cli, run_folders

pytest_plugins = ("tests.postgres",)

# Tiny trials: 200 agent steps, a 500-transition replay, one evaluation of one game, one torch thread per worker.
TINY = ["-n", "200", "-params", "buffer_size:500", "--eval-episodes", "1", "--n-evaluations", "1"]
TINY += ["--num-threads", "1", "-f", "logs"]
# Dead workers found fast: a heartbeat every second, failed after 3 seconds without one.
QUICK_HEARTBEAT = ["--heartbeat-interval", "1", "--grace-period", "3"]
# Outages of a few seconds: several heartbeats missed, and still within the grace period.
OUTAGE_HEARTBEAT = ["--heartbeat-interval", "1", "--grace-period", "20"]


def tune_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "breakout_sb3", "tune", *args]


def start(folder: Path, *args: str) -> subprocess.Popen:
    (folder / "tmp").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TMPDIR": str(folder / "tmp")}  # where SB3's logger would leave an SB3-<date> folder
    return subprocess.Popen(
        tune_command(*args), cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(worker: subprocess.Popen, timeout: float = 240) -> tuple[str, str]:
    out, err = worker.communicate(timeout=timeout)
    assert worker.returncode == 0, err[-3000:]
    return out, err


def study(url: str, name: str) -> optuna.Study:
    # a plain postgresql:// URL needs SQLAlchemy's default driver, which open_storage falls back from if missing
    return optuna.load_study(study_name=name, storage=open_storage(url, Heartbeat()))


def trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return study(url, name).trials


def wait_for_running_trial(url: str, name: str, worker: subprocess.Popen, timeout: float = 120) -> int:
    """:return: the number of the worker's trial once it runs and has its parameters"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert worker.poll() is None, worker.communicate()[1][-3000:]
        try:
            running = [t for t in trials(url, name) if t.state == TrialState.RUNNING and "folder" in t.user_attrs]
        except KeyError:  # the study does not exist yet
            running = []
        if running:
            return running[0].number
        time.sleep(0.3)
    raise AssertionError("no trial started")


def wait_for_running_trials(url: str, name: str, workers: list[subprocess.Popen], timeout: float = 120) -> None:
    """Wait until each worker runs a trial."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for worker in workers:
            assert worker.poll() is None, worker.communicate()[1][-3000:]
        try:
            running = [t for t in trials(url, name) if t.state == TrialState.RUNNING and "folder" in t.user_attrs]
        except KeyError:  # the study does not exist yet
            running = []
        if len(running) == len(workers):
            return
        time.sleep(0.3)
    raise AssertionError("the trials did not start")


def fail_stale_trials(url: str, name: str) -> None:
    """What the next worker to start a trial does first: fail the trials without a heartbeat for 3 s, queue them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = open_storage(url, Heartbeat(interval=1, grace_period=3))
        optuna.storages.fail_stale_trials(optuna.load_study(study_name=name, storage=storage))


def recipe_values() -> dict:
    """The values the YAML's entry gives to the searched parameters (the first trial's)."""
    entry = read_config(default_config_path())[ENV_ID]
    epsilon = dict(class_specs(entry["callback"]))["callbacks.TwoPhaseEpsilonCallback"]
    values = {key: entry[key] for key in ("learning_rate", "target_update_interval", "batch_size", "gamma")}
    values.update({f"TwoPhaseEpsilonCallback.{key}": value for key, value in epsilon.items() if key != "initial_eps"})
    return values


@pytest.fixture(scope="module")
def shared_study(postgres_server, tmp_path_factory) -> tuple[Path, str]:
    """Two workers at once on one PostgreSQL study, two trials each; :return: their folder, the URL."""
    root = tmp_path_factory.mktemp("shared")
    url = postgres_server.create_database()
    args = ["--storage", url, "--study-name", "shared", "--n-trials", "2", *TINY]
    workers = [start(root / name, *args) for name in ("a", "b")]
    for worker in workers:
        finish(worker)
    return root, url


def test_two_workers_share_one_study(shared_study):
    root, url = shared_study
    done = trials(url, "shared")
    assert len(done) == 4 and all(t.state == TrialState.COMPLETE for t in done)
    assert len({t.user_attrs["worker"] for t in done}) == 2  # both ran trials
    assert len({tuple(sorted(t.params.items())) for t in done}) == 4  # no parameters ran twice
    (first,) = [t for t in done if "queued_as" in t.user_attrs]  # the recipe, queued once by the study's creator
    assert {key: first.params[key] for key in recipe_values()} == recipe_values()
    assert "buffer_size" not in first.params  # fixed with -params
    assert study(url, "shared").user_attrs["breakout-sb3"]["n_timesteps"] == 200
    for trial in done:  # each trial's CSV and Monitor file, in its worker's log folder
        folder = Path(trial.user_attrs["folder"])
        assert folder.name == f"trial_{trial.number}" and folder.is_relative_to(root)
        assert (folder / "training_stats.csv").is_file() and (folder / "0.monitor.csv").is_file()
        assert not (folder / "checkpoints").exists()
        assert len(trial.intermediate_values) == 1  # the evaluation reported to the pruner
    for name in ("a", "b"):
        assert (root / name / "logs/dqn" / "shared" / "best.yml").is_file()
        assert len(list((root / name / "logs/dqn").glob("report_*.csv"))) == 1
        assert not run_folders(root / name / "logs")  # no empty rl-zoo3 run folder for the study
        assert not list((root / name / "tmp").glob("SB3-*")), "a trial left a temp folder"


def test_the_best_trial_exported_trains_unchanged(shared_study):
    root, url = shared_study
    shared = study(url, "shared")
    (searched,) = [t for t in shared.trials if t.number == 1]
    # a trial other than the recipe scores best: a worker with nothing left to run exports it
    shared.add_trial(optuna.create_trial(params=searched.params, distributions=searched.distributions, value=1000.0))
    # `breakout-sb3 train -optimize` is `breakout-sb3 tune`
    command = [sys.executable, "-m", "breakout_sb3", "train", "-optimize", "--storage", url, "--study-name", "shared"]
    (root / "c").mkdir()
    worker = subprocess.run(
        [*command, "--max-total-trials", "4", *TINY], cwd=root / "c", capture_output=True, text=True, timeout=240
    )
    assert worker.returncode == 0, worker.stderr[-3000:]
    assert "has its 4 trials: nothing to run" in worker.stdout and "Best trial: 4, score 1000" in worker.stdout
    (report,) = (root / "c" / "logs/dqn").glob(f"report_{ENV_ID}_*.csv")  # rl-zoo3's, with Optuna's columns
    header = report.read_text().splitlines()[0].split(",")
    assert {"number", "value", "params_learning_rate", "user_attrs_worker", "state"} <= set(header)
    best = root / "c" / "logs/dqn/shared/best.yml"
    # 160 steps: a whole number of rollouts of train_freq 2, 4, 8 or 16 steps
    result = run_cli("train", "--conf-file", str(best), "-n", "160", "-f", "logs", cwd=root / "c")
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = run_folders(root / "c" / "logs")
    model = DQN.load(run / f"{ENV_ID}.zip", device="cpu")
    params = searched.params
    assert model.num_timesteps == 160 and model.buffer_size == 500
    assert model.lr_schedule(1.0) == pytest.approx(params["learning_rate"])
    assert model.batch_size == params["batch_size"] and model.gamma == params["gamma"]
    assert model.target_update_interval == params["target_update_interval"]
    assert model.max_grad_norm == pytest.approx(params["max_grad_norm"])
    assert model.gradient_steps * model.batch_size / model.train_freq.frequency == 8  # the replay ratio
    saved = read_config(run / ENV_ID / "hyperparams.yml")[ENV_ID]
    epsilon = dict(class_specs(saved["callback"]))["callbacks.TwoPhaseEpsilonCallback"]
    for key in ("random_steps", "first_decay_steps", "middle_eps", "second_decay_steps", "final_eps"):
        assert epsilon[key] == params[f"TwoPhaseEpsilonCallback.{key}"]


def test_a_worker_killed_mid_trial_is_failed_and_its_trial_run_again(postgres_url, tmp_path):
    args = ["--storage", postgres_url, "--study-name", "killed", "--n-trials", "1", *QUICK_HEARTBEAT, *TINY]
    args[args.index("200")] = "600"
    killed = start(tmp_path / "a", *args)
    number = wait_for_running_trial(postgres_url, "killed", killed)
    killed.kill()  # SIGKILL: no cleanup of any kind
    killed.communicate()
    assert trials(postgres_url, "killed")[number].state == TrialState.RUNNING
    time.sleep(4)  # longer than the grace period
    finish(start(tmp_path / "b", *args))
    first, again = trials(postgres_url, "killed")
    assert first.state == TrialState.FAIL
    assert again.state == TrialState.COMPLETE and again.params == first.params
    assert again.system_attrs["failed_trial"] == first.number
    assert again.user_attrs["worker"] != first.user_attrs["worker"]


@pytest.mark.parametrize("fault", ["stopped for 3 s", "restarted 20 times"])
def test_two_workers_outlive_their_database_server(fault, postgres_server, postgres_url, tmp_path):
    args = ["--storage", postgres_url, "--study-name", "outage", "--n-trials", "1", *OUTAGE_HEARTBEAT, *TINY]
    args[args.index("200")] = "1000"
    workers = [start(tmp_path / name, *args) for name in ("a", "b")]
    wait_for_running_trials(postgres_url, "outage", workers)
    if fault == "stopped for 3 s":  # three heartbeats missed
        postgres_server.stop()
        time.sleep(3)
        postgres_server.start()
    else:
        for _ in range(20):
            postgres_server.restart()
    for worker in workers:
        out, err = finish(worker)
        assert "Traceback" not in err and "Exception" not in err
        if fault == "stopped for 3 s":
            assert "Lost the storage" in out and "is back, after" in out
    done = trials(postgres_url, "outage")
    assert len(done) == 2 and all(t.state == TrialState.COMPLETE for t in done)  # none re-run, none RUNNING


def test_a_server_down_past_db_wait_stops_the_worker_in_one_line(postgres_server, postgres_url, tmp_path):
    args = ["--storage", postgres_url, "--study-name", "down", "--n-trials", "1", "--db-wait", "2", *TINY]
    args += QUICK_HEARTBEAT
    args[args.index("200")] = "5000"
    worker = start(tmp_path, *args)
    number = wait_for_running_trial(postgres_url, "down", worker)
    postgres_server.stop()
    try:
        out, err = worker.communicate(timeout=60)
    finally:
        postgres_server.start()
    assert worker.returncode == 75, err[-3000:]
    assert "Traceback" not in err and "Lost the storage" in out
    (line,) = [line for line in err.splitlines() if line.startswith("breakout-sb3")]
    assert line.startswith("breakout-sb3: error: the storage postgresql://")
    assert "unreachable for 2 s (--db-wait)" in line
    assert f"its trial {number} stays RUNNING" in line
    # left to the grace period: the next worker fails it and runs it again
    assert trials(postgres_url, "down")[number].state == TrialState.RUNNING
    time.sleep(3.5)
    fail_stale_trials(postgres_url, "down")
    left, again = trials(postgres_url, "down")
    assert left.state == TrialState.FAIL and again.state == TrialState.WAITING and again.params == left.params


def test_a_trial_taken_for_dead_while_its_worker_lives_is_kept_in_its_report(postgres_url, tmp_path):
    args = ["--storage", postgres_url, "--study-name", "taken", "--n-trials", "2", *QUICK_HEARTBEAT, *TINY]
    args[args.index("200")] = "600"
    worker = start(tmp_path, *args)
    number = wait_for_running_trial(postgres_url, "taken", worker)
    worker.send_signal(signal.SIGSTOP)  # alive, but its heartbeats stop
    try:
        time.sleep(4)  # longer than the grace period
        fail_stale_trials(postgres_url, "taken")
    finally:
        worker.send_signal(signal.SIGCONT)
    out, err = finish(worker)
    assert "Traceback" not in err
    assert f"Trial {number} finished here (score " in out and "another worker took it for dead" in out
    taken, again = trials(postgres_url, "taken")
    assert taken.state == TrialState.FAIL and taken.value is None
    # the worker went on: its next trial ran the parameters again
    assert again.state == TrialState.COMPLETE and again.system_attrs["failed_trial"] == taken.number
    (report,) = (tmp_path / "logs/dqn").glob("report_*.csv")
    rows = {int(row["number"]): row for row in csv.DictReader(report.open())}
    assert rows[taken.number]["value"] != "" and "not recorded" in rows[taken.number]["not_recorded"]
    assert rows[taken.number]["params_learning_rate"] == str(taken.params["learning_rate"])
    assert rows[again.number]["not_recorded"] == ""


def test_ctrl_c_stops_a_worker_cleanly_and_queues_its_trial_again(tmp_path):
    # no --storage: a study that survives, in SQLite next to the runs, named after what it tunes
    args = ["--n-trials", "3", *TINY]
    args[args.index("200")] = "1000"
    url, name = f"sqlite:///{tmp_path / 'logs' / 'tune.db'}", f"{ENV_ID}-tune-1000-steps"
    worker = start(tmp_path, *args)
    number = wait_for_running_trial(url, name, worker)
    time.sleep(1)
    worker.send_signal(signal.SIGINT)
    out, err = finish(worker, timeout=120)
    assert "Traceback" not in err
    assert f"Trial {number} stopped: recorded as failed, its parameters queued again" in out
    stopped, queued = trials(url, name)
    assert stopped.state == TrialState.FAIL and queued.state == TrialState.WAITING
    assert queued.params == stopped.params and queued.system_attrs["failed_trial"] == stopped.number
    assert "queued_as" in stopped.user_attrs  # the recipe's trial: it will still be run


def test_a_seed_sweep_runs_each_seed_once_over_two_workers(postgres_url, tmp_path):
    # the fast configuration: 16 envs per vector step, 320 steps a whole number of them
    args = ["--fast", "--seeds", "1", "2", "3", "--storage", postgres_url, "--study-name", "seeds", *TINY]
    args[args.index("200")] = "320"
    for worker in [start(tmp_path / name, *args) for name in ("a", "b")]:
        finish(worker)
    done = [t for t in trials(postgres_url, "seeds") if t.state == TrialState.COMPLETE]
    assert sorted(t.params["seed"] for t in done) == [1, 2, 3]
    # a worker that asked for a trial just as the last seed was taken records it as a pruned duplicate, not a run
    others = [t for t in trials(postgres_url, "seeds") if t.state != TrialState.COMPLETE]
    assert all(t.state == TrialState.PRUNED and "duplicate_of" in t.user_attrs for t in others)
    for trial in done:  # a run folder of its own, for plot, evaluate and record
        folder = Path(trial.user_attrs["folder"])
        assert folder.name == f"seed_{trial.params['seed']}"
        assert (folder / "training_stats.csv").is_file() and (folder / ENV_ID / "config.yml").is_file()
        model = DQN.load(folder / f"{ENV_ID}.zip", device="cpu")
        assert model.num_timesteps == 320 and model.seed == trial.params["seed"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--storage", "not a url"], "--storage 'not a url' is not a database URL"),
        (["--storage", ""], "--storage is empty"),
        (["--storage", "postgress://u@localhost/db", "--study-name", "s"], "unknown database kind 'postgress' (did"),
        (["--storage", "mysql://u@localhost/db", "--study-name", "s"], "the database driver is not installed"),
        (["--storage", "sqlite:////proc/no/tune.db"], "cannot create the folder of /proc/no/tune.db"),
        (["--storage", "postgresql://postgres@127.0.0.1:1/db", "--study-name", "s"], "cannot open the storage"),
        (["--storage", "{missing}", "--study-name", "s"], 'database "missing" does not exist'),
        (["--storage", "{url}"], "--study-name is needed with the server storage"),
        (["--storage", "{url}", "--study-name", ""], "--study-name is empty"),
        (["--storage", "{url}", "--study-name", "x" * 513], "at most 512"),
        (["--storage", "{url}", "--study-name", "foreign"], "was not created by breakout-sb3 tune"),
        (["--seeds", "1", "--storage", "{url}", "--study-name", "tuning"], "runs kind 'tune', this command 'seeds'"),
        (["--n-trials", "0"], "--n-trials must be"),
        (["--seeds", "1", "1"], "--seeds lists a seed twice"),
        (["--sampler", "grid"], "--sampler must be one of tpe, random, auto"),
        (["--grace-period", "10", "--heartbeat-interval", "20"], "--grace-period (10 s) must be longer"),
        (["--db-wait", "-1"], "--db-wait must be"),
        (["-i", "model.zip"], "tune does not take -i"),
    ],
)
def test_bad_tune_input_is_one_line(args, message, postgres_server, postgres_url, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = [arg.format(url=postgres_url, missing=postgres_server.url("missing")) for arg in args]
    storage = open_storage(postgres_url, Heartbeat())
    optuna.create_study(storage=storage, study_name="foreign", direction="maximize").enqueue_trial({})
    description = {"kind": "tune", "env": ENV_ID, "algo": "dqn", "entry": ENV_ID, "n_timesteps": 200}
    open_study(storage, postgres_url, "tuning", description, None)
    started = time.monotonic()
    assert main(["tune", *args, *TINY]) == 2
    assert time.monotonic() - started < 30  # an unreachable server fails fast
    err = capsys.readouterr().err.strip()
    assert err.startswith("breakout-sb3: error: ") and message in err, err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "logs" / "dqn").exists()


def test_without_postgresql_the_tests_fail_rather_than_skip(monkeypatch):
    from tests import postgres

    monkeypatch.setattr(postgres.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(postgres.shutil, "which", lambda name: None)
    with pytest.raises(pytest.fail.Exception, match="PostgreSQL's server programs"):
        postgres.server_programs()
