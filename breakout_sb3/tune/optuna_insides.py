"""
Every name of Optuna's insides that breakout-sb3 relies on, in one place: private attributes of ``Study``, ``Trial``
and distributions, and the methods of ``RDBStorage`` that the retry layer wraps. An upgrade of Optuna checks this
file; ``tests/test_optuna_surface.py`` fails when any of it changes (a name gone, a new ``RDBStorage`` method).
The Optuna versions it was tested with are pyproject.toml's bounds.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import optuna
from optuna.distributions import BaseDistribution

# RDBStorage's methods that query the database, its private ones that _CachedStorage and its public ones call
# included: the retry layer makes each wait out an outage (set_trial_state_values has its own wrapper).
RDB_DATABASE_METHODS = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr", "get_study_id_from_name",
    "get_study_name_from_id", "get_study_directions", "get_study_user_attrs", "get_study_system_attrs",
    "get_trial_user_attrs", "get_trial_system_attrs", "get_all_studies", "create_new_trial", "_create_new_trial",
    "set_trial_param", "_set_trial_param", "get_trial_param", "set_trial_intermediate_value", "set_trial_user_attr",
    "set_trial_system_attr", "get_trial_id_from_study_id_trial_number", "get_trial", "get_all_trials", "_get_trials",
    "get_best_trial", "_get_best_trial_id", "record_heartbeat", "_get_stale_trial_ids",
)  # fmt: skip
RDB_WRAPPED_APART = ("set_trial_state_values",)
# RDBStorage's own public methods left as they are: no database call (settings, the session), or the schema's
# administration (`optuna storage upgrade`), which a worker never runs.
RDB_UNWRAPPED_METHODS = (
    "get_heartbeat_interval", "get_heartbeat_stale_trial_callback", "remove_session", "upgrade",
    "get_current_version", "get_head_version", "get_all_versions",
)  # fmt: skip


def stop_requested(study: optuna.Study) -> bool:
    """:return: whether ``study.stop()`` was called (Optuna's own loop reads the same flag)"""
    return study._stop_flag


def set_stop_requested(study: optuna.Study, requested: bool) -> None:
    study._stop_flag = requested


@contextmanager
def optimize_loop(study: optuna.Study) -> Iterator[None]:
    """Inside, ``study.stop()`` works as inside ``study.optimize`` (it refuses to work elsewhere)."""
    study._thread_local.in_optimize_loop = True
    try:
        yield
    finally:
        study._thread_local.in_optimize_loop = False


def trial_id(trial: optuna.Trial) -> int:
    """:return: the trial's id in its storage (what the storage's per-trial methods take)"""
    return trial._trial_id


def contains(distribution: BaseDistribution, value: Any) -> bool:
    """:return: whether ``value`` is in ``distribution`` (e.g. a value of a step grid, within the bounds)"""
    try:
        return distribution._contains(distribution.to_internal_repr(value))
    except (ValueError, TypeError):
        return False
