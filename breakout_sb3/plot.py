"""Learning curves from training_stats.csv files: score, running mean, stop threshold, epsilon."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt

from breakout_sb3.errors import BreakoutSB3Error
from callbacks.csv_stats import CSV_HEADER

FIGURE_SIZE = (10, 5)  # inches
DPI = 100


@dataclass
class Curve:
    label: str
    steps: list[int]
    scores: list[float]
    running: list[float]
    epsilon: list[float]


def read_curve(path: str | Path) -> Curve:
    """:param path: a ``training_stats.csv``, or the run folder holding one"""
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
        return Curve(
            label=str(path.name if path.is_dir() else csv_path.parent.name),
            steps=[int(r[index["Total Frames"]]) for r in rows[1:]],
            scores=[float(r[index["Total Reward"]]) for r in rows[1:]],
            running=[float(r[index["Running Reward"]]) for r in rows[1:]],
            epsilon=[float(r[index["Epsilon"]]) if r[index["Epsilon"]] else float("nan") for r in rows[1:]],
        )
    except (ValueError, IndexError) as e:
        raise BreakoutSB3Error(f"{csv_path}: malformed row ({e})") from None


def plot(paths: list[str | Path], out: str | Path = "curve.png", threshold: float | None = 40.0) -> Path:
    """
    Draw each run's score per episode (points), its running mean (line), the stop threshold and, on a second axis,
    epsilon, against agent steps; several runs are overlaid with a legend. Writes a 1000x500 PNG.
    """
    curves = [read_curve(p) for p in paths]
    out = Path(out)
    if not out.parent.is_dir():
        raise BreakoutSB3Error(f"--out: no folder {out.parent}")
    fig, ax = plt.subplots(figsize=FIGURE_SIZE, dpi=DPI)
    eps_ax = ax.twinx()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, curve in enumerate(curves):
        color = colors[i % len(colors)]
        ax.scatter(curve.steps, curve.scores, s=4, alpha=0.25, color=color, linewidths=0)
        ax.plot(curve.steps, curve.running, color=color, linewidth=2, label=f"{curve.label}: running score")
        eps_label = f"{curve.label}: epsilon"
        eps_ax.plot(curve.steps, curve.epsilon, color=color, linewidth=1, linestyle=":", label=eps_label)
    if threshold is not None:
        ax.axhline(threshold, color="black", linestyle="--", linewidth=1, label=f"stop threshold ({threshold:g})")
    ax.set_xlabel("agent steps")
    ax.set_ylabel("game score (points: episodes, line: running mean)")
    eps_ax.set_ylabel("epsilon (dotted)")
    eps_ax.set_ylim(0, 1.05)
    lines, labels = ax.get_legend_handles_labels()
    eps_lines, eps_labels = eps_ax.get_legend_handles_labels()
    ax.legend(lines + eps_lines, labels + eps_labels, loc="upper left", fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return out
