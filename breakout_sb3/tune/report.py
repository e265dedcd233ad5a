"""The results of ``breakout-sb3 tune``: rl-zoo3's report CSV, the best trial as a YAML entry, a seed sweep's runs."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from breakout_sb3.evaluate import DEFAULT_EVAL_EPSILON
from breakout_sb3.shell import command_line
from breakout_sb3.tune.loop import Unrecorded
from breakout_sb3.tune.plan import TunePlan
from breakout_sb3.tune.storage import shown_url


def report_study(
    study: optuna.Study, plan: TunePlan, report: Path, n_timesteps: int, unrecorded: list[Unrecorded]
) -> None:
    """
    Print the study's trials, write them as rl-zoo3's report CSV, then print the best trial and write it as a YAML
    entry (a search), or print each seed's run (a seed sweep).

    :param study: the study
    :param plan: what :func:`~breakout_sb3.tune.plan.build_plan` prepared
    :param report: the report CSV to write
    :param n_timesteps: agent steps per trial
    :param unrecorded: the results of trials this worker finished after the study had them as failed
    """
    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state.name.lower() for t in trials)
    print(
        f"\nStudy '{plan.study_name}' in {shown_url(plan.url)}: {len(trials)} trials"
        + (f" ({', '.join(f'{n} {state}' for state, n in sorted(states.items()))})" if trials else "")
    )
    write_report(trials, report, unrecorded)
    print(f"Report (rl-zoo3's): {report}")
    if plan.seeds is not None:
        print_seeds(trials, plan.seeds)
        return
    try:
        best = study.best_trial
    except ValueError:
        print("No trial has completed yet: no best trial to write")
        return
    print(f"Best trial: {best.number}, score {best.value:g} (worker {best.user_attrs.get('worker', '?')})")
    for name, value in best.params.items():
        print(f"    {name}: {value}")
    path = write_best(plan, best, n_timesteps)
    fast = ["--fast"] if plan.fast else []
    print(f"Written as {path}; train it with: {command_line('breakout-sb3', 'train', *fast, '--conf-file', path)}")


def write_best(plan: TunePlan, best: FrozenTrial, n_timesteps: int) -> Path:
    """
    Write ``best``'s entry as a YAML file, which ``breakout-sb3 train --conf-file`` trains.

    :param plan: what :func:`~breakout_sb3.tune.plan.build_plan` prepared (a search, not a seed sweep)
    :param best: the best trial
    :param n_timesteps: agent steps per trial
    :return: the YAML file, ``<study folder>/best.yml``
    """
    assert plan.space is not None
    entry = plan.space.apply(plan.entry, best.params)
    path = plan.output_dir / "best.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    header = [
        f"# The best trial of the Optuna study '{plan.study_name}' ({shown_url(plan.url)}): trial {best.number},",
        f"# score {best.value:g} (mean game score of its last evaluation, epsilon {DEFAULT_EVAL_EPSILON}, after "
        f"{n_timesteps:,} steps).",
        f"# The entry {plan.entry_name} with:",
        *[f"#   {name}: {value}" for name, value in best.params.items()],
        f"# Train it: breakout-sb3 train{' --fast' if plan.fast else ''} --conf-file {path}",
    ]
    body = yaml.safe_dump({plan.export_key: entry}, sort_keys=False)
    path.write_text("\n".join(header) + "\n" + body)
    return path


def print_seeds(trials: list[FrozenTrial], seeds: list[int]) -> None:
    """
    Print each seed's run (its score and folder, or its state), and the command that plots them.

    :param trials: the study's trials
    :param seeds: the sweep's seeds
    """
    folders = []
    for seed in seeds:
        runs = [t for t in trials if t.params.get("seed") == seed and "duplicate_of" not in t.user_attrs]
        done = [t for t in runs if t.state == TrialState.COMPLETE]
        if done:
            run = done[-1]
            folder = run.user_attrs.get("folder", "?")
            print(f"  seed {seed}: score {run.value:g}, {folder} (worker {run.user_attrs.get('worker', '?')})")
            folders.append(folder)
        else:
            state = runs[-1].state.name.lower() if runs else "not started"
            print(f"  seed {seed}: {state}")
    if folders:
        print(f"Plot them: {command_line('breakout-sb3', 'plot', '--mean', *folders)}")


def write_report(trials: list[FrozenTrial], path: Path, unrecorded: list[Unrecorded] | None = None) -> None:
    """
    Write the trials as rl-zoo3's report CSV (the columns of Optuna's ``trials_dataframe``), without pandas.

    :param trials: the study's trials
    :param path: the CSV to write
    :param unrecorded: the results of trials this worker finished after the study had them as failed: their value
        replaces the study's (none), and the column ``not_recorded`` says so
    """
    unrecorded_by_number = {u.number: u for u in unrecorded or []}
    columns = ["number", "value", "datetime_start", "datetime_complete", "duration"]
    for attr in ("params", "user_attrs", "system_attrs"):
        names = sorted({name for t in trials for name in getattr(t, attr)})
        columns += [f"{attr}_{name}" for name in names]
    columns.append("state")
    if unrecorded_by_number:
        columns.append("not_recorded")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["", *columns])
        for index, t in enumerate(trials):
            row: dict[str, Any] = {
                "number": t.number,
                "value": t.value,
                "datetime_start": t.datetime_start,
                "datetime_complete": t.datetime_complete,
                "duration": t.duration,
                "state": t.state.name,
            }
            for attr in ("params", "user_attrs", "system_attrs"):
                row.update({f"{attr}_{name}": value for name, value in getattr(t, attr).items()})
            if t.number in unrecorded_by_number:
                row.update(
                    value=unrecorded_by_number[t.number].value, not_recorded=unrecorded_by_number[t.number].note()
                )
            writer.writerow([index, *("" if row.get(c) is None else row[c] for c in columns)])
