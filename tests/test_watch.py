"""record (mp4 of full games), plot (PNG learning curve), TensorBoard scalars and the progress bar."""

from __future__ import annotations

import shutil
import struct

import imageio_ffmpeg
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from breakout_sb3.cli import main
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
    assert png_size(out) == (1000, 500)


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
    args = ["train", "--conf-file", str(conf), "-f", "logs", "-n", "800", "--tensorboard-log", "tb", "--progress"]
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (events,) = (tmp_path / "tb").rglob("events.out.tfevents.*")
    scalars = EventAccumulator(str(events)).Reload().Tags()["scalars"]
    for tag in ("breakout/score", "breakout/running_score", "breakout/epsilon", "rollout/exploration_rate"):
        assert tag in scalars
    assert any(tag.startswith("train/") for tag in scalars)
    assert run_folders(tmp_path / "logs")
