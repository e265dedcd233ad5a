"""Stop training once the running score over the last episodes exceeds a threshold."""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

from callbacks.atomic import atomic_save_model
from callbacks.episodes import EpisodeScores, EpisodeStats, mean_score
from callbacks.run_folder import RunFolderCallback
from callbacks.validation import FiniteFloat, NonNegativeInt, PositiveInt, checked_init


class StopTrainingOnRunningScore(RunFolderCallback):
    """
    Stops training, after saving the model, as soon as the mean score of the last ``window`` episodes exceeds
    ``threshold`` (strictly, as the tutorial's ``running_reward > 40``).

    Episodes and scores are counted as :class:`~callbacks.CSVStatsCallback` counts them for the same
    ``episode_stats``, so the rule judges the ``Running Reward`` column of that CSV.

    :param threshold: running score to exceed
    :param window: number of most recent episodes averaged
    :param min_episodes: episodes needed before the rule applies (None: ``window``, a full window)
    :param episode_stats: ``"monitor"`` (episodes and raw returns recorded by SB3's ``Monitor``) or ``"learner"``
        (every ``done`` and the rewards learnt from); see :class:`~callbacks.CSVStatsCallback`
    :param model_name: file name of the model saved in ``log_dir`` when the threshold is exceeded
    :param log_dir: folder for the saved model (None: the training env's Monitor folder, rl-zoo3's run folder)
    :param verbose: Verbosity level: 0 for no output, 1 for info messages, 2 for debug messages
    """

    @checked_init
    def __init__(
        self,
        threshold: FiniteFloat = 40.0,
        window: PositiveInt = 100,
        min_episodes: NonNegativeInt | None = None,
        episode_stats: EpisodeStats = "monitor",
        model_name: str = "solved_model.zip",
        log_dir: str | None = None,
        verbose: int = 1,
    ):
        super().__init__(log_dir, verbose)
        self.threshold = threshold
        self.window = window
        self.min_episodes = window if min_episodes is None else min_episodes
        self.model_name = model_name
        self._scores = EpisodeScores(episode_stats)
        self.recent_scores: deque[float] = deque(maxlen=window)
        self.episodes = 0
        self.solved = False

    def state_dict(self) -> dict[str, Any]:
        return {"episodes": self.episodes, "recent_scores": list(self.recent_scores)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.episodes = int(state["episodes"])
        self.recent_scores.clear()
        self.recent_scores.extend(state["recent_scores"])

    @property
    def running_score(self) -> float:
        """Mean score over the last ``window`` episodes (nan before the first one)."""
        return mean_score(self.recent_scores)

    def _on_step(self) -> bool:
        for score in self._scores.update(self.locals["rewards"], self.locals["dones"], self.locals["infos"]):
            self.episodes += 1
            self.recent_scores.append(score)
            if self.episodes >= self.min_episodes and self.running_score > self.threshold:
                self._stop()
                return False
        return True

    def _stop(self) -> None:
        self.solved = True
        assert self.log_dir is not None
        path = atomic_save_model(self.model, Path(self.log_dir) / self.model_name)
        if self.verbose >= 1:
            print(
                f"Solved at episode {self.episodes}: running score {self.running_score:.2f} > {self.threshold} "
                f"over the last {len(self.recent_scores)} episodes, at step {self.num_timesteps}. Model saved to {path}"
            )
