"""CSVStatsCallback: header, row values, flushing, the tutorial's accounting, and appending on resume."""

from __future__ import annotations

import csv

import pytest
from stable_baselines3.common.callbacks import BaseCallback

from callbacks import CSV_HEADER, CSVStatsCallback, TwoPhaseEpsilonCallback
from tests.conftest import breakout_env, small_breakout_dqn

TUTORIAL_HEADER = (
    "Episode,Total Reward,Epsilon,Avg Reward (Last 100),Total Frames,Frame Rate,Model Updates,Running Reward,"
    "Training Time"
)


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


class AssertFlushed(BaseCallback):
    """After every step, the CSV on disk holds exactly the rows the CSV callback has written."""

    def __init__(self, csv_callback: CSVStatsCallback):
        super().__init__()
        self.csv_callback = csv_callback
        self.checked = 0

    def _on_step(self) -> bool:
        rows = read_rows(self.csv_callback.path)
        assert len(rows) == 1 + self.csv_callback.episode - self.first_episode
        self.checked += 1
        return True

    def _on_training_start(self) -> None:
        self.first_episode = self.csv_callback.episode


@pytest.fixture(scope="module")
def monitored_run(tmp_path_factory):
    """1,500 steps of the recipe's DQN (small replay) on Breakout, with the CSV in the Monitor's folder."""
    folder = tmp_path_factory.mktemp("csv_run")
    env = breakout_env(monitor_dir=str(folder))
    model = small_breakout_dqn(env)
    csv_callback = CSVStatsCallback()
    epsilon = TwoPhaseEpsilonCallback(random_steps=200, first_decay_steps=1000, second_decay_steps=1000)
    flushed = AssertFlushed(csv_callback)
    model.learn(1_500, callback=[epsilon, csv_callback, flushed])
    env.close()
    return folder, csv_callback, epsilon, flushed


def test_header_is_exactly_the_tutorials(monitored_run):
    folder, *_ = monitored_run
    assert ",".join(CSV_HEADER) == TUTORIAL_HEADER
    assert (folder / "training_stats.csv").read_text().splitlines()[0] == TUTORIAL_HEADER


def test_rows_are_full_games_with_raw_scores(monitored_run):
    folder, _, _, flushed = monitored_run
    rows = read_rows(folder / "training_stats.csv")[1:]
    monitor = read_rows(folder / "0.monitor.csv")[2:]  # after the JSON comment line and the header r,l,t
    assert len(rows) >= 3
    assert len(rows) == len(monitor)
    assert [float(r[1]) for r in rows] == [float(m[0]) for m in monitor]
    assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1))
    assert flushed.checked > 0


def test_row_values_are_honest(monitored_run):
    folder, _, epsilon, _ = monitored_run
    rows = read_rows(folder / "training_stats.csv")[1:]
    scores = []
    previous_frames, previous_time = 0, 0.0
    for row in rows:
        _, score, eps, avg, frames, rate, updates, running, train_time = row
        scores.append(float(score))
        frames = int(frames)
        assert frames > previous_frames
        # Model Updates: gradient steps done before this step, one per 4 steps once the replay holds > 32.
        assert int(updates) == max(0, (frames - 1) // 4 - 8)
        # Epsilon: the one in effect for the episode's last action (schedule of the step before).
        assert float(eps) == pytest.approx(epsilon.schedule.value(frames - 1), abs=1e-6)
        assert float(avg) == pytest.approx(sum(scores[-100:]) / len(scores[-100:]), abs=1e-4)
        assert running == avg
        assert float(rate) > 0
        assert float(train_time) >= previous_time
        previous_frames, previous_time = frames, float(train_time)


def test_tutorial_accounting_counts_lives_and_clipped_rewards(tmp_path):
    env = breakout_env()
    model = small_breakout_dqn(env)
    games = CSVStatsCallback(filename="games.csv", log_dir=str(tmp_path))
    lives = CSVStatsCallback(filename="lives.csv", log_dir=str(tmp_path), episode_stats="learner")
    model.learn(1_200, callback=[games, lives], log_interval=None)  # no log dump: the last recorded values stay
    env.close()
    game_rows = read_rows(tmp_path / "games.csv")[1:]
    life_rows = read_rows(tmp_path / "lives.csv")[1:]
    # The game score stays in sight beside the tutorial's accounting: the learner callback logs Monitor's games too
    game_scores = [float(r[1]) for r in game_rows]
    assert list(lives.recent_game_scores) == game_scores
    logged = model.logger.name_to_value
    assert logged["episode/game_score"] == game_scores[-1]
    assert logged["episode/game_running_score"] == pytest.approx(sum(game_scores) / len(game_scores))
    # Breakout has 5 lives: every game ends with its 5th life, and no life outlives its game by much.
    assert len(life_rows) >= 5 * len(game_rows) > 0
    life_frames = [int(r[4]) for r in life_rows]
    for game in game_rows:
        assert int(game[4]) in life_frames
        ended_lives = sum(1 for f in life_frames if f <= int(game[4]))
        assert ended_lives % 5 == 0
    # Clipped rewards: each brick counts 1, whatever its colour.
    total_clipped = sum(float(r[1]) for r in life_rows if int(r[4]) <= int(game_rows[-1][4]))
    total_raw = sum(float(r[1]) for r in game_rows)
    assert total_clipped <= total_raw
    assert all(float(r[1]).is_integer() for r in life_rows)


def test_appends_on_resume_and_continues_the_count(tmp_path):
    env = breakout_env()
    model = small_breakout_dqn(env)
    model.learn(700, callback=CSVStatsCallback(log_dir=str(tmp_path)))
    first = read_rows(tmp_path / "training_stats.csv")
    model.learn(700, callback=CSVStatsCallback(log_dir=str(tmp_path)), reset_num_timesteps=False)
    env.close()
    rows = read_rows(tmp_path / "training_stats.csv")
    assert rows[: len(first)] == first
    assert sum(1 for r in rows if r[0] == "Episode") == 1
    body = rows[1:]
    assert [int(r[0]) for r in body] == list(range(1, len(body) + 1))
    assert len(body) > len(first) - 1
    appended = body[len(first) - 1]
    assert int(appended[4]) > int(first[-1][4])  # Total Frames continue
    assert float(appended[8]) >= float(first[-1][8])  # Training Time continues
    scores = [float(r[1]) for r in body]
    assert float(appended[3]) == pytest.approx(sum(scores[: len(first)]) / len(first), abs=1e-4)


def test_refuses_to_append_to_a_file_with_another_header(tmp_path):
    path = tmp_path / "training_stats.csv"
    path.write_text("step,reward\n1,2\n")
    env = breakout_env()
    model = small_breakout_dqn(env)
    with pytest.raises(ValueError, match="another header"):
        model.learn(10, callback=CSVStatsCallback(log_dir=str(tmp_path)))
    env.close()
    assert path.read_text() == "step,reward\n1,2\n"


def test_rejects_unknown_episode_stats():
    with pytest.raises(ValueError, match="episode_stats"):
        CSVStatsCallback(episode_stats="lives")
