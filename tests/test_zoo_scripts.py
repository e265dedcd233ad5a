"""rl-zoo3's own scripts work on a breakout-sb3 run folder: enjoy, record_video, plots.plot_train."""

from __future__ import annotations

import subprocess
import sys

from breakout_sb3 import ENV_ID
from tests.conftest import run_cli


def zoo_args(run) -> list[str]:
    """``--algo dqn --env ... -f logs/ --exp-id N`` for a run folder ``logs/dqn/<env>_<N>``."""
    exp_id = run.name.rsplit("_", 1)[1]
    return ["--algo", "dqn", "--env", ENV_ID, "-f", str(run.parent.parent), "--exp-id", exp_id]


def test_rl_zoo3_enjoy_plays_a_run(trained_run, tmp_path):
    result = run_cli(*zoo_args(trained_run), "-n", "300", "--no-render", cwd=tmp_path, module="rl_zoo3.enjoy")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Loading {trained_run / ENV_ID}.zip" in result.stdout
    assert "Atari Episode Score" in result.stdout  # it played at least one whole game


def test_rl_zoo3_record_video_records_a_run(trained_run, tmp_path):
    out = tmp_path / "videos"
    args = [*zoo_args(trained_run), "-n", "60", "-o", str(out)]
    result = run_cli(*args, cwd=tmp_path, module="rl_zoo3.record_video")
    assert result.returncode == 0, result.stderr[-3000:]
    (video,) = out.glob("*.mp4")
    assert video.stat().st_size > 1000


PLOT_TRAIN = """
import sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
plt.show = lambda: None
from rl_zoo3.plots.plot_train import plot_train
sys.argv = ["plot_train", *sys.argv[1:]]
plot_train()
print("points", sum(len(line.get_xdata()) for line in plt.gca().get_lines()))
"""


def test_rl_zoo3_plot_train_draws_the_runs_monitor_file(trained_run, tmp_path):
    args = ["--algo", "dqn", "--env", ENV_ID, "-f", str(trained_run.parent.parent), "-x", "steps", "-w", "1"]
    result = subprocess.run(
        [sys.executable, "-c", PLOT_TRAIN, *args], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    games = len((trained_run / "0.monitor.csv").read_text().splitlines()) - 2
    assert games >= 1
    assert f"points {games}" in result.stdout
