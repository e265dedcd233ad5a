"""
rl-zoo3's own scripts, as the README lists them, on the README's smoke run: enjoy and record_video run as written
(no display needed); plot_train, which shows a window, draws its points with the README's flags.
"""

from __future__ import annotations

import re
import subprocess
import sys

from breakout_sb3 import ENV_ID
from tests.conftest import REPO, docs_environment, readme_section, run_documented, sh_lines


def zoo_script_lines(lines: list[str]) -> dict[str, str]:
    """:return: the lines running an rl-zoo3 script (``python -m rl_zoo3.<script>``), by script"""
    found = {}
    for line in lines:
        match = re.match(r"python -m rl_zoo3\.(?:plots\.)?(\w+) ", line)
        if match:
            found[match.group(1)] = line.split("#", 1)[0].strip()
    return found


def readme_lines() -> dict[str, str]:
    return zoo_script_lines(sh_lines(readme_section("Everyday commands")))


def test_the_readme_and_the_docs_list_the_same_rl_zoo3_scripts():
    text = (REPO / "docs" / "evaluate-and-watch.md").read_text()
    docs = zoo_script_lines(sh_lines(text.split("\n## rl-zoo3's own scripts\n", 1)[1]))
    assert docs == readme_lines()
    assert set(docs) == {"enjoy", "record_video", "plot_train"}


def test_enjoy_prints_each_games_score(smoke_run):
    folder, _ = smoke_run
    result = run_documented(readme_lines()["enjoy"], folder)
    assert f"Loading logs/dqn/{ENV_ID}_1/{ENV_ID}.zip" in result.stdout
    assert len(re.findall(r"Atari Episode Score: \d+", result.stdout)) >= 2  # at least two whole games


def test_record_video_writes_an_mp4(smoke_run):
    folder, _ = smoke_run
    run_documented(readme_lines()["record_video"], folder)
    (video,) = (folder / "videos").glob("*.mp4")
    assert video.stat().st_size > 10_000


PLOT_TRAIN = """
import sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
plt.show = lambda: print("points", sum(len(line.get_xdata()) for line in plt.gca().get_lines()))
from rl_zoo3.plots.plot_train import plot_train
sys.argv = ["plot_train", *sys.argv[1:]]
plot_train()
"""


def test_plot_train_draws_the_running_mean_of_the_runs_games(smoke_run):
    folder, _ = smoke_run
    args = readme_lines()["plot_train"].split()[3:]  # after `python -m rl_zoo3.plots.plot_train`
    window = int(args[args.index("-w") + 1])
    result = subprocess.run(
        [sys.executable, "-c", PLOT_TRAIN, *args],
        cwd=folder,
        env=docs_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    games = len((folder / "logs" / "dqn" / f"{ENV_ID}_1" / "0.monitor.csv").read_text().splitlines()) - 2
    assert games > window
    assert f"points {games - window + 1}" in result.stdout  # the mean of each run of `window` games
