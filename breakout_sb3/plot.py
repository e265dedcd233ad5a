"""
Learning curves of runs: the game score from SB3's Monitor files and the tutorial's running reward from
training_stats.csv, against agent steps; several runs overlaid, or several runs of one configuration as their mean.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
import yaml

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt

from breakout_sb3.config import atari_wrapper_kwargs
from breakout_sb3.errors import BreakoutSB3Error
from callbacks.csv_stats import CSV_HEADER

FIGURE_SIZE = (10, 8)  # inches
DPI = 100
GAME_WINDOW = 100  # games in the game score's running mean, as the CSV's 100 episodes
GRID_POINTS = 200  # where the runs of a --mean group are compared


@dataclass
class Curve:
    """One run: the CSV's rows (the tutorial's accounting) and, if the run has Monitor files, its games."""

    label: str
    steps: list[int]
    scores: list[float]
    running: list[float]
    epsilon: list[float]
    game_steps: np.ndarray = field(default_factory=lambda: np.zeros(0))
    game_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def game_running(self) -> np.ndarray:
        """Mean game score of the last ``GAME_WINDOW`` games, at each game."""
        sums = np.cumsum(np.concatenate([[0.0], self.game_scores]))
        ends = np.arange(1, len(self.game_scores) + 1)
        starts = np.maximum(0, ends - GAME_WINDOW)
        return (sums[ends] - sums[starts]) / (ends - starts)


def read_curve(path: str | Path) -> Curve:
    """:param path: a run folder (its ``training_stats.csv`` and ``*.monitor.csv``), or a ``training_stats.csv``"""
    path = Path(path)
    csv_path = path / "training_stats.csv" if path.is_dir() else path
    if not csv_path.is_file():
        raise BreakoutSB3Error(f"no training_stats.csv at {path}")
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or tuple(rows[0]) != CSV_HEADER:
        raise BreakoutSB3Error(f"{csv_path} is not a breakout-sb3 training CSV (unexpected header)")
    if len(rows) < 2:
        raise BreakoutSB3Error(f"{csv_path} has no episodes yet")
    index = {name: i for i, name in enumerate(CSV_HEADER)}
    try:
        curve = Curve(
            label=str(path.name if path.is_dir() else csv_path.parent.name),
            steps=[int(r[index["Total Frames"]]) for r in rows[1:]],
            scores=[float(r[index["Total Reward"]]) for r in rows[1:]],
            running=[float(r[index["Running Reward"]]) for r in rows[1:]],
            epsilon=[float(r[index["Epsilon"]]) if r[index["Epsilon"]] else float("nan") for r in rows[1:]],
        )
    except (ValueError, IndexError) as e:
        raise BreakoutSB3Error(f"{csv_path}: malformed row ({e})") from None
    if path.is_dir():
        curve.game_steps, curve.game_scores = read_games(path)
        if len(curve.game_steps) and curve.game_steps[-1] > curve.steps[-1]:
            # The unseen steps of AtariWrapper's resets count in Monitor's lengths: no game ends after the CSV's
            # last step, so the estimate is scaled back to it.
            curve.game_steps = curve.game_steps * (curve.steps[-1] / curve.game_steps[-1])
    return curve


def read_games(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """
    The games SB3's Monitor files (``*.monitor.csv``) of a run record, with the agent step at which each ended.

    Monitor counts emulator frames in its ``l`` column; a game ends at the sum of the lengths of the games before it
    and its own, over the frame skip (AtariWrapper's no-op, FIRE and post-life-loss frames count too, which the
    agent never acts on, so this runs a few percent ahead of the true step: :func:`read_curve` scales it back to the
    CSV's last step). Envs step together, so with one file per env the step count is that times the number of
    files.

    :return: steps and raw scores of the games, in the order they ended
    """
    files = sorted(run_dir.glob("*.monitor.csv"))
    if not files:
        return np.zeros(0), np.zeros(0)
    frame_skip = _frame_skip(run_dir)
    steps, scores = [], []
    for file in files:
        with open(file, newline="") as f:
            rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
        try:
            lengths = np.array([float(row["l"]) for row in rows])
            scores.append(np.array([float(row["r"]) for row in rows]))
        except (KeyError, TypeError, ValueError) as e:
            raise BreakoutSB3Error(f"{file}: malformed Monitor row ({e})") from None
        steps.append(np.cumsum(lengths) / frame_skip * len(files))
    game_steps = np.concatenate(steps)
    order = np.argsort(game_steps, kind="stable")
    return game_steps[order], np.concatenate(scores)[order]


def _frame_skip(run_dir: Path) -> int:
    """:return: the run's AtariWrapper frame skip, from rl-zoo3's saved config (4, AtariWrapper's default, if none)"""
    for config in run_dir.glob("*/config.yml"):
        try:
            saved = yaml.load(config.read_text(), Loader=yaml.UnsafeLoader)  # rl-zoo3 writes an OrderedDict
            hyperparams = dict(saved)
        except (yaml.YAMLError, TypeError, ValueError):
            continue
        return int(atari_wrapper_kwargs(hyperparams.get("env_wrapper")).get("frame_skip", 4))
    return 4


def plot(
    paths: list[str | Path],
    out: str | Path = "curve.png",
    threshold: float | None = 40.0,
    mean_groups: list[list[str | Path]] | None = None,
) -> Path:
    """
    Draw, against agent steps: on top the game score (Monitor's raw score of whole games: points per game, line the
    mean of the last 100 games), below the tutorial's running reward (the CSV's ``Running Reward``, which the stop
    rule judges) with the stop threshold and epsilon (dotted, right axis). Each run of ``paths`` is one line; each
    group of ``mean_groups`` (several runs of one configuration, e.g. seeds) is drawn as the mean over its runs with
    a band of plus or minus one standard error. Writes a 1000x800 PNG.
    """
    curves = [read_curve(p) for p in paths]
    groups = [[read_curve(p) for p in group] for group in mean_groups or []]
    if not curves and not groups:
        raise BreakoutSB3Error("nothing to plot: give run folders, or --mean RUN RUN ...")
    out = Path(out)
    if not out.parent.is_dir():
        raise BreakoutSB3Error(f"--out: no folder {out.parent}")
    fig, (game_ax, tutorial_ax) = plt.subplots(2, 1, figsize=FIGURE_SIZE, dpi=DPI, sharex=True)
    eps_ax = tutorial_ax.twinx()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, curve in enumerate(curves):
        color = colors[i % len(colors)]
        if len(curve.game_scores):
            game_ax.scatter(curve.game_steps, curve.game_scores, s=4, alpha=0.25, color=color, linewidths=0)
            game_ax.plot(curve.game_steps, curve.game_running, color=color, linewidth=2, label=curve.label)
        tutorial_ax.scatter(curve.steps, curve.scores, s=3, alpha=0.15, color=color, linewidths=0)
        tutorial_ax.plot(curve.steps, curve.running, color=color, linewidth=2, label=curve.label)
        eps_ax.plot(curve.steps, curve.epsilon, color=color, linewidth=1, linestyle=":")
    for j, group in enumerate(groups):
        color = colors[(len(curves) + j) % len(colors)]
        label = f"{group[0].label} ... : mean of {len(group)} runs ± standard error"
        runs_with_games = [c for c in group if len(c.game_scores)]
        if runs_with_games:
            _mean_band(game_ax, [(c.game_steps, c.game_running) for c in runs_with_games], color, label)
        _mean_band(tutorial_ax, [(np.array(c.steps), np.array(c.running)) for c in group], color, label)
        eps_ax.plot(group[0].steps, group[0].epsilon, color=color, linewidth=1, linestyle=":")
    if threshold is not None:
        tutorial_ax.axhline(
            threshold, color="black", linestyle="--", linewidth=1, label=f"stop threshold ({threshold:g})"
        )
    game_ax.set_title("Game score (Monitor: whole games, raw points); line: mean of the last 100 games", fontsize=10)
    game_ax.set_ylabel("game score")
    tutorial_ax.set_title(
        "The tutorial's running reward (training_stats.csv: mean of the last 100 episodes' clipped rewards, "
        "judged by the stop rule)",
        fontsize=10,
    )
    tutorial_ax.set_ylabel("running reward")
    tutorial_ax.set_xlabel("agent steps")
    eps_ax.set_ylabel("epsilon (dotted)")
    eps_ax.set_ylim(0, 1.05)
    for ax in (game_ax, tutorial_ax):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return out


def _mean_band(ax: plt.Axes, runs: list[tuple[np.ndarray, np.ndarray]], color: str, label: str) -> None:
    """The mean of several runs' curves on a common grid of steps (up to the shortest run), ± one standard error."""
    end = min(steps[-1] for steps, _ in runs if len(steps))
    start = max(steps[0] for steps, _ in runs if len(steps))
    grid = np.linspace(start, end, GRID_POINTS) if end > start else np.array([end])
    values = np.array([np.interp(grid, steps, curve) for steps, curve in runs])
    mean = values.mean(axis=0)
    ax.plot(grid, mean, color=color, linewidth=2, label=label)
    if len(runs) > 1:
        error = values.std(axis=0, ddof=1) / np.sqrt(len(runs))
        ax.fill_between(grid, mean - error, mean + error, color=color, alpha=0.25, linewidth=0)
