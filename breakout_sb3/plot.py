"""
Learning curves of runs: the game score from SB3's Monitor files and the tutorial's running reward from
training_stats.csv, against agent steps; several runs overlaid, or several runs of one configuration as their mean.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
import yaml

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import EngFormatter

from breakout_sb3.atari_settings import AtariSettings
from breakout_sb3.errors import BreakoutSB3Error
from breakout_sb3.outputs import check_output_path
from callbacks.atomic import atomic_path
from callbacks.csv_stats import CSV_HEADER

FIGURE_SIZE = (10, 8)  # inches
DPI = 100
GAME_WINDOW = 100  # games in the game score's running mean, as the CSV's 100 episodes
GRID_POINTS = 200  # where the runs of a --mean group are compared
POINTS_PERCENTILE = 99  # the episode scores the running-reward panel's y axis makes room for
MIN_SPAN = 1.0  # the running-reward panel's smallest y span (a run whose episodes all scored 0 so far)
HEADROOM = 0.12  # above the data or the threshold line, as a fraction of the panel's span
EPSILON_STYLE = dict(linewidth=1.5, linestyle=(0, (1, 1.5)))  # dotted, over the other lines (its axis is on top)
THRESHOLD_STYLE = dict(color="black", linestyle="--", linewidth=1)


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
    """
    :param path: a run folder (its ``training_stats.csv`` and ``*.monitor.csv``), or a ``training_stats.csv``. An
        incomplete last line (a run killed while writing it) is skipped with a note on stderr; any other malformed
        line is an error naming the file and the line.
    """
    path = Path(path)
    csv_path = path / "training_stats.csv" if path.is_dir() else path
    if not csv_path.is_file():
        raise BreakoutSB3Error(f"no training_stats.csv at {path}")
    header, rows = read_rows(csv_path)
    if header is None:
        raise BreakoutSB3Error(f"{csv_path} has no episodes yet")
    if tuple(header) != CSV_HEADER:
        raise BreakoutSB3Error(f"{csv_path} is not a breakout-sb3 training CSV (unexpected header)")
    if not rows:
        raise BreakoutSB3Error(f"{csv_path} has no episodes yet")
    index = {name: i for i, name in enumerate(CSV_HEADER)}
    steps, scores, running, epsilon = [], [], [], []
    for number, fields in rows:
        _check_field_count(csv_path, number, fields, len(CSV_HEADER))
        steps.append(int(_number(csv_path, number, fields, index["Total Frames"], "Total Frames")))
        scores.append(_number(csv_path, number, fields, index["Total Reward"], "Total Reward"))
        running.append(_number(csv_path, number, fields, index["Running Reward"], "Running Reward"))
        has_epsilon = fields[index["Epsilon"]] != ""  # empty: the model has no exploration rate
        epsilon.append(_number(csv_path, number, fields, index["Epsilon"], "Epsilon") if has_epsilon else np.nan)
    curve = Curve(
        label=str(path.name if path.is_dir() else csv_path.parent.name),
        steps=steps,
        scores=scores,
        running=running,
        epsilon=epsilon,
    )
    if path.is_dir():
        curve.game_steps, curve.game_scores = read_games(path)
        if len(curve.game_steps) and curve.game_steps[-1] > curve.steps[-1]:
            # The unseen steps of AtariWrapper's resets count in Monitor's lengths: no game ends after the CSV's
            # last step, so the estimate is scaled back to it.
            curve.game_steps = curve.game_steps * (curve.steps[-1] / curve.game_steps[-1])
    return curve


def read_rows(path: Path) -> tuple[list[str] | None, list[tuple[int, list[str]]]]:
    """
    Read a CSV file that a run appends to, a line at a time (``training_stats.csv``, a Monitor file), tolerating
    what a killed run or a power cut leaves at its end. The last line is skipped, with a note on stderr naming the
    file and the line, if it is incomplete: without a line end, or with fewer fields than the header.

    :param path: the CSV file; ``#`` lines before its header (Monitor's ``#{...}`` line) are skipped
    :return: the header's fields (None if the file has no complete header line), and each row after it with its
        line number in the file (from 1)
    """
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        lines = f.read().split("\n")
    torn = lines.pop()  # what follows the last line end: "" when the file ends with a whole line
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    for number, line in enumerate(lines, start=1):
        line = line.removesuffix("\r")  # csv's rows end in \r\n
        if header is None and line.startswith("#"):
            continue
        fields = next(csv.reader([line]), [])
        if header is None:
            header = fields
        else:
            rows.append((number, fields))
    if torn:
        _note_incomplete_last_line(path, len(lines) + 1)
    elif rows and header is not None and len(rows[-1][1]) < len(header):
        _note_incomplete_last_line(path, rows.pop()[0])
    return header, rows


def _note_incomplete_last_line(path: Path, number: int) -> None:
    print(
        f"note: {path} line {number}: skipped an incomplete last line (a run that was killed while writing it)",
        file=sys.stderr,
    )


def _check_field_count(path: Path, number: int, fields: list[str], expected: int) -> None:
    if len(fields) != expected:
        raise BreakoutSB3Error(f"{path} line {number}: malformed row ({len(fields)} fields, the header has {expected})")


def _number(path: Path, number: int, fields: list[str], index: int, column: str) -> float:
    """:return: the field ``index`` of the row at line ``number`` of ``path`` as a number"""
    try:
        return float(fields[index])
    except ValueError:
        raise BreakoutSB3Error(
            f"{path} line {number}: malformed row ({column} is {fields[index]!r}, not a number)"
        ) from None


def read_games(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """
    The games SB3's Monitor files (``*.monitor.csv``) of a run record, with the agent step at which each ended.

    Monitor counts emulator frames in its ``l`` column; a game ends at the sum of the lengths of the games before it
    and its own, over the frame skip (AtariWrapper's no-op, FIRE and post-life-loss frames count too, which the
    agent never acts on, so this runs a few percent ahead of the true step: :func:`read_curve` scales it back to the
    CSV's last step). Envs step together, so with one file per env the step count is that times the number of
    files. An incomplete last line is skipped as :func:`read_rows` does.

    :param run_dir: the run folder
    :return: steps and raw scores of the games, in the order they ended
    """
    files = sorted(run_dir.glob("*.monitor.csv"))
    if not files:
        return np.zeros(0), np.zeros(0)
    frame_skip = _frame_skip(run_dir)
    steps, scores = [], []
    for file in files:
        header, rows = read_rows(file)
        if header is None:  # created, but killed before its column names were written
            continue
        if "r" not in header or "l" not in header:
            raise BreakoutSB3Error(f"{file} is not a Monitor file (no r and l columns)")
        lengths, file_scores = [], []
        for number, fields in rows:
            _check_field_count(file, number, fields, len(header))
            lengths.append(_number(file, number, fields, header.index("l"), "l"))
            file_scores.append(_number(file, number, fields, header.index("r"), "r"))
        scores.append(np.array(file_scores))
        steps.append(np.cumsum(lengths) / frame_skip * len(files))
    if not steps:
        return np.zeros(0), np.zeros(0)
    game_steps = np.concatenate(steps)
    order = np.argsort(game_steps, kind="stable")
    return game_steps[order], np.concatenate(scores)[order]


def _frame_skip(run_dir: Path) -> int:
    """:return: the run's AtariWrapper frame skip, from rl-zoo3's saved config (AtariWrapper's default if none)"""
    for config in run_dir.glob("*/config.yml"):
        try:
            saved = yaml.load(config.read_text(), Loader=yaml.UnsafeLoader)  # rl-zoo3 writes an OrderedDict
            hyperparams = dict(saved)
        except (yaml.YAMLError, TypeError, ValueError):
            continue
        return int(AtariSettings.of(hyperparams).frame_skip)
    return AtariSettings().frame_skip


@dataclass
class PanelScale:
    """Where the running-reward panel's y axis runs, and whether the stop threshold is drawn in it as a line."""

    bottom: float
    top: float
    threshold_line: bool


def running_reward_scale(lines: list[np.ndarray], points: list[np.ndarray], threshold: float | None) -> PanelScale:
    """
    Scale the running-reward panel to its data: the running-reward lines, and the episode scores drawn as points
    (all but their top ``100 - POINTS_PERCENTILE`` percent, so that a few lucky episodes do not flatten the lines).
    The y axis starts at 0 or below. The stop threshold is drawn as a line, and the axis stretched to it, only when
    it lies within one span of the data beyond the data's range (for data from 0: up to twice the data's top);
    farther away, the panel would show the threshold above a flat line on its floor, so the threshold is only named
    in the legend.

    :param lines: the values of each line drawn (running rewards, means of groups)
    :param points: the values of each set of points drawn (episode scores)
    :param threshold: the stop threshold (None: none)
    """
    values = [np.asarray(v, dtype=float) for v in lines if len(v)]
    values += [np.atleast_1d(np.percentile(v, POINTS_PERCENTILE)) for v in points if len(v)]
    finite = np.concatenate(values) if values else np.zeros(0)
    finite = finite[np.isfinite(finite)]
    low, high = (min(0.0, float(finite.min())), float(finite.max())) if len(finite) else (0.0, 0.0)
    high = max(high, low + MIN_SPAN)
    span = high - low
    threshold_line = threshold is not None and low - span <= threshold <= high + span
    if threshold_line:
        low, high = min(low, threshold), max(high, threshold)
        span = high - low
    # The headroom keeps the threshold line off epsilon's 1.0 on the right axis (0..1.05), and both off the frame.
    return PanelScale(bottom=low - 0.03 * span, top=high + HEADROOM * span, threshold_line=threshold_line)


def plot(
    paths: list[str | Path],
    out: str | Path = "curve.png",
    threshold: float | None = 40.0,
    mean_groups: list[list[str | Path]] | None = None,
) -> Path:
    """
    Draw, against agent steps: on top the game score (Monitor's raw score of whole games: points per game, line the
    mean of the last 100 games), below the tutorial's running reward (the CSV's ``Running Reward``, which the stop
    rule judges) with the stop threshold and epsilon (right axis). Each run of ``paths`` is one line; each group of
    ``mean_groups`` (several runs of one configuration, e.g. seeds) is drawn as the mean over its runs with a band
    of plus or minus one standard error. Writes a 1000x800 image (atomically), in the format of ``out``'s extension.

    :param paths: run folders or ``training_stats.csv`` files
    :param out: the image to write (``.png``, or another format matplotlib writes: ``.svg``, ``.pdf``...); checked
        before any run is read
    :param threshold: the stop threshold (None: not shown)
    :param mean_groups: groups of runs drawn as their mean
    :return: ``out``
    """
    if not paths and not mean_groups:
        raise BreakoutSB3Error("nothing to plot: give run folders, or --mean RUN RUN ...")
    out = Path(out)
    image_format = out.suffix[1:].lower()
    if image_format not in FigureCanvasAgg.get_supported_filetypes():
        raise BreakoutSB3Error(f"--out must name an image file (.png, .svg, .pdf or another matplotlib format): {out}")
    check_output_path(out, "--out")
    curves = [read_curve(p) for p in paths]
    groups = [[read_curve(p) for p in group] for group in mean_groups or []]
    fig = draw(curves, groups, threshold)
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format=image_format, dpi=DPI)
    finally:
        plt.close(fig)
    return out


def draw(curves: list[Curve], groups: list[list[Curve]], threshold: float | None) -> Figure:
    """
    The figure :func:`plot` writes.

    :param curves: runs, each drawn as its own line
    :param groups: groups of runs, each drawn as the mean of its runs ± one standard error
    :param threshold: the stop threshold (None: not shown)
    :return: the figure; its axes are the game score, the running reward and epsilon (the running reward's twin)
    """
    fig, (game_ax, tutorial_ax) = plt.subplots(2, 1, figsize=FIGURE_SIZE, dpi=DPI, sharex=True, layout="constrained")
    eps_ax = tutorial_ax.twinx()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    handles: list[Line2D] = []
    lines: list[np.ndarray] = []
    points: list[np.ndarray] = []
    for i, curve in enumerate(curves):
        color = colors[i % len(colors)]
        if len(curve.game_scores):
            game_ax.scatter(
                curve.game_steps, curve.game_scores, s=6, alpha=_point_alpha(len(curve.game_scores)), color=color,
                linewidths=0,
            )  # fmt: skip
            game_ax.plot(curve.game_steps, curve.game_running, color=color, linewidth=2)
        tutorial_ax.scatter(
            curve.steps, curve.scores, s=4, alpha=_point_alpha(len(curve.scores)) / 2, color=color, linewidths=0
        )
        (line,) = tutorial_ax.plot(curve.steps, curve.running, color=color, linewidth=2, label=curve.label)
        eps_ax.plot(curve.steps, curve.epsilon, color=color, **EPSILON_STYLE)
        handles.append(line)
        lines.append(np.array(curve.running))
        points.append(np.array(curve.scores))
    for j, group in enumerate(groups):
        color = colors[(len(curves) + j) % len(colors)]
        label = f"{group[0].label} ... : mean of {len(group)} runs ± standard error"
        runs_with_games = [c for c in group if len(c.game_scores)]
        if runs_with_games:
            _mean_band(game_ax, [(c.game_steps, c.game_running) for c in runs_with_games], color, label)
        low, high = _mean_band(tutorial_ax, [(np.array(c.steps), np.array(c.running)) for c in group], color, label)
        eps_ax.plot(group[0].steps, group[0].epsilon, color=color, **EPSILON_STYLE)
        handles.append(Line2D([], [], color=color, linewidth=2, label=label))
        lines += [low, high]
    scale = running_reward_scale(lines, points, threshold)
    tutorial_ax.set_ylim(scale.bottom, scale.top)
    if threshold is not None and scale.threshold_line:
        tutorial_ax.axhline(threshold, **THRESHOLD_STYLE)
        handles.append(Line2D([], [], label=f"stop threshold ({threshold:g})", **THRESHOLD_STYLE))
    elif threshold is not None:
        # Named in the legend, not in the panel: a note in a corner of the panel would sit on epsilon's 1.0 there.
        handles.append(
            Line2D(
                [], [], color="black", marker="^", linestyle="", label=f"stop threshold {threshold:g}: above this panel"
            )
        )
    handles.append(Line2D([], [], color="grey", label="epsilon (right axis)", **EPSILON_STYLE))
    game_ax.set_title("Game score (Monitor: whole games, raw points); line: mean of the last 100 games", fontsize=10)
    game_ax.set_ylabel("game score")
    tutorial_ax.set_title(
        "Running reward (training_stats.csv: mean of the last 100 episodes' clipped rewards, judged by the stop "
        "rule); points: episodes",
        fontsize=10,
    )
    tutorial_ax.set_ylabel("running reward")
    tutorial_ax.set_xlabel("agent steps")
    tutorial_ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    eps_ax.set_ylabel("epsilon (dotted)")
    eps_ax.set_ylim(0, 1.05)
    for ax in (game_ax, tutorial_ax):
        ax.grid(alpha=0.3)
    # Below the panels, off the data: one entry per run (the same colour in both panels), then the line styles.
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 3), fontsize="small")
    return fig


def _point_alpha(count: int) -> float:
    """Opacity of a run's points: a few early points stay visible, a cloud of thousands stays a background."""
    return float(np.clip(20 / np.sqrt(max(count, 1)), 0.1, 0.8))


def _mean_band(
    ax: plt.Axes, runs: list[tuple[np.ndarray, np.ndarray]], color: str, label: str
) -> tuple[np.ndarray, np.ndarray]:
    """
    Draw the mean of several runs' curves on a common grid of steps (up to the shortest run), ± one standard error.

    :return: the bottom and the top of the band (the mean twice for a single run)
    """
    end = min(steps[-1] for steps, _ in runs if len(steps))
    start = max(steps[0] for steps, _ in runs if len(steps))
    grid = np.linspace(start, end, GRID_POINTS) if end > start else np.array([end])
    values = np.array([np.interp(grid, steps, curve) for steps, curve in runs])
    mean = values.mean(axis=0)
    ax.plot(grid, mean, color=color, linewidth=2, label=label)
    if len(runs) == 1:
        return mean, mean
    error = values.std(axis=0, ddof=1) / np.sqrt(len(runs))
    ax.fill_between(grid, mean - error, mean + error, color=color, alpha=0.25, linewidth=0)
    return mean - error, mean + error
