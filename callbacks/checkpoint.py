"""Save the model every N finished episodes."""

from __future__ import annotations

from pathlib import Path

from callbacks._atomic import atomic_save_model
from callbacks._episodes import EpisodeScores, EpisodeStats
from callbacks._run_folder import RunFolderCallback


class EpisodeCheckpointCallback(RunFolderCallback):
    """
    Saves the model (its zip holds the online and the target network and the optimizer) every
    ``save_freq_episodes`` finished episodes, as ``<log_dir>/<name_prefix>_<episode>.zip``.

    Each zip is written beside its final name and renamed into place, so a crash leaves no half-written zip.
    The save happens at the start of the next rollout, once the step that ended the episode is in the replay
    buffer and SB3 has finished its bookkeeping for it, so the saved state is one SB3 can continue from.

    :param save_freq_episodes: number of finished episodes between two checkpoints
    :param name_prefix: prefix of the zip names
    :param episode_stats: ``"monitor"`` (episodes recorded by SB3's ``Monitor``: whole games under
        ``AtariWrapper``) or ``"learner"`` (every ``done``); see :class:`~callbacks.CSVStatsCallback`
    :param log_dir: folder of the zips (None: the training env's Monitor folder, i.e. rl-zoo3's run folder)
    :param verbose: Verbosity level: 0 for no output, 1 for info messages, 2 for debug messages
    """

    def __init__(
        self,
        save_freq_episodes: int = 100,
        name_prefix: str = "model_episode",
        episode_stats: EpisodeStats = "monitor",
        log_dir: str | None = None,
        verbose: int = 1,
    ):
        super().__init__(log_dir, verbose)
        if save_freq_episodes < 1:
            raise ValueError(f"save_freq_episodes must be >= 1, got {save_freq_episodes}")
        self.save_freq_episodes = save_freq_episodes
        self.name_prefix = name_prefix
        self._scores = EpisodeScores(episode_stats)
        self.episodes = 0
        self._pending: int | None = None

    def _on_step(self) -> bool:
        for _ in self._scores.update(self.locals["rewards"], self.locals["dones"], self.locals["infos"]):
            self.episodes += 1
            if self.episodes % self.save_freq_episodes == 0:
                self._pending = self.episodes
        return True

    def _on_rollout_start(self) -> None:
        self._save_pending()

    def _on_training_end(self) -> None:
        self._save_pending()

    def _save_pending(self) -> None:
        if self._pending is None:
            return
        assert self.log_dir is not None
        path = atomic_save_model(self.model, Path(self.log_dir) / f"{self.name_prefix}_{self._pending}.zip")
        self._pending = None
        if self.verbose >= 1:
            print(f"Episode {self.episodes}, step {self.num_timesteps}: model saved to {path}")
