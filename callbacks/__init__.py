"""SB3 callbacks for epsilon-greedy off-policy training; nothing here is specific to one environment."""

from callbacks.checkpoint import Checkpoint, CheckpointError, EpisodeCheckpointCallback, latest_checkpoint
from callbacks.csv_stats import CSV_HEADER, CSVStatsCallback
from callbacks.epsilon import TwoPhaseEpsilonCallback, TwoPhaseEpsilonSchedule
from callbacks.nonfinite import NonFiniteLossCallback, NonFiniteTrainingError
from callbacks.replay_io import ReplayBufferFileError, load_replay_buffer, read_replay_buffer, save_replay_buffer
from callbacks.stop import StopTrainingOnRunningScore

__all__ = [
    "CSV_HEADER",
    "CSVStatsCallback",
    "Checkpoint",
    "CheckpointError",
    "EpisodeCheckpointCallback",
    "NonFiniteLossCallback",
    "NonFiniteTrainingError",
    "ReplayBufferFileError",
    "StopTrainingOnRunningScore",
    "TwoPhaseEpsilonCallback",
    "TwoPhaseEpsilonSchedule",
    "latest_checkpoint",
    "load_replay_buffer",
    "read_replay_buffer",
    "save_replay_buffer",
]
