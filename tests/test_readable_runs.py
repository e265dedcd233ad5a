"""
A run never loses its data: a crashed run's files stay readable (a torn last line is skipped with a note), and
evaluate, record and plot check where they write before any work, then write atomically.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from breakout_sb3 import ENV_ID
from breakout_sb3.cli import main
from breakout_sb3.errors import BreakoutSB3Error
from breakout_sb3.evaluate import evaluate
from breakout_sb3.plot import Curve, draw, plot, read_curve, running_reward_scale
from callbacks import CSV_HEADER, CSVStatsCallback
from callbacks.atomic import atomic_path
from tests.conftest import run_folders
from tests.test_zoo_scripts import PLOT_TRAIN

NOTE = "skipped an incomplete last line (a run that was killed while writing it)"


@pytest.fixture
def run(trained_run, tmp_path) -> Path:
    """A copy of the trained run (without its checkpoints), as ``logs/dqn/<env>_1``, to tear and break."""
    copy = tmp_path / "logs" / "dqn" / f"{ENV_ID}_1"
    shutil.copytree(trained_run, copy, ignore=shutil.ignore_patterns("checkpoints"))
    return copy


def line_count(path: Path) -> int:
    return len(path.read_bytes().splitlines())


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("breakout-sb3: error: ") and len(err.splitlines()) == 1, err
    return err


def plot_train(log_folder: Path, cwd: Path) -> subprocess.CompletedProcess:
    """rl-zoo3's plot_train over ``log_folder``, as tests/test_zoo_scripts.py runs it."""
    args = ["--algo", "dqn", "--env", ENV_ID, "-f", str(log_folder), "-x", "steps", "-w", "1"]
    return subprocess.run(
        [sys.executable, "-c", PLOT_TRAIN, *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


# --- crashed runs stay readable ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "torn",
    [
        "97,1,1.0000",  # cut in the middle of a number
        "97,1,1.000000,0.1900,2950,70.1,730,0.1900,4",  # every field, cut in the last number: no line end
        "97,1,1.000000,0.1900\r\n",  # fewer fields than the header
    ],
)
def test_plot_skips_a_torn_last_line_of_training_stats_with_a_note(run, tmp_path, capsys, torn):
    stats = run / "training_stats.csv"
    rows = line_count(stats) - 1
    with open(stats, "a", newline="") as f:
        f.write(torn)
    out = tmp_path / "curve.png"
    assert main(["plot", str(run), "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    err = capsys.readouterr().err
    assert f"note: {stats} line {rows + 2}: {NOTE}" in err
    assert len(read_curve(run).steps) == rows


def test_plot_and_rl_zoo3_plot_train_read_a_torn_monitor_file(run, tmp_path, capsys):
    monitor = run / "0.monitor.csv"
    games = line_count(monitor) - 2
    with open(monitor, "a", newline="") as f:
        f.write("2.0,41")  # a game's row cut after its score, in its length
    out = tmp_path / "curve.png"
    assert main(["plot", str(run), "--out", str(out)]) == 0
    assert f"note: {monitor} line {games + 3}: {NOTE}" in capsys.readouterr().err
    assert len(read_curve(run).game_scores) == games
    result = plot_train(run.parent.parent, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]


def test_a_run_killed_with_kill_9_has_no_torn_line_and_stays_readable(tmp_path, capsys):
    """Each row of training_stats.csv and of the Monitor file is one write: a killed process cannot tear one."""
    process = subprocess.Popen(
        [sys.executable, "-m", "breakout_sb3", "train", "-n", "100000", "-params", "buffer_size:500",
         "-f", "logs", "--no-progress", "--num-threads", "1"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            folders = run_folders(tmp_path / "logs") if (tmp_path / "logs").exists() else []
            monitor = folders[0] / "0.monitor.csv" if folders else None
            if monitor is not None and monitor.is_file() and line_count(monitor) >= 4:  # 2 games
                break
            time.sleep(0.05)
        else:
            pytest.fail("no two games recorded in 120 s")
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    (folder,) = run_folders(tmp_path / "logs")
    for name in ("training_stats.csv", "0.monitor.csv"):
        assert (folder / name).read_bytes().endswith(b"\n"), name
    assert main(["plot", str(folder), "--out", str(tmp_path / "curve.png")]) == 0
    assert NOTE not in capsys.readouterr().err
    games = line_count(folder / "0.monitor.csv") - 2
    result = plot_train(tmp_path / "logs", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"points {games}" in result.stdout


@pytest.mark.parametrize(
    ("file", "line", "message"),
    [
        ("training_stats.csv", "12,abc\r\n", "malformed row (2 fields, the header has 9)"),
        ("training_stats.csv", "3,0,1.0,0.0,x,70.0,5,0.0,1.0\r\n", "malformed row (Total Frames is 'x', not a number)"),
        ("training_stats.csv", "\r\n", "malformed row (0 fields, the header has 9)"),
        ("0.monitor.csv", "1.0,oops,3.5\r\n", "malformed row (l is 'oops', not a number)"),
    ],
)
def test_a_malformed_line_before_the_last_is_an_error_naming_file_and_line(run, tmp_path, capsys, file, line, message):
    path = run / file
    lines = path.read_bytes().splitlines(keepends=True)
    lines.insert(3, line.encode())  # line 4, with whole rows after it
    path.write_bytes(b"".join(lines))
    out = tmp_path / "curve.png"
    assert main(["plot", str(run), "--out", str(out)]) == 2
    assert f"{path} line 4: {message}" in one_line_error(capsys)
    assert not out.exists()


def test_evaluate_plays_a_run_whose_files_are_torn(run, tmp_path, capsys):
    with open(run / "training_stats.csv", "a", newline="") as f:
        f.write("97,1,1.00")
    with open(run / "0.monitor.csv", "a", newline="") as f:
        f.write("2.0,41")
    assert main(["evaluate", str(run), "--episodes", "1", "--device", "cpu"]) == 0
    assert "score " in capsys.readouterr().out


def test_resuming_a_csv_with_a_torn_last_line_cuts_it_before_appending(tmp_path, capsys):
    path = tmp_path / "training_stats.csv"
    rows = [",".join(CSV_HEADER), "1,0,1.000000,0.0000,23,70.0,0,0.0000,0.3"]
    rows.append("2,1,1.000000,0.5000,46,70.0,3,0.5000,0.6")
    whole = "".join(row + "\r\n" for row in rows).encode()
    for torn in (b"9", b"3,0,1.000000\r\n"):
        path.write_bytes(whole + torn)
        callback = CSVStatsCallback(log_dir=str(tmp_path))
        assert [row[0] for row in callback._read_rows()] == ["1", "2"]
        assert path.read_bytes() == whole  # the next row starts on a line of its own, not as episode 93
        assert f"{path} line 4: cut an incomplete last line {torn!r}" in capsys.readouterr().err


# --- outputs checked before the work, written atomically ---------------------------------------------------------


def bad_outputs(tmp_path: Path, name: str) -> list[tuple[Path, str]]:
    """Places a file cannot be written, with what the error says: a missing folder, a folder, a read-only folder."""
    (tmp_path / f"folder{Path(name).suffix}").mkdir()
    cases = [(tmp_path / "missing" / name, "no folder"), (tmp_path / f"folder{Path(name).suffix}", "is a folder")]
    if os.geteuid() != 0:  # root writes in a 0o500 folder all the same
        read_only = tmp_path / "read_only"
        read_only.mkdir(mode=0o500)
        cases.append((read_only / name, "cannot write in"))
    return cases


@pytest.mark.parametrize("command", ["evaluate", "record", "plot"])
def test_an_output_that_cannot_be_written_is_refused_before_any_work(trained_run, tmp_path, capsys, command):
    name = {"evaluate": "e.json", "record": "game.mp4", "plot": "curve.png"}[command]
    flag = "--json" if command == "evaluate" else "--out"
    for out, message in bad_outputs(tmp_path, name):
        started = time.monotonic()
        # plot gets a run that does not exist: the output is checked before any run is read
        target = str(tmp_path / "no_run") if command == "plot" else str(trained_run)
        args = [command, target, flag, str(out)] + ([] if command == "plot" else ["--device", "cpu"])
        assert main(args) == 2
        assert time.monotonic() - started < 5, "nothing played"
        err = one_line_error(capsys)
        assert f"{flag} {out}" in err and message in err
        assert "score" not in capsys.readouterr().out
    assert not list(tmp_path.rglob(".*.probe")) and not list(tmp_path.rglob(".record-*"))


def test_plot_refuses_an_output_it_cannot_draw_in(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "no_run"), "--out", str(tmp_path / "curve.txt")]) == 2
    assert "--out must name an image file (.png, .svg, .pdf" in one_line_error(capsys)


def test_atomic_path_leaves_the_old_file_and_no_temporary_file_on_failure(tmp_path):
    target = tmp_path / "curve.png"
    target.write_bytes(b"old")
    with pytest.raises(OSError), atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png"
        tmp.write_bytes(b"half a new fi")
        raise OSError("disk full")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.png"]
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.png"]


def test_plot_that_fails_while_saving_leaves_the_old_image_and_no_temporary_file(run, tmp_path, monkeypatch):
    out = tmp_path / "images" / "curve.png"
    out.parent.mkdir()
    out.write_bytes(b"old image")

    def failing_savefig(self, fname, **kwargs):
        Path(fname).write_bytes(b"\x89PNG half")
        raise OSError("No space left on device")

    monkeypatch.setattr(Figure, "savefig", failing_savefig)
    with pytest.raises(OSError):
        plot([run], out=out)
    assert out.read_bytes() == b"old image"
    assert [p.name for p in out.parent.iterdir()] == ["curve.png"]


def test_evaluate_reports_the_scores_before_writing_and_keeps_them_if_writing_fails(trained_run, tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    reported = []

    def report(result):
        reported.append(result.summary())
        shutil.rmtree(folder)  # the folder goes away while the games are played

    with pytest.raises(BreakoutSB3Error, match=r"--json .*e\.json: cannot write .*; scores \d+"):
        evaluate(trained_run, ENV_ID, episodes=1, device="cpu", json_path=folder / "e.json", report=report)
    assert len(reported) == 1 and "score " in reported[0]


# --- the plot a user looks at early -------------------------------------------------------------------------------


def curve(steps: int, running_end: float, episodes: int = 400) -> Curve:
    """A synthetic run: running reward from 0.2 to ``running_end`` and epsilon from 1.0 to 0.1 over ``steps``."""
    x = np.linspace(10, steps, episodes)
    running = np.linspace(0.2, running_end, episodes)
    epsilon = np.clip(1.0 - 0.9 * x / min(steps, 1_000_000), 0.1, 1.0)
    return Curve(
        label="run", steps=list(x.astype(int)), scores=list(np.round(running)), running=list(running),
        epsilon=list(epsilon),
    )  # fmt: skip


def test_the_running_reward_panel_is_scaled_to_early_data_not_to_the_threshold():
    early = running_reward_scale([np.array([0.0, 0.2, 0.3])], [np.array([0.0, 1.0, 2.0])], threshold=40)
    assert not early.threshold_line and early.top < 3
    near = running_reward_scale([np.array([0.0, 25.0])], [], threshold=40)
    assert near.threshold_line and near.top > 40
    far_and_none = running_reward_scale([np.array([0.0, 15.0])], [], threshold=None)
    assert not far_and_none.threshold_line and far_and_none.top < 20
    nothing_scored_yet = running_reward_scale([np.zeros(50)], [np.zeros(50)], threshold=40)
    assert not nothing_scored_yet.threshold_line and 1 <= nothing_scored_yet.top < 2


@pytest.mark.parametrize(("steps", "running_end"), [(3_000, 0.3), (2_000_000, 45.0)])
def test_the_drawn_figure_keeps_the_data_epsilon_and_legend_in_sight(steps, running_end):
    fig = draw([curve(steps, running_end)], [], threshold=40)
    _, tutorial_ax, eps_ax = fig.axes
    top = tutorial_ax.get_ylim()[1]
    threshold_lines = [line for line in tutorial_ax.get_lines() if list(line.get_ydata()) == [40, 40]]
    (legend,) = fig.legends
    labels = [text.get_text() for text in legend.get_texts()]
    if running_end < 1:
        assert top < 2 and not threshold_lines, "early data fills its panel"
        assert "stop threshold 40: above this panel" in labels
    else:
        assert 45 <= top < 60 and len(threshold_lines) == 1
        assert "stop threshold (40)" in labels
    assert eps_ax.get_ylim() == (0, 1.05) and "epsilon (right axis)" in labels
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend_box = legend.get_window_extent(renderer)
    for ax in fig.axes:
        assert not legend_box.overlaps(ax.get_window_extent(renderer)), "the legend is off the data"
