"""The files a run reads back, each read, version-checked and written in one place: a checkpoint's ``state.json``
(``CheckpointState``) and the run's ``resume.json`` (``RunSpec``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from stable_baselines3 import DQN
from stable_baselines3.common.env_util import make_vec_env

from breakout_sb3.cli import main
from breakout_sb3.errors import BreakoutSB3Error
from breakout_sb3.run_spec import RESUME_FILE, RESUME_FORMAT, RunSpec
from callbacks import CSVStatsCallback, EpisodeCheckpointCallback
from callbacks.checkpoint import (
    BrokenCheckpointError,
    Checkpoint,
    CheckpointState,
    FileRecord,
    file_sha256,
    find_checkpoints,
    state_sha256,
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A real checkpoint (model, replay buffer, RNG, state) of plain SB3 DQN on CartPole, 200 steps."""
    folder = tmp_path_factory.mktemp("run")
    env = make_vec_env("CartPole-v1", n_envs=1, seed=0, monitor_dir=str(folder))
    model = DQN("MlpPolicy", env, buffer_size=500, learning_starts=50, seed=0, device="cpu")
    model.learn(200, callback=[CSVStatsCallback(), EpisodeCheckpointCallback(save_freq_episodes=None)])
    env.close()
    (path,) = find_checkpoints(folder)
    return path


def rewrite_state(folder: Path, change, sign: bool = True) -> None:
    """Change ``folder``'s state.json with ``change(state)``, its SHA-256 written anew (as a writer of it would)."""
    state = json.loads((folder / "state.json").read_text())
    change(state)
    if sign:
        state["sha256"] = state_sha256(state)
    (folder / "state.json").write_text(json.dumps(state))


def copy_of(checkpoint: Path, tmp_path: Path) -> Path:
    copy = tmp_path / checkpoint.name
    copy.mkdir()
    for file in checkpoint.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    return copy


def test_the_state_read_is_the_state_written(checkpoint):
    saved = json.loads((checkpoint / "state.json").read_text())
    state = Checkpoint.read(checkpoint).state
    assert state.to_json() == saved  # every field, and the SHA-256 over them
    assert (state.format, state.num_timesteps, state.total_timesteps) == (3, 200, 200)
    assert state.episodes == saved["episodes"] > 0 and state.episode_stats == "monitor"
    model = checkpoint / "model.zip"
    assert state.files["model.zip"] == FileRecord(size=model.stat().st_size, sha256=file_sha256(model))
    assert set(state.files) == {"model.zip", "replay_buffer.zst", "rng.pkl"}
    assert state.monitor_files == {"0.monitor.csv": (checkpoint.parents[1] / "0.monitor.csv").stat().st_size}
    assert state.callbacks["CSVStatsCallback"]["episode"] == state.episodes


def test_formats_1_and_2_read_as_before(checkpoint, tmp_path):
    """Format 2: files by size alone, no SHA-256 of the state; format 1: no Monitor sizes, SB3's pickled buffer."""
    copy = copy_of(checkpoint, tmp_path)
    sizes = {name: (copy / name).stat().st_size for name in ("model.zip", "replay_buffer.zst", "rng.pkl")}

    def format_2(state):
        state["format"], state["files"] = 2, sizes
        del state["sha256"], state["episode_stats"]  # older than the SHA-256s, and than episode_stats

    rewrite_state(copy, format_2, sign=False)
    old = Checkpoint.read(copy)
    assert old.state.format == 2 and old.state.episode_stats == "monitor"
    assert old.state.files == {name: FileRecord(size=size, sha256=None) for name, size in sizes.items()}
    assert old.state.monitor_files is not None and old.has_replay_buffer

    def format_1(state):
        state["format"] = 1
        del state["monitor_files"]

    rewrite_state(copy, format_1, sign=False)
    old = Checkpoint.read(copy)
    assert old.state.format == 1 and old.state.monitor_files is None
    (copy / "model.zip").write_bytes((copy / "model.zip").read_bytes()[:-1])
    with pytest.raises(BrokenCheckpointError, match=re.escape("model.zip is torn")):  # sizes still checked
        Checkpoint.read(copy)


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda state: state.update(format=4), "state.json: unknown checkpoint format 4"),
        (lambda state: state.update(format="3"), "state.json: unknown checkpoint format '3'"),
        (lambda state: state.pop("format"), "state.json: unknown checkpoint format None"),
        (lambda state: state.pop("total_timesteps"), "state.json: 'total_timesteps' is missing"),
        (lambda state: state.pop("files"), "state.json: 'files' is missing"),
        (lambda state: state.update(episodes="12"), "state.json: 'episodes' should be a valid integer, got '12'"),
        (lambda state: state.update(episodes=True), "state.json: 'episodes' should be a valid integer, got True"),
        (lambda state: state.update(time="now"), "state.json: 'time' should be a valid number, got 'now'"),
        (lambda state: state.update(episode_stats="games"), "state.json: 'episode_stats' should be 'monitor' or "),
        (lambda state: state["files"]["rng.pkl"].update(size="9"), "state.json: 'files.rng.pkl.size' should be a "),
        (lambda state: state["files"]["rng.pkl"].pop("sha256"), "state.json: 'files.rng.pkl.sha256' is missing"),
        (lambda state: state.update(monitor_files=[]), "state.json: 'monitor_files' should be a valid dictionary"),
        (lambda state: state["callbacks"].update(CSVStatsCallback=3), "state.json: 'callbacks.CSVStatsCallback' "),
    ],
)
def test_a_state_of_unknown_format_or_with_a_bad_field_is_one_line_naming_the_file(
    checkpoint, tmp_path, change, reason
):
    copy = copy_of(checkpoint, tmp_path)
    rewrite_state(copy, change)
    with pytest.raises(BrokenCheckpointError) as error:
        Checkpoint.read(copy)
    message = str(error.value)
    assert message.startswith(f"{copy}: {reason}") and len(message.splitlines()) == 1
    with pytest.raises(BrokenCheckpointError) as error:
        CheckpointState.read(copy)  # the one place that reads it
    assert error.value.path == copy and error.value.reason.startswith(reason)


def test_a_state_changed_without_its_sha256_is_corrupt_before_any_field_is_read(checkpoint, tmp_path):
    copy = copy_of(checkpoint, tmp_path)
    rewrite_state(copy, lambda state: state.pop("total_timesteps"), sign=False)
    with pytest.raises(BrokenCheckpointError, match=re.escape("state.json is corrupt")):
        Checkpoint.read(copy)
    (copy / "state.json").write_text("[3]")
    with pytest.raises(BrokenCheckpointError, match=re.escape("state.json: unknown checkpoint format [3]")):
        Checkpoint.read(copy)
    (copy / "state.json").write_text('{"format": 3,')
    with pytest.raises(BrokenCheckpointError, match=re.escape("state.json is unreadable")):
        Checkpoint.read(copy)


def test_check_names_a_bad_field_of_a_checkpoint_s_state(checkpoint, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    copy = copy_of(checkpoint, run / "checkpoints")
    rewrite_state(copy, lambda state: state.update(num_timesteps=None))
    main(["check", str(run), "--json"])
    (status,) = json.loads(capsys.readouterr().out)["checkpoints"]
    assert status["problem"] == "state.json: 'num_timesteps' should be a valid integer, got None"


SPEC = {"argv": ["--algo", "dqn"], "conf_file": "env/hyperparams.yml", "config_entry": None, "checkpoint_options": {}}


def write_resume_json(run_dir: Path, content) -> Path:
    run_dir.mkdir(exist_ok=True)
    (run_dir / RESUME_FILE).write_text(json.dumps(content))
    return run_dir


def test_resume_json_reads_its_format_and_writes_what_it_read(tmp_path):
    run = write_resume_json(tmp_path / "run", {"format": 2, **SPEC, "precision": "bf16"})
    spec, version, notes = RunSpec.read(run)
    assert (version, notes) == (2, [])
    assert spec == RunSpec(["--algo", "dqn"], "env/hyperparams.yml", None, {}, "bf16")
    spec.write(run)
    assert json.loads((run / RESUME_FILE).read_text()) == {"format": RESUME_FORMAT, **SPEC, "precision": "bf16"}
    # a run started before --precision existed trains in float32
    write_resume_json(run, {"format": 2, **SPEC})
    assert RunSpec.read(run)[0].precision == "float32"


@pytest.mark.parametrize(
    "content, reason",
    [
        ({"format": 3, **SPEC}, "resume.json of unknown format 3"),
        ({"format": "2", **SPEC}, "resume.json of unknown format '2'"),
        (SPEC, "resume.json has no format"),
        ([2], "resume.json has no format"),
        ({"format": 2, **SPEC, "argv": "--algo dqn"}, "resume.json: 'argv' should be a valid list, got '--algo dqn'"),
        ({"format": 2, **SPEC, "argv": ["-n", 5]}, "resume.json: 'argv.1' should be a valid string, got 5"),
        ({"format": 2, **SPEC, "conf_file": 7}, "resume.json: 'conf_file' should be a valid string, got 7"),
        ({"format": 2, **SPEC, "precision": 16}, "resume.json: 'precision' should be a valid string, got 16"),
        ({"format": 2, **SPEC, "checkpoint_options": []}, "resume.json: 'checkpoint_options' should be a valid dict"),
        ({"format": 1, "argv": "--algo dqn"}, "resume.json: 'argv' should be a valid list"),
    ],
)
def test_resume_json_of_unknown_format_or_with_a_bad_field_is_one_line(tmp_path, content, reason):
    run = write_resume_json(tmp_path / "run", content)
    with pytest.raises(BreakoutSB3Error) as error:
        RunSpec.read(run)
    assert str(error.value).startswith(f"{run}: {reason}") and len(str(error.value).splitlines()) == 1


@pytest.mark.parametrize("missing", ["argv", "conf_file", "config_entry", "checkpoint_options"])
def test_resume_json_of_format_2_lacking_a_field_is_one_line(tmp_path, missing):
    """None of them is optional: a run resumed without its YAML or its checkpoint flags would train otherwise."""
    run = write_resume_json(tmp_path / "run", {"format": 2, **{k: v for k, v in SPEC.items() if k != missing}})
    with pytest.raises(BreakoutSB3Error, match=f"^{re.escape(f'{run}: resume.json: {missing!r} is missing')}$"):
        RunSpec.read(run)
    assert main(["resume", str(run)]) == 2
