"""One CSV row per finished episode, with the tutorial's columns and honest values."""

from __future__ import annotations

import csv
import io
import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, TextIO

from callbacks.atomic import atomic_write
from callbacks.episodes import EpisodeScores, EpisodeStats, mean_score
from callbacks.run_folder import RunFolderCallback, side_path
from callbacks.validation import PositiveInt, checked_init

CSV_HEADER = (
    "Episode",
    "Total Reward",
    "Epsilon",
    "Avg Reward (Last 100)",
    "Total Frames",
    "Frame Rate",
    "Model Updates",
    "Running Reward",
    "Training Time",
)


class CSVStatsCallback(RunFolderCallback):
    """
    Appends one row per finished episode to a CSV file, flushed as written, with the columns of the DQN Breakout
    tutorial's ``training_stats.csv``:

    - ``Episode``: episode number, from 1, continuing the file's last row
    - ``Total Reward``: the episode's score (see ``episode_stats``)
    - ``Epsilon``: the model's ``exploration_rate`` when the episode ended (empty if it has none)
    - ``Avg Reward (Last 100)``: mean score of the last ``window`` episodes, this one included
    - ``Total Frames``: agent steps so far, ``num_timesteps`` (all envs together)
    - ``Frame Rate``: agent steps per second of wall time since the previous row (since the last row of an earlier
      step, for episodes that ended in the same vector step)
    - ``Model Updates``: gradient steps so far, the model's ``_n_updates``
    - ``Running Reward``: the running score judged by the stop rule, which in the tutorial is the same mean
    - ``Training Time``: wall-clock seconds of training so far, continuing the file's last row

    If the file exists it is appended to: no second header, and the episode count, the running window and the
    training time continue from its rows. A file with another header is refused rather than touched. After
    ``load_state_dict`` (resuming from a checkpoint), rows the file holds beyond the checkpoint's episode are moved
    to a side file ``<stem>.after_episode_<N>[.k].csv`` so the CSV reads as one run.

    Each row is also recorded in SB3's logger under ``<tensorboard_prefix>/`` (``score``, ``running_score``,
    ``epsilon``, ``episode``, ``frame_rate``), so TensorBoard shows them beside ``rollout/`` and ``train/`` at each
    of SB3's log dumps. With ``episode_stats="learner"``, the games ``Monitor`` records are logged there too
    (``game_score``, and ``game_running_score``, the mean of the last ``window`` games), so the game score stays in
    sight beside the tutorial's accounting.

    :param filename: name of the CSV file inside ``log_dir``
    :param log_dir: folder of the file (None: the training env's Monitor folder, i.e. rl-zoo3's run folder)
    :param episode_stats: ``"monitor"``: a row per episode recorded by SB3's ``Monitor`` with its raw return (a
        whole game of all lives under ``AtariWrapper``); ``"learner"``: a row per ``done`` with the sum of the
        rewards learnt from (one life and clipped rewards under ``AtariWrapper``, the tutorial's own accounting)
    :param window: number of episodes averaged in ``Avg Reward (Last 100)`` and ``Running Reward``
    :param tensorboard_prefix: logger key prefix of the per-episode figures (None: not logged)
    :param verbose: Verbosity level: 0 for no output, 1 for info messages, 2 for debug messages
    """

    @checked_init
    def __init__(
        self,
        filename: str = "training_stats.csv",
        log_dir: str | None = None,
        episode_stats: EpisodeStats = "monitor",
        window: PositiveInt = 100,
        tensorboard_prefix: str | None = "episode",
        verbose: int = 0,
    ):
        super().__init__(log_dir, verbose)
        self.filename = filename
        self.episode_stats = episode_stats
        self.window = window
        self.tensorboard_prefix = tensorboard_prefix
        self._scores = EpisodeScores(episode_stats)
        self.recent_scores: deque[float] = deque(maxlen=window)
        # The games Monitor records, when the rows count something else
        self._games = EpisodeScores("monitor") if episode_stats != "monitor" else None
        self.recent_game_scores: deque[float] = deque(maxlen=window)
        self.episode = 0
        self._file: TextIO | None = None
        self._writer = None
        self._time_before = 0.0
        self._restored: dict[str, Any] | None = None

    @property
    def path(self) -> Path:
        assert self.log_dir is not None, "the callback is not initialised yet"
        return Path(self.log_dir) / self.filename

    @property
    def running_score(self) -> float:
        """Mean score over the last ``window`` episodes (nan before the first one)."""
        return mean_score(self.recent_scores)

    def state_dict(self) -> dict[str, Any]:
        return {
            "filename": self.filename,
            "episode": self.episode,
            "recent_scores": list(self.recent_scores),
            "recent_game_scores": list(self.recent_game_scores),
            "training_time": self._time_before + (time.time() - self._start_time if self._file else 0.0),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's state; the file is reconciled with it when training starts."""
        self._restored = state

    def _init_callback(self) -> None:
        super()._init_callback()
        rows = self._read_rows()
        if self._restored is not None:
            self._move_rows_after(self._restored["episode"], rows)
            self.episode = int(self._restored["episode"])
            self._time_before = float(self._restored["training_time"])
            self.recent_scores.clear()
            self.recent_scores.extend(self._restored["recent_scores"])
            self.recent_game_scores.clear()
            self.recent_game_scores.extend(self._restored.get("recent_game_scores", []))
            self._restored = None
        elif rows:
            self.episode = int(rows[-1][0])
            self._time_before = float(rows[-1][8])
            self.recent_scores.clear()
            self.recent_scores.extend(float(row[1]) for row in rows[-self.window :])

    def _read_rows(self) -> list[list[str]]:
        """
        :return: the existing file's rows without the header, after cutting off an incomplete last line (see
            :meth:`_cut_incomplete_last_line`)
        """
        if not self.path.exists() or self.path.stat().st_size == 0:
            return []
        self._cut_incomplete_last_line()
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            return []
        if tuple(rows[0]) != CSV_HEADER:
            raise ValueError(f"{self.path} exists with another header; refusing to append to it")
        return rows[1:]

    def _cut_incomplete_last_line(self) -> None:
        """
        Cut off the file's last line if it is incomplete (no line end, or fewer fields than the header): what a power
        cut or a full disk can leave of a run (each row is one write, so a killed process cannot). Rows appended
        after it would otherwise be glued to it, e.g. a torn ``9`` and the next row ``97,...`` read as episode 997.
        The cut bytes are shown in a note on stderr.
        """
        data = self.path.read_bytes()
        header = ",".join(CSV_HEADER).encode()
        if b"\n" in data:
            ours = data.split(b"\n", 1)[0].removesuffix(b"\r") == header
        else:
            ours = header.startswith(data.removesuffix(b"\r"))  # the header itself, torn
        if not ours:
            return  # another file: refused by the caller, never cut
        end = data.rfind(b"\n") + 1  # after the last whole line
        start = data.rfind(b"\n", 0, end - 1) + 1  # the last whole line (0: it is the header)
        if start > 0 and len(next(csv.reader([data[start:end].decode(errors="replace")]), [])) < len(CSV_HEADER):
            end = start
        if end == len(data):
            return
        os.truncate(self.path, end)
        line = data.count(b"\n", 0, end) + 1
        print(
            f"note: {self.path} line {line}: cut an incomplete last line {data[end:]!r} (a run that was killed while "
            "writing it)",
            file=sys.stderr,
        )

    def _move_rows_after(self, episode: int, rows: list[list[str]]) -> None:
        kept = [row for row in rows if int(row[0]) <= episode]
        later = rows[len(kept) :]
        if not later:
            return
        side = side_path(self.path, f"after_episode_{episode}")
        for path, body in ((side, later), (self.path, kept)):
            atomic_write(path, lambda f, body=body: f.write(_csv_bytes([CSV_HEADER, *body])))
        if self.verbose >= 1:
            print(f"{len(later)} rows after episode {episode} moved from {self.path.name} to {side.name}")

    def _on_training_start(self) -> None:
        is_new = not self.path.exists() or self.path.stat().st_size == 0
        self._file = open(self.path, "a", newline="")  # noqa: SIM115  (open for the whole run, closed at its end)
        self._writer = csv.writer(self._file)
        if is_new:
            self._append(CSV_HEADER)
        self._start_time = time.time()
        self._last_row_time = self._start_time
        self._last_row_steps = self.num_timesteps
        # Frame Rate's interval: from the last row at an earlier step (rows of one vector step share it)
        self._rate_since = (self._start_time, self.num_timesteps)

    def _on_step(self) -> bool:
        rewards, dones, infos = self.locals["rewards"], self.locals["dones"], self.locals["infos"]
        for score in self._scores.update(rewards, dones, infos):
            self._write_row(score)
        if self._games is not None:
            for game_score in self._games.update(rewards, dones, infos):
                self.recent_game_scores.append(game_score)
                if self.tensorboard_prefix is not None:
                    self.logger.record(f"{self.tensorboard_prefix}/game_score", game_score)
                    self.logger.record(
                        f"{self.tensorboard_prefix}/game_running_score", mean_score(self.recent_game_scores)
                    )
        return True

    def _write_row(self, score: float) -> None:
        assert self._writer is not None and self._file is not None
        now = time.time()
        self.episode += 1
        self.recent_scores.append(score)
        if self.num_timesteps != self._last_row_steps:
            self._rate_since = (self._last_row_time, self._last_row_steps)
        since_time, since_steps = self._rate_since
        elapsed = now - since_time
        frame_rate = (self.num_timesteps - since_steps) / elapsed if elapsed > 0 else 0.0
        epsilon = getattr(self.model, "exploration_rate", None)
        running_score = self.running_score
        self._append(
            [
                self.episode,
                f"{score:g}",
                "" if epsilon is None else f"{epsilon:.6f}",
                f"{running_score:.4f}",
                self.num_timesteps,
                f"{frame_rate:.1f}",
                self.model._n_updates,
                f"{running_score:.4f}",
                f"{self._time_before + now - self._start_time:.1f}",
            ]
        )
        if self.tensorboard_prefix is not None:
            prefix = self.tensorboard_prefix
            self.logger.record(f"{prefix}/score", score)
            self.logger.record(f"{prefix}/running_score", running_score)
            self.logger.record(f"{prefix}/episode", self.episode)
            self.logger.record(f"{prefix}/frame_rate", frame_rate)
            if epsilon is not None:
                self.logger.record(f"{prefix}/epsilon", epsilon)
        self._last_row_time = now
        self._last_row_steps = self.num_timesteps

    def _append(self, row: Any) -> None:
        """Write ``row`` to the file now (one ``write()``), or raise an ``OSError`` naming the file (a full disk)."""
        assert self._writer is not None and self._file is not None
        try:
            self._writer.writerow(row)
            self._file.flush()
        except OSError as e:
            raise OSError(e.errno, e.strerror or str(e), str(self.path)) from e

    def _on_training_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            # the clock stops: a checkpoint written at the end, or a further learn(), continues from here
            self._time_before += time.time() - self._start_time


def _csv_bytes(rows: list) -> bytes:
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode()
