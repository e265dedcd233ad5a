"""
The rules of a seed sweep (``breakout-sb3 tune --seeds``): one trial per seed, of the entry as it is, each seed run
once whichever worker takes it.
"""

from __future__ import annotations

import optuna
from optuna.pruners import BasePruner, NopPruner
from optuna.samplers import BaseSampler, GridSampler
from optuna.trial import FrozenTrial, TrialState


def seed_sampler(seeds: list[int]) -> tuple[BaseSampler, BasePruner]:
    """:return: the sampler and pruner of a seed sweep: each seed once, no trial pruned"""
    # The grid's order is shuffled with the sampler's seed: the same on every worker, so that the n-th trial of the
    # study runs the same seed whichever worker takes it.
    return GridSampler({"seed": seeds}, seed=0), NopPruner()


def seeds_left(study: optuna.Study, seeds: list[int]) -> bool:
    """:return: whether a seed of ``seeds`` is neither done nor running (or a trial is queued to run again)"""
    trials = study.get_trials(deepcopy=False)
    started = [t for t in trials if "failed_trial" not in t.system_attrs]
    return len(started) < len(seeds) or any(t.state == TrialState.WAITING for t in trials)


class StopWhenNoSeedLeft:
    """
    A callback of the study's loop: stops the worker once every seed is done or running.

    :param seeds: the sweep's seeds
    """

    def __init__(self, seeds: list[int]):
        self.seeds = seeds

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if not seeds_left(study, self.seeds):
            study.stop()


def refuse_duplicate_seed(trial: optuna.Trial, seed: int) -> None:
    """
    Prune a trial given a seed that another worker already runs. Optuna's grid gives the first trials one seed each;
    a worker that starts a trial at the moment another takes the last seed gets a seed again.

    :param trial: the trial starting
    :param seed: its seed
    """
    trials = trial.study.get_trials(deepcopy=False)
    this = next(t for t in trials if t.number == trial.number)
    if "failed_trial" in this.system_attrs:
        return  # a seed run again after its worker died or was stopped
    earlier = [
        t.number
        for t in trials
        if t.number < trial.number and "failed_trial" not in t.system_attrs and t.params.get("seed") == seed
    ]
    if earlier:
        trial.set_user_attr("duplicate_of", earlier[0])
        trial.study.stop()
        raise optuna.TrialPruned(f"seed {seed} is trial {earlier[0]}'s")
