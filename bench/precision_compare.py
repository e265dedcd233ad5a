"""
float32 against bf16: two runs of ``bench.learning_run`` (same seed and steps, ``--precision`` apart) side by side,
as a Markdown table and a plot of the TD loss, the mean max Q-value of a fixed set of states and the training game
score against agent steps, with each run's final ``evaluate``.

    python -m bench.learning_run --device cpu --steps 100000 --seconds 86400 --precision float32 \\
        --out-dir logs/bench/float32 --json bench/results/learning_precision_float32_xeon.json
    python -m bench.learning_run ... --precision bf16 --out-dir logs/bench/bf16 --json ..._bf16_xeon.json
    python -m bench.precision_compare logs/bench/float32 logs/bench/bf16 \\
        --json bench/results/learning_precision_float32_xeon.json bench/results/learning_precision_bf16_xeon.json \\
        --plot docs/precision_learning.png

It reads only: the table is printed, the plot written to ``--plot``.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np


def binned(steps: np.ndarray, values: np.ndarray, edges: np.ndarray) -> list[tuple[float, int]]:
    """:return: per bin of ``edges``, the mean of the values whose step falls in it, and their count"""
    out = []
    for low, high in itertools.pairwise(edges):
        inside = values[(steps > low) & (steps <= high)]
        out.append((float(inside.mean()) if len(inside) else float("nan"), len(inside)))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs=2, type=Path, help="the float32 run's --out-dir, then the bf16 run's")
    parser.add_argument("--json", nargs=2, type=Path, required=True, help="their learning JSONs, same order")
    parser.add_argument("--bin", type=int, default=20_000, help="agent steps per row of the table")
    parser.add_argument("--plot", type=Path, required=True, help="where to write the plot (PNG)")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from breakout_sb3.plot import read_curve

    results = [json.loads(path.read_text()) for path in args.json]
    labels = [result["precision"] for result in results]
    curves = [read_curve(run) for run in args.runs]
    last = min(result["agent_steps"] for result in results)
    edges = np.arange(0, last + args.bin, args.bin, dtype=float)
    edges[-1] = min(edges[-1], last)

    probes = []
    for result in results:
        records = result["probe"]
        probes.append({key: np.array([record[key] for record in records]) for key in ("step", "td_loss", "mean_max_q")})
    table = ["| Agent steps | TD loss " + " / ".join(labels) + " | Mean max Q " + " / ".join(labels)]
    table[0] += " | Game score " + " / ".join(labels) + " (games) |"
    table.append("|---|---|---|---|")
    columns = []
    for probe, curve in zip(probes, curves, strict=True):
        columns.append(
            (
                binned(probe["step"], probe["td_loss"], edges),
                binned(probe["step"], probe["mean_max_q"], edges),
                binned(curve.game_steps, curve.game_scores, edges),
            )
        )
    for i, (low, high) in enumerate(itertools.pairwise(edges)):
        loss = " / ".join(f"{column[0][i][0]:.4f}" for column in columns)
        q = " / ".join(f"{column[1][i][0]:.3f}" for column in columns)
        score = " / ".join(f"{column[2][i][0]:.2f} ({column[2][i][1]})" for column in columns)
        table.append(f"| {low / 1e3:.0f}k-{high / 1e3:.0f}k | {loss} | {q} | {score} |")
    for result in results:
        e = result["eval"]
        table.append(
            f"\n{result['precision']}: {result['agent_steps']} agent steps, {result['gradient_steps_done']} gradient "
            f"steps, epsilon {result['final_epsilon']:.3f} at the end; evaluate (epsilon {e['epsilon']}, "
            f"{e['episodes']} games): {e['mean']:.2f} ± {e['std']:.2f} (min {e['min']:g}, max {e['max']:g})"
        )
    print("\n".join(table))

    figure, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for label, probe, curve in zip(labels, probes, curves, strict=True):
        axes[0].plot(probe["step"], probe["td_loss"], marker=".", label=label)
        axes[1].plot(probe["step"], probe["mean_max_q"], marker=".", label=label)
        if len(curve.game_scores):  # a short run may not have finished a game
            window = min(100, len(curve.game_scores))
            scores = np.convolve(curve.game_scores, np.ones(window) / window, mode="valid")
            axes[2].plot(curve.game_steps[window - 1 :], scores, label=label)
    titles = ("TD loss (mean per 5,000 agent steps)", "mean max Q of 512 fixed states", "game score (last 100 games)")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_title(title)
        ax.set_xlabel("agent steps")
        ax.grid(alpha=0.3)
        ax.legend()
    figure.suptitle(f"fast configuration, seed {results[0]['seed']}: float32 against bf16 mixed precision")
    figure.tight_layout()
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.plot, dpi=90)
    print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
