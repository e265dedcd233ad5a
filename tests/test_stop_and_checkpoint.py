"""StopTrainingOnRunningScore, EpisodeCheckpointCallback and NonFiniteLossCallback on the real Breakout env."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch as th
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback

from callbacks import (
    Checkpoint,
    CheckpointError,
    CSVStatsCallback,
    EpisodeCheckpointCallback,
    NonFiniteLossCallback,
    NonFiniteTrainingError,
    StopTrainingOnRunningScore,
    latest_checkpoint,
    read_replay_buffer,
)
from callbacks.checkpoint import find_checkpoints
from tests.conftest import breakout_env, small_breakout_dqn


def test_stops_with_a_saved_model_when_the_running_score_exceeds_the_threshold(tmp_path):
    env = breakout_env()
    model = small_breakout_dqn(env)
    csv_callback = CSVStatsCallback(log_dir=str(tmp_path), window=2)
    stop = StopTrainingOnRunningScore(threshold=-1.0, window=2, log_dir=str(tmp_path))
    model.learn(5_000, callback=[csv_callback, stop])
    env.close()
    assert stop.solved
    assert stop.episodes == 2
    assert model.num_timesteps < 5_000
    with open(tmp_path / "training_stats.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    # It judged exactly the Running Reward the CSV reports.
    assert len(rows) == 2
    assert float(rows[-1][7]) == pytest.approx(stop.running_score, abs=1e-4)
    saved = DQN.load(tmp_path / "solved_model.zip", device="cpu")
    assert saved.num_timesteps == model.num_timesteps


def test_does_not_stop_below_the_threshold_or_before_a_full_window(tmp_path):
    env = breakout_env()
    model = small_breakout_dqn(env)
    stop = StopTrainingOnRunningScore(threshold=-1.0, window=100, log_dir=str(tmp_path))
    never = StopTrainingOnRunningScore(threshold=1000.0, window=1, log_dir=str(tmp_path), model_name="never.zip")
    model.learn(600, callback=[stop, never])
    env.close()
    assert 0 < stop.episodes < 100
    assert not stop.solved and not never.solved
    assert model.num_timesteps == 600
    assert not (tmp_path / "solved_model.zip").exists()


@pytest.fixture(scope="module")
def checkpointed_run(tmp_path_factory):
    """1,200 steps with a complete checkpoint every 2 games, all kept, beside a CSV and a stop rule."""
    folder = tmp_path_factory.mktemp("checkpoints")
    env = breakout_env()
    model = small_breakout_dqn(env)
    csv_callback = CSVStatsCallback(log_dir=str(folder))
    stop = StopTrainingOnRunningScore(threshold=1000.0, window=3, log_dir=str(folder))
    checkpoint = EpisodeCheckpointCallback(save_freq_episodes=2, keep_last=None, log_dir=str(folder))
    model.learn(1_200, callback=[csv_callback, stop, checkpoint])
    env.close()
    return folder, model, checkpoint


def test_checkpoints_every_n_games_are_complete(checkpointed_run):
    folder, _, checkpoint = checkpointed_run
    paths = find_checkpoints(folder)
    assert checkpoint.episodes >= 4
    assert len(paths) == checkpoint.episodes // 2 + 1  # and the end of training's
    assert Checkpoint.read(paths[0]).num_timesteps == 1_200
    assert [p.name for p in (folder / "checkpoints").iterdir() if p.name.startswith(".")] == []
    oldest = Checkpoint.read(paths[-1])
    assert sorted(p.name for p in paths[-1].iterdir()) == ["model.zip", "replay_buffer.zst", "rng.pkl", "state.json"]
    assert oldest.episodes == 2
    saved = DQN.load(oldest.model_path, device="cpu")
    assert saved.num_timesteps == oldest.num_timesteps
    # The zip holds the target network beside the online one, and the optimizer.
    assert any(k.startswith("q_net_target.") for k in saved.policy.state_dict())
    assert saved.policy.optimizer.state_dict()["state"]
    # The replay buffer holds every transition up to the checkpoint's step.
    replay = read_replay_buffer(oldest.replay_path)
    assert replay.size() == oldest.num_timesteps


def test_checkpoint_state_holds_the_other_callbacks(checkpointed_run):
    folder, _, _ = checkpointed_run
    newest = latest_checkpoint(folder)
    state = json.loads((newest.path / "state.json").read_text())
    assert state["callbacks"]["EpisodeCheckpointCallback"]["episodes"] == newest.episodes
    assert state["callbacks"]["CSVStatsCallback"]["episode"] == newest.episodes
    assert len(state["callbacks"]["StopTrainingOnRunningScore"]["recent_scores"]) == 3
    with open(folder / "training_stats.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    scores = [float(r[1]) for r in rows[: newest.episodes]]
    assert state["callbacks"]["CSVStatsCallback"]["recent_scores"] == scores
    assert state["total_timesteps"] == 1_200


def test_a_torn_newest_checkpoint_is_skipped_for_the_previous_one(checkpointed_run, tmp_path):
    folder, _, _ = checkpointed_run
    copy = tmp_path / "run"
    shutil.copytree(folder, copy)
    newest, previous = find_checkpoints(copy)[:2]
    zip_path = newest / "model.zip"
    zip_path.write_bytes(zip_path.read_bytes()[:1000])
    with pytest.warns(UserWarning, match="torn"):
        assert latest_checkpoint(copy).path == previous
    (previous / "state.json").unlink()
    with pytest.warns(UserWarning):
        assert latest_checkpoint(copy).path == find_checkpoints(copy)[2]


def test_keeps_the_last_k_and_checkpoints_every_n_steps(tmp_path):
    env = breakout_env()
    model = small_breakout_dqn(env)
    checkpoint = EpisodeCheckpointCallback(
        save_freq_episodes=None, save_freq_steps=200, keep_last=2, save_replay_buffer=False, log_dir=str(tmp_path)
    )
    model.learn(1_000, callback=checkpoint)
    env.close()
    steps = [Checkpoint.read(p).num_timesteps for p in find_checkpoints(tmp_path)]
    assert len(steps) == 2
    assert steps[0] - steps[1] >= 200 and steps[0] >= 800
    newest = latest_checkpoint(tmp_path)
    assert not newest.has_replay_buffer and newest.replay_path is None
    assert sorted(p.name for p in newest.path.iterdir()) == ["model.zip", "rng.pkl", "state.json"]


class AtStep(BaseCallback):
    """Does something to the model once, at the given step (a test's injected fault)."""

    def __init__(self, step: int):
        super().__init__()
        self.step = step

    def _on_step(self) -> bool:
        if self.num_timesteps == self.step:
            self.act(self.model)
        return True

    def act(self, model) -> None:
        raise NotImplementedError


class FailSaveAfter(AtStep):
    """Makes model.save fail half-way through from the given step on (a full disk)."""

    def act(self, model) -> None:
        def save(path, *args, **kwargs):
            path.write(b"half a zip")
            raise OSError(28, "No space left on device")

        model.save = save


def saved_zips(folder) -> dict[str, bytes]:
    return {p.name: (p / "model.zip").read_bytes() for p in find_checkpoints(folder)}


def checkpointed_model(folder):
    """300 steps of the recipe's DQN with a checkpoint after every game, all kept."""
    env = breakout_env()
    model = small_breakout_dqn(env)
    checkpoint = EpisodeCheckpointCallback(save_freq_episodes=1, keep_last=None, log_dir=str(folder))
    model.learn(300, callback=checkpoint)
    assert saved_zips(folder)
    return env, model, checkpoint


def test_a_full_disk_while_saving_leaves_the_previous_checkpoint_intact(tmp_path):
    env, model, checkpoint = checkpointed_model(tmp_path)
    before = saved_zips(tmp_path)
    with pytest.raises(CheckpointError, match="No space left on device"):
        model.learn(2_000, callback=[checkpoint, FailSaveAfter(model.num_timesteps + 1)], reset_num_timesteps=False)
    env.close()
    assert saved_zips(tmp_path) == before
    assert [p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")] == []


def test_a_half_written_checkpoint_left_by_a_crash_is_cleared_and_ignored(tmp_path):
    torn = tmp_path / "checkpoints" / ".step_0000000004.tmp"
    torn.mkdir(parents=True)
    (torn / "model.zip").write_bytes(b"half")
    assert latest_checkpoint(tmp_path) is None
    env = breakout_env()
    model = small_breakout_dqn(env)
    model.learn(8, callback=EpisodeCheckpointCallback(save_freq_steps=4, log_dir=str(tmp_path)))
    env.close()
    assert not torn.exists()
    assert latest_checkpoint(tmp_path).num_timesteps == 8


def test_an_unwritable_log_folder_is_a_clear_error(tmp_path):
    (tmp_path / "checkpoints").write_text("a file where the checkpoints folder should be")
    env = breakout_env()
    model = small_breakout_dqn(env)
    checkpoint = EpisodeCheckpointCallback(save_freq_episodes=1, log_dir=str(tmp_path))
    with pytest.raises(CheckpointError, match="cannot write checkpoint"):
        model.learn(400, callback=checkpoint)
    env.close()


class PoisonWeights(AtStep):
    """Injects a NaN into the online network's first layer at the given step."""

    def act(self, model) -> None:
        with th.no_grad():
            model.q_net.features_extractor.cnn[0].weight[0, 0, 0, 0] = float("nan")


def test_a_non_finite_loss_stops_training_naming_the_step_and_no_checkpoint_is_written(tmp_path):
    env, model, checkpoint = checkpointed_model(tmp_path)
    good = saved_zips(tmp_path)
    poison_step = model.num_timesteps + 2
    with pytest.raises(NonFiniteTrainingError, match=r"non-finite loss \(nan\) at step (\d+)") as error:
        model.learn(
            2_000,
            callback=[NonFiniteLossCallback(), checkpoint, PoisonWeights(poison_step)],
            reset_num_timesteps=False,
        )
    env.close()
    step = int(error.value.args[0].split("at step ")[1].split(",")[0])
    assert poison_step < step <= poison_step + 8
    assert saved_zips(tmp_path) == good


def test_a_model_with_a_non_finite_weight_is_never_checkpointed(tmp_path):
    env = breakout_env()
    model = small_breakout_dqn(env)
    checkpoint = EpisodeCheckpointCallback(save_freq_episodes=1, log_dir=str(tmp_path))
    model.learn(40, callback=checkpoint)
    before = find_checkpoints(tmp_path)  # the end of training's, at step 40
    with th.no_grad():
        model.q_net.q_net[0].bias[0] = float("inf")
    with pytest.raises(NonFiniteTrainingError, match=r"q_net\.q_net\.0\.bias"):
        checkpoint.save()
    env.close()
    assert [p.name for p in before] == ["step_0000000040"]
    assert find_checkpoints(tmp_path) == before
    assert not list((tmp_path / "checkpoints").glob(".*")), "no half-written checkpoint"


def test_save_at_end_false_leaves_the_end_of_learn_unsaved(tmp_path):
    """For learn() called in chunks that are not the end of a run (a benchmark's timed chunks)."""
    env = breakout_env()
    model = small_breakout_dqn(env)
    model.learn(
        40, callback=EpisodeCheckpointCallback(save_freq_episodes=1000, save_at_end=False, log_dir=str(tmp_path))
    )
    env.close()
    assert find_checkpoints(tmp_path) == []
