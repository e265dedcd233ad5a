"""A run folder stands on its own: copied or moved it resumes with its own values, every checkpoint file is verified
before use, a fallback never deletes the good, every write is whole or absent, and `check` reads a run unchanged."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from stable_baselines3 import DQN

from breakout_sb3 import ENV_ID
from breakout_sb3.cli import main
from breakout_sb3.run_lock import RunLock
from breakout_sb3.run_spec import RunSpec
from callbacks.checkpoint import find_checkpoints, latest_checkpoint, set_aside_checkpoints
from tests.conftest import run_cli, run_folders, write_config

# A folder name a shell splits and a byte-oriented tool mangles: the printed commands must survive it.
ODD_FOLDER = "my logs/é"


def small_config(folder: Path) -> Path:
    """The recipe with a small replay, a checkpoint every 2 games (the newest 3 kept)."""
    callbacks = [
        {"callbacks.TwoPhaseEpsilonCallback": {"random_steps": 100, "first_decay_steps": 1_000}},
        "callbacks.CSVStatsCallback",
        {"callbacks.EpisodeCheckpointCallback": {"save_freq_episodes": 2, "keep_last": 3}},
    ]
    return write_config(folder, callbacks=callbacks, buffer_size=1000)


@pytest.fixture(scope="module")
def odd_run(tmp_path_factory) -> tuple[Path, str]:
    """A 700-step run trained under a folder with a space and a non-ASCII letter; and what train printed."""
    folder = tmp_path_factory.mktemp("odd")
    conf = small_config(folder)
    result = run_cli("train", "--conf-file", str(conf), "-f", ODD_FOLDER, "-n", "700", cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = run_folders(folder / ODD_FOLDER)
    assert len(find_checkpoints(run)) >= 2
    return run, result.stdout


def tree_digest(folder: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``folder`` with its size and SHA-256 (to show nothing was written there)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55
    path.write_bytes(bytes(data))


def copy_of(run: Path, tmp_path: Path, name: str = "copy") -> Path:
    target = tmp_path / name / run.name
    shutil.copytree(run, target, symlinks=True)  # as cp -a: contents and times
    return target


def test_the_printed_hint_is_shell_quoted_and_resume_json_names_nothing_outside_the_run(odd_run):
    run, out = odd_run
    expected = f"Continue this run with: breakout-sb3 resume '{ODD_FOLDER}/dqn/{run.name}' -n STEPS"
    assert expected in out.splitlines()
    assert out.rstrip().splitlines()[-1] == expected, "the hint comes after the last write"
    saved = json.loads((run / "resume.json").read_text())
    assert saved["format"] == 2
    assert saved["conf_file"] == f"{ENV_ID}/hyperparams.yml"
    assert not any(arg.startswith("/") or ODD_FOLDER in arg for arg in saved["argv"]), saved["argv"]
    assert not {"-f", "--conf-file", "-i"} & set(saved["argv"])


def test_a_copied_run_resumes_in_its_new_place_with_its_own_values(odd_run, tmp_path):
    run, _ = odd_run
    original = copy_of(run, tmp_path, "original")
    copy = copy_of(original, tmp_path, ODD_FOLDER)
    # The original's YAML copy edited: the copy must not read it.
    yml = original / ENV_ID / "hyperparams.yml"
    yml.write_text(yml.read_text().replace("gamma: 0.99", "gamma: 0.5"))
    before = tree_digest(original)

    hint = f"breakout-sb3 resume '{ODD_FOLDER}/{copy.name}' -n 100"  # the printed hint, run by a shell
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}  # the venv's breakout-sb3
    result = subprocess.run(["bash", "-c", hint], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert tree_digest(original) == before, "the resume wrote into the original run"
    resumed = DQN.load(copy / f"{ENV_ID}.zip", device="cpu")
    assert resumed.gamma == 0.99
    assert resumed.num_timesteps == 800
    assert f"Continue this run with: breakout-sb3 resume '{ODD_FOLDER}/{copy.name}' -n STEPS" in result.stdout

    # The original gone (a moved run): the copy resumes all the same.
    shutil.rmtree(tmp_path / "original")
    result = run_cli("resume", str(copy), "-n", "8", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert DQN.load(copy / f"{ENV_ID}.zip", device="cpu").num_timesteps == 808


def test_a_format_1_resume_json_of_a_moved_run_uses_the_run_s_own_yaml(odd_run, tmp_path):
    run, _ = odd_run
    copy = copy_of(run, tmp_path)
    spec = json.loads((copy / "resume.json").read_text())
    old = "/old/place/logs/dqn/" + run.name
    legacy = {
        "format": 1,
        "argv": [*spec["argv"], "-f", "/old/place/logs", "--conf-file", f"{old}/{ENV_ID}/hyperparams.yml"],
        "config_entry": None,
        "checkpoint_options": spec["checkpoint_options"],
    }
    (copy / "resume.json").write_text(json.dumps(legacy))
    result = run_cli("resume", str(copy), "-n", "8", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"names the run's YAML at its old place {old}/{ENV_ID}/hyperparams.yml" in result.stderr
    assert json.loads((copy / "resume.json").read_text())["format"] == 2
    assert not (tmp_path / "old").exists()

    (copy / "resume.json").write_text(json.dumps(legacy))
    (copy / ENV_ID / "hyperparams.yml").unlink()
    result = run_cli("resume", str(copy), "-n", "8", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "has no " in result.stderr and "Traceback" not in result.stderr


def test_run_spec_keeps_flags_and_drops_places():
    argv = ["--env", ENV_ID, "-f", "logs", "-i", "a.zip", "--conf-file", "x.yml", "-tb=tb", "-params", "gamma:0.9"]
    spec = RunSpec.of_new_run(argv, "/r", "/r/env/hyperparams.yml", None, {"keep_last": 2})
    assert spec.argv == ["--env", ENV_ID, "-tb", os.path.abspath("tb"), "-params", "gamma:0.9"]
    assert spec.conf_file == "env/hyperparams.yml"
    notes: list[str] = []
    assert spec.train_argv(Path("/new"), notes) == [
        "--env",
        ENV_ID,
        "-params",
        "gamma:0.9",
        "--conf-file",
        "/new/env/hyperparams.yml",
    ]
    assert notes == [f"the run's TensorBoard folder {os.path.abspath('tb')} is gone: no TensorBoard events this time"]


@pytest.mark.parametrize(
    "name, damage, reason",
    [
        ("model.zip", lambda p: p.write_bytes(p.read_bytes()[:-1000]), "model.zip is torn"),
        ("model.zip", flip_a_byte, "model.zip is corrupt"),
        ("replay_buffer.zst", flip_a_byte, "replay_buffer.zst is corrupt"),
        ("rng.pkl", flip_a_byte, "rng.pkl is corrupt"),
        ("rng.pkl", lambda p: p.unlink(), "rng.pkl is missing"),
        ("state.json", lambda p: p.write_text(p.read_text().replace('"episodes": ', '"episodes": 1')), "state.json"),
    ],
)
def test_check_names_the_damaged_file_and_where_resume_would_start(odd_run, tmp_path, capsys, name, damage, reason):
    run, _ = odd_run
    copy = copy_of(run, tmp_path)
    newest, previous = find_checkpoints(copy)[:2]
    damage(newest / name)
    before = tree_digest(copy)
    assert main(["check", str(copy), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert tree_digest(copy) == before, "check changed the run"
    statuses = {c["name"]: c["problem"] for c in report["checkpoints"]}
    assert reason in statuses[newest.name]
    assert statuses[previous.name] is None
    assert report["resume_from"].startswith(previous.name)
    assert report["would_set_aside"] == [newest.name]
    assert report["resumable"] and report["writer"] is None


def test_resume_falls_back_sets_the_broken_aside_and_never_deletes_the_intact(odd_run, tmp_path):
    run, _ = odd_run
    copy = copy_of(run, tmp_path)
    for extra in find_checkpoints(copy)[2:]:
        shutil.rmtree(extra)
    newest, previous = find_checkpoints(copy)
    spec = json.loads((copy / "resume.json").read_text())
    spec["checkpoint_options"]["keep_last"] = 2  # as `train --keep-checkpoints 2`
    (copy / "resume.json").write_text(json.dumps(spec))
    flip_a_byte(newest / "rng.pkl")  # same size: only its checksum tells

    result = run_cli("resume", str(copy), "-n", "8", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"note: skipping checkpoint {newest.name}: rng.pkl is corrupt" in result.stderr
    assert "Warning" not in result.stderr and "warn(" not in result.stderr
    assert f"Set aside {newest.name} as checkpoints/set_aside/{newest.name}: rng.pkl is corrupt" in result.stdout
    assert f"from {previous.name}: " in result.stdout
    step = int(previous.name.split("_")[1]) + 8
    # The checkpoint it started from stays beside the new one; the broken one is set aside, not counted, not deleted.
    assert [p.name for p in find_checkpoints(copy)] == [f"step_{step:010d}", previous.name]
    assert [p.name for p in set_aside_checkpoints(copy)] == [newest.name]
    assert latest_checkpoint(copy).num_timesteps == step


def test_check_reports_a_crashed_run_a_damaged_one_a_writer_and_a_non_run(odd_run, tmp_path, capsys):
    run, _ = odd_run
    copy = copy_of(run, tmp_path)
    newest = latest_checkpoint(copy)
    # What kill -9 in the middle of a row would leave: rows after the checkpoint, then torn lines.
    with open(copy / "training_stats.csv", "a") as f:
        f.write(f"{newest.callback_state('CSVStatsCallback')['episode'] + 1},1,0.5,0.1,900,10,20,0.1,9.0\n9")
    with open(copy / "0.monitor.csv", "a") as f:
        f.write("1.0,12,3.5\n2.0,")
    assert main(["check", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "training_stats.csv: " in out and "a torn last line (resume cuts it)" in out
    assert "1 rows after the resume point's episode" in out
    assert "0.monitor.csv: " in out and "1 games after the resume point (resume moves them aside)" in out
    assert out.rstrip().endswith("resumable as it is")

    lock = RunLock()
    lock.acquire(copy)
    try:
        assert main(["check", str(copy)]) == 0
        assert f"writer: being written by pid {os.getpid()}" in capsys.readouterr().out
    finally:
        lock.release()

    for folder in find_checkpoints(copy):
        flip_a_byte(folder / "model.zip")
    assert main(["check", str(copy)]) == 1
    out = capsys.readouterr().out
    assert "cannot resume: no intact checkpoint" in out and out.rstrip().endswith("not resumable as it is")

    assert main(["check", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("breakout-sb3: error: ") and "is not a run folder" in err and err.count("\n") == 1


def test_readers_play_the_newest_intact_model_or_the_checkpoint_named(odd_run, tmp_path):
    run, _ = odd_run
    copy = copy_of(run, tmp_path)
    final = copy / f"{ENV_ID}.zip"
    final.write_bytes(final.read_bytes()[: final.stat().st_size // 2])  # torn, as a full disk left it
    newest, previous = find_checkpoints(copy)[:2]
    result = run_cli("evaluate", str(copy), "--episodes", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"note: {final} is not a whole zip" in result.stderr
    assert f"note: playing {newest / 'model.zip'} (step " in result.stderr
    assert result.stdout.splitlines()[-1].startswith("score ")

    result = run_cli("evaluate", str(previous), "--episodes", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{previous / 'model.zip'}: 1 games of {ENV_ID}" in result.stdout

    flip_a_byte(previous / "model.zip")
    result = run_cli("record", str(previous), "--out", str(tmp_path / "g.mp4"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"breakout-sb3: error: checkpoint {previous} is broken: model.zip is corrupt (its SHA-256 is not the one "
        "written)"
    )
    assert not (tmp_path / "g.mp4").exists()


class FullAfter:
    """A file whose writes fail as on a full disk after ``ok_writes`` of them (the OS call's ENOSPC)."""

    def __init__(self, file, ok_writes: int):
        self._file, self._left = file, ok_writes

    def write(self, text: str) -> int:
        if self._left == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._left -= 1
        return self._file.write(text)

    def __getattr__(self, name: str):
        return getattr(self._file, name)


def test_a_full_disk_at_the_csv_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    import callbacks.csv_stats

    def open_filling(path, mode="r", **kwargs):
        file = open(path, mode, **kwargs)  # noqa: SIM115  (closed by the callback)
        return FullAfter(file, ok_writes=3) if "a" in mode else file  # the header, then 2 rows

    monkeypatch.setattr(callbacks.csv_stats, "open", open_filling, raising=False)
    monkeypatch.chdir(tmp_path)
    conf = small_config(tmp_path)
    assert main(["train", "--conf-file", str(conf), "-f", "logs", "-n", "2000", "--no-progress"]) == 2
    out, err = capsys.readouterr()
    (run,) = run_folders(tmp_path / "logs")
    last = latest_checkpoint(run)
    assert err.count("\n") == 1
    assert err.startswith(
        f"breakout-sb3: error: cannot write logs/dqn/{run.name}/training_stats.csv: No space left on device; training "
        "stopped"
    )
    assert f"the newest intact checkpoint is {last.path.name} (step {last.num_timesteps})" in err
    assert "Continue this run with" not in out


def mount_tmpfs(folder: Path, size_mb: int) -> bool:
    """Mount a small tmpfs at ``folder`` (root only); False where the machine does not allow it."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(folder)], capture_output=True
    )
    return result.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    if not mount_tmpfs(disk, 45):
        pytest.skip("needs a small real file system: mounting a tmpfs needs root (the CSV case injects its error)")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_at_the_final_model_and_at_a_checkpoint(small_disk):
    # 45 MB: room for the run's files and one checkpoint (27 MB of model), not for the final model beside it.
    result = run_cli("train", "-n", "300", "-params", "buffer_size:2000", "--no-progress", "-f", "logs", cwd=small_disk)
    (run,) = run_folders(small_disk / "logs")
    run_name = f"logs/dqn/{run.name}"
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"breakout-sb3: error: cannot write {run_name}/{ENV_ID}.zip: No space left on device; the newest intact "
        f"checkpoint is step_0000000300 (step 300): breakout-sb3 resume {run_name} continues it"
    )
    assert "Traceback" not in result.stderr and "Continue this run with" not in result.stdout
    assert sorted(p.name for p in run.iterdir() if p.name.endswith(".zip") or p.name.startswith(".")) == []

    result = run_cli("evaluate", run_name, "--episodes", "1", cwd=small_disk)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"note: playing {run_name}/checkpoints/step_0000000300/model.zip (step 300)" in result.stderr

    # No room for a second checkpoint either: the one there stays, and says so.
    result = run_cli("resume", run_name, "-n", "100", "--no-progress", cwd=small_disk)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"breakout-sb3: error: cannot write checkpoint {run_name}/checkpoints/step_0000000400: No space left on "
        f"device; training stopped, the newest intact checkpoint is step_0000000300 (step 300): breakout-sb3 resume "
        f"{run_name} continues it"
    )
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step_0000000300"]

    subprocess.run(["mount", "-o", "remount,size=200m", str(small_disk)], check=True)
    result = run_cli("resume", run_name, "-n", "8", "--no-progress", cwd=small_disk)
    assert result.returncode == 0, result.stderr[-3000:]
    assert DQN.load(run / f"{ENV_ID}.zip", device="cpu").num_timesteps == 308
