"""record (mp4 of full games), plot (PNG learning curves), TensorBoard scalars and the progress bar."""

from __future__ import annotations

import csv
import shutil
import struct

import imageio_ffmpeg
import matplotlib.pyplot as plt
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from breakout_sb3.cli import main
from breakout_sb3.plot import _mean_band, read_curve
from tests.conftest import run_cli, run_folders, write_config


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_record_writes_a_playable_mp4_of_full_games_in_colour(trained_run, tmp_path):
    out = tmp_path / "game.mp4"
    result = run_cli("record", str(trained_run), "--episodes", "2", "--out", str(out), "--seed", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "game 1: score" in result.stdout and "game 2: score" in result.stdout
    reader = imageio_ffmpeg.read_frames(str(out))
    meta = next(reader)
    assert tuple(meta["size"]) == (160, 210)  # the original Atari frame, width x height
    assert meta["fps"] == 15  # 60 Hz at frame skip 4: real time
    frames = [frame for frame in reader]
    assert len(frames) > 100
    pixels = bytes(frames[len(frames) // 2])
    assert len(pixels) == 160 * 210 * 3
    rgb = [pixels[i : i + 3] for i in range(0, len(pixels), 3)]
    assert any(p[0] != p[1] or p[1] != p[2] for p in rgb), "colour frames, not grey"
    assert not list(tmp_path.glob(".record-*")), "no temporary folder left behind"


def test_plot_draws_one_or_several_runs(trained_run, tmp_path):
    other = tmp_path / "other.csv"
    shutil.copyfile(trained_run / "training_stats.csv", other)
    out = tmp_path / "curve.png"
    result = run_cli("plot", str(trained_run), str(other), "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert png_size(out) == (1000, 800)
    means = tmp_path / "means.png"
    result = run_cli("plot", "--mean", str(trained_run), str(other), "--out", str(means), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert png_size(means) == (1000, 800)


def test_plot_reads_the_game_score_from_monitor_and_the_running_reward_from_the_csv(trained_run):
    curve = read_curve(trained_run)
    with open(trained_run / "0.monitor.csv", newline="") as f:
        games = list(csv.reader(f))[2:]
    with open(trained_run / "training_stats.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    assert len(games) >= 2 and len(rows) >= 5 * len(games)  # the CSV counts lives, Monitor whole games
    assert list(curve.game_scores) == [float(game[0]) for game in games]
    assert curve.running == [float(row[7]) for row in rows]
    # Games end in order, before the run's last step, a little after the lives that end them
    assert list(curve.game_steps) == sorted(curve.game_steps)
    assert 0 < curve.game_steps[-1] <= curve.steps[-1]
    assert curve.game_running[-1] == pytest.approx(np.mean(curve.game_scores[-100:]))


def test_plot_draws_the_mean_of_a_group_with_a_standard_error_band():
    fig, ax = plt.subplots()
    steps = np.array([0.0, 100.0])
    _mean_band(ax, [(steps, np.array([0.0, 2.0])), (steps, np.array([0.0, 4.0]))], "C0", "seeds")
    (line,) = ax.get_lines()
    assert line.get_ydata()[-1] == pytest.approx(3.0)  # the mean at the last step
    (band,) = ax.collections
    top = band.get_paths()[0].vertices[:, 1].max()
    assert top == pytest.approx(3.0 + np.std([2.0, 4.0], ddof=1) / np.sqrt(2))
    plt.close(fig)


def test_plot_refuses_what_is_not_a_training_csv(tmp_path, capsys):
    (tmp_path / "monitor.csv").write_text("r,l,t\n1,2,3\n")
    (tmp_path / "header_only.csv").write_text(
        "Episode,Total Reward,Epsilon,Avg Reward (Last 100),Total Frames,Frame Rate,Model Updates,Running Reward,"
        "Training Time\n"
    )
    cases = [
        ("monitor.csv", "not a breakout-sb3 training CSV"),
        ("header_only.csv", "has no episodes yet"),
        ("missing_run", "no training_stats.csv"),
    ]
    for name, message in cases:
        assert main(["plot", str(tmp_path / name), "--out", str(tmp_path / "x.png")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("breakout-sb3: error: ") and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_tensorboard_gets_the_csv_figures_beside_sb3s(tmp_path):
    conf = write_config(tmp_path, buffer_size=500)
    args = ["train", "--conf-file", str(conf), "-f", "logs", "-n", "500", "--tensorboard-log", "tb"]
    args += ["--log-interval", "4"]  # SB3 writes the scalars at its log dumps
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "500/500" in result.stdout and "it/s" in result.stdout, "the progress bar, shown by default"
    (events,) = (tmp_path / "tb").rglob("events.out.tfevents.*")
    scalars = EventAccumulator(str(events)).Reload().Tags()["scalars"]
    tags = ("breakout/score", "breakout/running_score", "breakout/epsilon", "rollout/exploration_rate")
    for tag in (*tags, "breakout/game_score", "breakout/game_running_score"):
        assert tag in scalars
    assert any(tag.startswith("train/") for tag in scalars)
    assert run_folders(tmp_path / "logs")
