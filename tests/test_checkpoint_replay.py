"""Compressed replay buffers in checkpoints: exact round trips, torn and corrupt files, loading into a plain DQN."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
import zstandard
from stable_baselines3 import DQN
from stable_baselines3.common.buffers import ReplayBuffer

from breakout_sb3.fast import FrameStackReplayBuffer
from breakout_sb3.resume import roll_back_monitor_files
from callbacks import (
    Checkpoint,
    EpisodeCheckpointCallback,
    ReplayBufferFileError,
    latest_checkpoint,
    load_replay_buffer,
    read_replay_buffer,
    save_replay_buffer,
)
from callbacks.checkpoint import find_checkpoints, monitor_file_sizes
from tests.conftest import breakout_env, small_breakout_dqn


def assert_same_buffer(saved: ReplayBuffer, loaded: ReplayBuffer) -> None:
    """The loaded buffer is the saved one: same class, every attribute, every array with its dtype and shape."""
    assert type(loaded) is type(saved)
    state, loaded_state = saved.__getstate__(), loaded.__getstate__()
    assert loaded_state.keys() == state.keys()
    for key, value in state.items():
        other = loaded_state[key]
        if isinstance(value, np.ndarray):
            assert other.dtype == value.dtype and other.shape == value.shape, key
            assert np.array_equal(other, value), key
        else:
            assert other == value, key


def trained_replay(steps: int, **overrides) -> ReplayBuffer:
    """The replay buffer of the recipe's DQN after ``steps`` real Breakout steps (no gradient step: faster)."""
    env = breakout_env()
    model = small_breakout_dqn(env, learning_starts=10_000, **overrides)
    model.learn(steps)
    env.close()
    return model.replay_buffer


@pytest.mark.parametrize(
    ("steps", "overrides"),
    [
        (150, {"buffer_size": 400}),  # partly filled
        (500, {"buffer_size": 400}),  # full, wrapped around
        (
            150,
            {
                "buffer_size": 400,
                "optimize_memory_usage": True,
                "replay_buffer_kwargs": {"handle_timeout_termination": False},
            },
        ),
        (500, {"buffer_size": 400, "replay_buffer_class": FrameStackReplayBuffer}),
    ],
    ids=["sb3-partly-filled", "sb3-full", "sb3-optimize-memory", "frame-stack"],
)
def test_a_saved_replay_buffer_loads_back_exactly(tmp_path, steps, overrides):
    replay = trained_replay(steps, **overrides)
    path = save_replay_buffer(replay, tmp_path / "replay_buffer.zst")
    loaded = read_replay_buffer(path)
    assert_same_buffer(replay, loaded)
    # and it samples the same transitions
    np.random.seed(0)
    expected = replay.sample(32)
    np.random.seed(0)
    actual = loaded.sample(32)
    for a, b in zip(expected, actual, strict=True):
        assert (a is None and b is None) or np.array_equal(a.numpy(), b.numpy())


def test_only_the_filled_part_of_sb3s_buffer_is_stored(tmp_path):
    replay = trained_replay(100, buffer_size=2_000)
    path = save_replay_buffer(replay, tmp_path / "replay_buffer.zst")
    with open(path, "rb") as f, zstandard.ZstdDecompressor().stream_reader(f) as stream:
        content = stream.read()
    per_transition = replay.observations[0].nbytes + replay.next_observations[0].nbytes
    # the 100 transitions stored, not the 2,000 slots; and the pickled rest (spaces, positions, ...) is small
    assert 100 * per_transition < len(content) < 100 * per_transition + 200_000
    assert path.stat().st_size < len(content) / 10  # Breakout frames compress well


def corrupt_middle(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["truncated", "checksum", "flipped", "not-zstd", "empty"])
def test_a_torn_or_corrupt_replay_file_is_a_clear_error(tmp_path, damage):
    replay = trained_replay(200, buffer_size=400)
    path = save_replay_buffer(replay, tmp_path / "replay_buffer.zst")
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) * 2 // 3])
    elif damage == "checksum":
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    elif damage == "flipped":
        corrupt_middle(path)
    elif damage == "not-zstd":
        path.write_bytes(b"not a replay buffer")
    else:
        path.write_bytes(b"")
    with pytest.raises(ReplayBufferFileError, match=r"replay_buffer\.zst: ") as error:
        read_replay_buffer(path)
    assert len(str(error.value).splitlines()) == 1


def test_a_plain_dqn_loads_a_checkpoint_and_its_replay_and_trains_on(tmp_path):
    env = breakout_env()
    model = small_breakout_dqn(env, buffer_size=1_000)
    model.learn(300, callback=EpisodeCheckpointCallback(save_freq_steps=300, log_dir=str(tmp_path)))
    checkpoint = latest_checkpoint(tmp_path)
    # The README's snippet
    loaded = DQN.load(checkpoint.model_path, env=env, device="cpu")
    load_replay_buffer(loaded, checkpoint.replay_path)
    assert_same_buffer(model.replay_buffer, loaded.replay_buffer)
    assert loaded.replay_buffer.device == loaded.device
    loaded.learn(100, reset_num_timesteps=False)
    env.close()
    assert loaded.num_timesteps == 400
    assert loaded.replay_buffer.size() == 400


def test_a_format_1_pickle_still_loads(tmp_path):
    replay = trained_replay(120, buffer_size=400)
    with open(tmp_path / "replay_buffer.pkl", "wb") as f:
        pickle.dump(replay, f)
    assert_same_buffer(replay, read_replay_buffer(tmp_path / "replay_buffer.pkl"))


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("replay_checkpoints")
    env = breakout_env(monitor_dir=str(folder))
    model = small_breakout_dqn(env, buffer_size=1_000)
    model.learn(400, callback=EpisodeCheckpointCallback(save_freq_steps=200, keep_last=None, log_dir=str(folder)))
    env.close()
    return folder


def test_checkpoint_read_detects_a_torn_or_overwritten_replay_file(two_checkpoints, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(two_checkpoints, copy)
    newest, previous = find_checkpoints(copy)
    replay = newest / "replay_buffer.zst"
    replay.write_bytes(replay.read_bytes()[:-10])
    with pytest.warns(UserWarning, match=r"replay_buffer\.zst is torn \([\d,]+ bytes, [\d,]+ written\)"):
        assert latest_checkpoint(copy).path == previous
    data = bytearray((previous / "replay_buffer.zst").read_bytes())
    data[:4] = b"\0\0\0\0"  # same size, but no zstd frame
    (previous / "replay_buffer.zst").write_bytes(bytes(data))
    with pytest.warns(UserWarning) as warned:
        assert latest_checkpoint(copy) is None
    assert "replay_buffer.zst is corrupt (its SHA-256 is not the one written)" in str(warned[-1].message)


def test_a_checkpoint_records_its_monitor_files(two_checkpoints):
    newest = Checkpoint.read(find_checkpoints(two_checkpoints)[0])
    state = json.loads((newest.path / "state.json").read_text())
    assert state["format"] == 3
    assert list(state["monitor_files"]) == ["0.monitor.csv"]
    lines = (two_checkpoints / "0.monitor.csv").read_bytes()[: state["monitor_files"]["0.monitor.csv"]].splitlines()
    assert lines[0].startswith(b"#") and lines[1] == b"r,l,t"
    assert len(lines) - 2 == newest.episodes  # every game finished by the checkpoint, no more
    assert monitor_file_sizes(two_checkpoints)["0.monitor.csv"] >= state["monitor_files"]["0.monitor.csv"]


def test_rolling_back_monitor_files_moves_later_rows_aside_and_reports_missing_ones(two_checkpoints, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(two_checkpoints, copy)
    previous = Checkpoint.read(find_checkpoints(copy)[1])
    monitor = copy / "0.monitor.csv"
    before = monitor.read_bytes()
    size = previous.state.monitor_files["0.monitor.csv"]
    assert len(before) > size, "the test needs games after the older checkpoint"
    roll_back_monitor_files(previous, copy)
    side = copy / f"0.monitor.after_step_{previous.num_timesteps}.csv"
    header = b"".join(before.splitlines(keepends=True)[:2])
    assert monitor.read_bytes() == before[:size]
    assert side.read_bytes() == header + before[size:]
    later_rows = len(before[size:].splitlines())
    assert capsys.readouterr().out.strip() == (
        f"{later_rows} rows after step {previous.num_timesteps} moved from 0.monitor.csv to {side.name}"
    )
    roll_back_monitor_files(previous, copy)  # nothing more to move
    assert capsys.readouterr().out == ""

    monitor.write_bytes(before[: size // 2])
    roll_back_monitor_files(previous, copy)
    assert capsys.readouterr().out.strip() == (
        f"0.monitor.csv is shorter ({size // 2} bytes) than at step {previous.num_timesteps} ({size} bytes): "
        "not rolled back"
    )
    monitor.unlink()
    roll_back_monitor_files(previous, copy)
    out = capsys.readouterr().out.strip()
    assert out.startswith("0.monitor.csv is missing") and len(out.splitlines()) == 1
