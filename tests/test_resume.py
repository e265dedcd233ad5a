"""breakout-sb3 resume: after a clean stop (SIGTERM/SIGINT), after SIGKILL, without a replay; and determinism."""

from __future__ import annotations

import csv
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from stable_baselines3 import DQN

from breakout_sb3 import ENV_ID
from breakout_sb3.cli import main
from callbacks import TwoPhaseEpsilonSchedule, latest_checkpoint, read_replay_buffer
from callbacks.checkpoint import find_checkpoints
from tests.conftest import run_cli, run_clis_at_once, run_folders, write_config

EPSILON = {"random_steps": 100, "first_decay_steps": 1_000, "second_decay_steps": 1_000}
SCHEDULE = TwoPhaseEpsilonSchedule(**EPSILON)


def small_run_config(folder: Path, save_freq_episodes: int = 2) -> Path:
    """The recipe with test-sized overrides: small replay, short epsilon schedule, a checkpoint every 2 games."""
    callbacks = [
        {"callbacks.TwoPhaseEpsilonCallback": EPSILON},
        {"callbacks.CSVStatsCallback": {"tensorboard_prefix": "breakout"}},
        {"callbacks.StopTrainingOnRunningScore": {"threshold": 1000, "window": 100}},
        {"callbacks.EpisodeCheckpointCallback": {"save_freq_episodes": save_freq_episodes, "keep_last": 3}},
        "callbacks.NonFiniteLossCallback",
    ]
    return write_config(folder, callbacks=callbacks, buffer_size=1000)


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def start_training(folder: Path, *args: str) -> subprocess.Popen:
    conf = small_run_config(folder)
    command = [sys.executable, "-m", "breakout_sb3", "train", "--conf-file", str(conf), "-f", "logs", *args]
    return subprocess.Popen(command, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, timeout: float = 240.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.2)


def assert_one_run(rows: list[list[str]]) -> None:
    """
    The CSV reads as one run: one header, episodes 1..N, frames increasing, training time never going back, epsilon
    on the schedule.
    """
    assert sum(1 for r in rows if r[0] == "Episode") == 1
    body = rows[1:]
    assert [int(r[0]) for r in body] == list(range(1, len(body) + 1))
    frames = [int(r[4]) for r in body]
    assert frames == sorted(frames) and len(set(frames)) == len(frames)
    times = [float(r[8]) for r in body]
    assert times == sorted(times), "Training Time restarted"
    for row in body:
        assert float(row[2]) == pytest.approx(SCHEDULE.value(int(row[4]) - 1), abs=1e-6)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_writes_a_checkpoint_exits_0_and_resume_continues(tmp_path, sig):
    process = start_training(tmp_path, "-n", "20000")
    wait_for(lambda: run_folders(tmp_path / "logs") and find_checkpoints(run_folders(tmp_path / "logs")[0]))
    (run,) = run_folders(tmp_path / "logs")
    process.send_signal(sig)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-3000:]
    assert f"Resume with: breakout-sb3 resume {run.relative_to(tmp_path)}" in out
    checkpoint = latest_checkpoint(run)
    stopped_at = DQN.load(run / f"{ENV_ID}.zip", device="cpu").num_timesteps
    # It finished the step it was in: the checkpoint is at most one rollout (4 steps) behind.
    assert 0 <= stopped_at - checkpoint.num_timesteps <= 5
    rows_before = read_csv(run / "training_stats.csv")

    result = run_cli("resume", str(run), "-n", "400", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    csv_episodes = checkpoint.callback_state("CSVStatsCallback")["episode"]
    where = (
        f"from {checkpoint.path.name}: step {checkpoint.num_timesteps}, {checkpoint.episodes} episodes in the Monitor "
        f"files, {csv_episodes} in training_stats.csv"
    )
    assert where in result.stdout
    resumed = DQN.load(run / f"{ENV_ID}.zip", device="cpu")
    assert resumed.num_timesteps == checkpoint.num_timesteps + 400
    assert resumed.exploration_rate == pytest.approx(SCHEDULE.value(resumed.num_timesteps))
    rows = read_csv(run / "training_stats.csv")
    assert_one_run(rows)
    assert len(rows) > len(rows_before)
    assert rows[: checkpoint.episodes + 1] == rows_before[: checkpoint.episodes + 1]
    assert int(rows[checkpoint.episodes + 1][4]) > checkpoint.num_timesteps
    # No second run folder: it continued in its own.
    assert run_folders(tmp_path / "logs") == [run]


def test_resume_after_sigkill_moves_rows_after_the_checkpoint_aside(tmp_path):
    process = start_training(tmp_path, "-n", "20000")

    def checkpoint_and_later_rows() -> bool:
        runs = run_folders(tmp_path / "logs")
        if not runs or not find_checkpoints(runs[0]):
            return False
        newest = latest_checkpoint(runs[0])
        rows = read_csv(runs[0] / "training_stats.csv")
        return newest is not None and len(rows) - 1 > newest.episodes

    wait_for(checkpoint_and_later_rows)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    (run,) = run_folders(tmp_path / "logs")
    checkpoint = latest_checkpoint(run)
    rows_at_kill = read_csv(run / "training_stats.csv")
    monitor_at_kill = (run / "0.monitor.csv").read_bytes()

    result = run_cli("resume", str(run), "-n", "300", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    side = run / f"training_stats.after_episode_{checkpoint.episodes}.csv"
    moved = read_csv(side)
    assert moved[0] == rows_at_kill[0]
    assert moved[1:] == rows_at_kill[checkpoint.episodes + 1 :]
    rows = read_csv(run / "training_stats.csv")
    assert_one_run(rows)
    assert rows[: checkpoint.episodes + 1] == rows_at_kill[: checkpoint.episodes + 1]
    assert DQN.load(run / f"{ENV_ID}.zip", device="cpu").num_timesteps == checkpoint.num_timesteps + 300

    # Monitor's file rolled back with the checkpoint: its games up to the checkpoint, then the resumed run's, one
    # header; the games after the checkpoint moved aside (with the header), where load_results does not look.
    size = checkpoint.state.monitor_files["0.monitor.csv"]
    header = b"".join(monitor_at_kill.splitlines(keepends=True)[:2])
    monitor_side = run / f"0.monitor.after_step_{checkpoint.num_timesteps}.csv"
    assert monitor_side.read_bytes() == header + monitor_at_kill[size:]
    monitor = (run / "0.monitor.csv").read_bytes()
    assert monitor.startswith(monitor_at_kill[:size])
    lines = monitor.splitlines()
    assert lines[:2] == header.splitlines() and sum(line.startswith(b"#") for line in lines) == 1
    assert lines.count(b"r,l,t") == 1
    games = [float(line.split(b",")[0]) for line in lines[2:]]
    assert len(monitor_at_kill[:size].splitlines()) - 2 == checkpoint.episodes
    assert games == [float(row[1]) for row in rows[1:]], "the Monitor's games are the CSV's"
    assert f"moved from 0.monitor.csv to {monitor_side.name}" in result.stdout


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A run of 700 steps with a checkpoint every 2 games (2 or 3 of them), the newest 3 kept."""
    folder = tmp_path_factory.mktemp("finished")
    conf = small_run_config(folder)
    result = run_cli("train", "--conf-file", str(conf), "-f", "logs", "-n", "700", cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = run_folders(folder / "logs")
    assert len(find_checkpoints(run)) >= 2
    return run


def copy_run(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "logs" / "dqn" / run.name
    shutil.copytree(run, copy)
    return copy


def flip_a_byte_in_the_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55
    path.write_bytes(bytes(data))


def test_a_corrupt_replay_buffer_makes_resume_fall_back_to_the_previous_checkpoint(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path)
    newest, previous = find_checkpoints(run)[:2]
    flip_a_byte_in_the_middle(newest / "replay_buffer.zst")  # same size: only its checksum tells
    result = run_cli("resume", str(run), "-n", "8", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"skipping checkpoint {newest.name}: " in result.stderr
    assert "replay_buffer.zst is corrupt (its SHA-256 is not the one written)" in result.stderr
    assert "Traceback" not in result.stderr
    assert f"from {previous.name}: " in result.stdout
    resumed = DQN.load(run / f"{ENV_ID}.zip", device="cpu")
    assert resumed.num_timesteps == int(previous.name.split("_")[1]) + 8

    for folder in find_checkpoints(run):
        if folder != newest:  # flipped already
            flip_a_byte_in_the_middle(folder / "replay_buffer.zst")
    result = run_cli("resume", str(run), "-n", "8", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("breakout-sb3: error: cannot resume ")
    assert "no complete checkpoint" in result.stderr and "Traceback" not in result.stderr


def test_a_checkpoint_of_format_1_still_resumes(finished_run, tmp_path):
    """Format 1: SB3's pickle as replay_buffer.pkl, which rl-zoo3 loads beside the zip, and no Monitor sizes."""
    run = copy_run(finished_run, tmp_path)
    newest = find_checkpoints(run)[0]
    replay = read_replay_buffer(newest / "replay_buffer.zst")
    with open(newest / "replay_buffer.pkl", "wb") as f:
        pickle.dump(replay, f)
    (newest / "replay_buffer.zst").unlink()
    state = json.loads((newest / "state.json").read_text())
    state["format"] = 1
    del state["monitor_files"], state["files"]["replay_buffer.zst"]
    state["files"]["replay_buffer.pkl"] = (newest / "replay_buffer.pkl").stat().st_size
    (newest / "state.json").write_text(json.dumps(state))
    assert latest_checkpoint(run).path == newest

    result = run_cli("resume", str(run), "-n", "8", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"from {newest.name}: " in result.stdout
    assert "Loading replay buffer" in result.stdout  # rl-zoo3's own loading of replay_buffer.pkl
    assert f"{newest.name} (format 1) has no Monitor file sizes: not rolled back" in result.stdout
    assert DQN.load(run / f"{ENV_ID}.zip", device="cpu").num_timesteps == state["num_timesteps"] + 8


def test_resume_without_replay_refills_it_first(tmp_path):
    conf = small_run_config(tmp_path)
    args = ["train", "--conf-file", str(conf), "-f", "logs", "-n", "700", "--checkpoint-without-replay"]
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = run_folders(tmp_path / "logs")
    checkpoint = latest_checkpoint(run)
    assert not checkpoint.has_replay_buffer
    result = run_cli("resume", str(run), "-n", "200", "--refill-steps", "100", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no replay buffer: refilling 100 transitions" in result.stdout
    assert "Replay buffer refilled (100 transitions): training resumes at step" in result.stdout
    resumed = DQN.load(run / f"{ENV_ID}.zip", device="cpu")
    before = DQN.load(checkpoint.model_path, device="cpu")
    # 200 steps in rollouts of 4: no update until the replay holds 100 transitions, then one per rollout
    # (after the 25th rollout, the one that completed the refill, through the 50th).
    assert resumed._n_updates == before._n_updates + 26


def test_resume_without_n_continues_to_the_original_total(tmp_path):
    process = start_training(tmp_path, "-n", "1200")
    wait_for(lambda: run_folders(tmp_path / "logs") and find_checkpoints(run_folders(tmp_path / "logs")[0]))
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    (run,) = run_folders(tmp_path / "logs")
    checkpoint = latest_checkpoint(run)
    assert checkpoint.num_timesteps < 1200
    result = run_cli("resume", str(run), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{1200 - checkpoint.num_timesteps} more steps" in result.stdout
    assert DQN.load(run / f"{ENV_ID}.zip", device="cpu").num_timesteps == 1200


def test_resume_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "empty_run").mkdir()
    (tmp_path / "empty_run" / "resume.json").write_text('{"format": 1, "argv": [], "checkpoint_options": {}}')
    cases = [
        (["resume", str(tmp_path / "nowhere")], "no run folder"),
        (["resume", str(tmp_path)], "no resume.json"),
        (["resume", str(tmp_path / "empty_run")], "no complete checkpoint"),
    ]
    for args, message in cases:
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("breakout-sb3: error: cannot resume") and message in err
        assert len(err.splitlines()) == 1


def test_same_seed_gives_identical_csv_rows_apart_from_time(tmp_path):
    conf = small_run_config(tmp_path)
    rows = []
    commands = [["train", "--conf-file", str(conf), "-f", name, "-n", "800"] for name in ("a", "b")]
    for name, result in zip(("a", "b"), run_clis_at_once(*commands, cwd=tmp_path), strict=True):
        assert result.returncode == 0, result.stderr[-3000:]
        (run,) = run_folders(tmp_path / name)
        body = read_csv(run / "training_stats.csv")[1:]
        rows.append([[v for i, v in enumerate(r) if i not in (5, 8)] for r in body])  # not Frame Rate, Training Time
    assert len(rows[0]) >= 3
    assert rows[0] == rows[1]


def test_a_non_finite_loss_through_the_cli_is_one_line_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, capsys):
    config = small_run_config(tmp_path, save_freq_episodes=1)
    text = config.read_text().replace(
        "- callbacks.NonFiniteLossCallback",
        "- callbacks.NonFiniteLossCallback\n  - tests.test_stop_and_checkpoint.PoisonWeights:\n      step: 500",
    )
    config.write_text(text)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--conf-file", str(config), "-f", "logs", "-n", "2000"]) == 2
    err = capsys.readouterr().err.strip()
    (run,) = run_folders(tmp_path / "logs")
    last = latest_checkpoint(run)
    assert len(err.splitlines()) == 1
    assert err.startswith("breakout-sb3: error: non-finite loss (nan) at step ")
    assert f"the last good checkpoint, {last.path.relative_to(tmp_path)}, is kept" in err
    assert last.num_timesteps < 500
    assert not (run / f"{ENV_ID}.zip").exists(), "no final model with NaN weights"


def test_refill_target_is_capped_by_what_the_replay_can_hold():
    from breakout_sb3.refill import refill_target
    from tests.conftest import breakout_env, small_breakout_dqn

    env = breakout_env(n_envs=4)
    model = small_breakout_dqn(env, buffer_size=1_000)  # 250 slots for each of the 4 envs
    assert refill_target(model, 50_000) == 1_000
    assert refill_target(model, 400) == 400
    env.close()
