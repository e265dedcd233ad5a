"""What breakout-sb3 relies on inside Optuna (breakout_sb3/tune/optuna_insides.py) is still there and still means
the same: a new or renamed RDBStorage method, or a private name gone, fails here rather than in a user's study."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.storages import RDBStorage

from breakout_sb3.tune.optuna_insides import (
    RDB_DATABASE_METHODS,
    RDB_UNWRAPPED_METHODS,
    RDB_WRAPPED_APART,
    contains,
    optimize_loop,
    set_stop_requested,
    stop_requested,
    trial_id,
)
from breakout_sb3.tune.retry import PatientRDBStorage

# The public methods RDBStorage inherits (BaseStorage's, BaseHeartbeat's): they reach the database, if at all,
# through the wrapped ones.
INHERITED = {"check_trial_is_updatable", "get_failed_trial_callback", "get_n_trials", "get_trial_number_from_id",
             "get_trial_params"}  # fmt: skip


def public_methods(cls: type, own: bool) -> set[str]:
    names = cls.__dict__ if own else [n for n in dir(cls) if n not in cls.__dict__]
    return {n for n in names if not n.startswith("_") and callable(getattr(cls, n))}


def test_every_public_method_of_rdbstorage_is_wrapped_or_listed_as_needing_no_retry():
    public = {n for n in RDB_DATABASE_METHODS if not n.startswith("_")}
    assert public_methods(RDBStorage, own=True) == public | set(RDB_WRAPPED_APART) | set(RDB_UNWRAPPED_METHODS)
    assert public_methods(RDBStorage, own=False) == INHERITED  # an override of one would be listed above


def test_every_wrapped_name_exists_and_is_wrapped():
    for name in (*RDB_DATABASE_METHODS, *RDB_WRAPPED_APART):
        assert name in RDBStorage.__dict__, f"RDBStorage.{name} is gone"
        assert name in PatientRDBStorage.__dict__, f"PatientRDBStorage does not wrap {name}"
        assert PatientRDBStorage.__dict__[name] is not RDBStorage.__dict__[name]


def test_the_study_and_trial_internals():
    study = optuna.create_study()
    assert stop_requested(study) is False
    with pytest.raises(RuntimeError):
        study.stop()  # outside Optuna's loop, Optuna refuses: the reason optimize_loop exists
    with optimize_loop(study):
        study.stop()
    assert stop_requested(study) is True
    set_stop_requested(study, False)
    assert stop_requested(study) is False
    trial = study.ask()
    assert study._storage.get_trial(trial_id(trial)).number == trial.number


def test_contains_reads_the_distribution_as_optuna_does():
    assert contains(FloatDistribution(0.0, 1.0, step=0.25), 0.5)
    assert not contains(FloatDistribution(0.0, 1.0, step=0.25), 0.3)
    assert contains(IntDistribution(1, 9, log=True), 4)
    assert not contains(IntDistribution(1, 9), 10)
    assert not contains(IntDistribution(1, 9), "four")
