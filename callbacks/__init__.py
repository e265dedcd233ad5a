"""SB3 callbacks for epsilon-greedy off-policy training; nothing here is specific to one environment."""

from callbacks.checkpoint import EpisodeCheckpointCallback
from callbacks.csv_stats import CSV_HEADER, CSVStatsCallback
from callbacks.epsilon import TwoPhaseEpsilonCallback, TwoPhaseEpsilonSchedule
from callbacks.stop import StopTrainingOnRunningScore

__all__ = [
    "CSV_HEADER",
    "CSVStatsCallback",
    "EpisodeCheckpointCallback",
    "StopTrainingOnRunningScore",
    "TwoPhaseEpsilonCallback",
    "TwoPhaseEpsilonSchedule",
]
