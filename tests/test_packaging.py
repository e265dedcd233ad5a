"""hyperparams/dqn.yml is found from a source checkout and from an installed (non-editable) package."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

from breakout_sb3.config import default_config_path
from tests.conftest import REPO


def test_found_in_the_checkout():
    assert default_config_path() == REPO / "hyperparams" / "dqn.yml"


def test_wheel_ships_the_whole_file_and_an_install_finds_it(tmp_path):
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("breakout_sb3-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("breakout_sb3/hyperparams/dqn.yml") == (REPO / "hyperparams" / "dqn.yml").read_bytes()
        names = archive.namelist()
    assert "callbacks/__init__.py" in names and "breakout_sb3/cli.py" in names
    assert "breakout_sb3/fast/dqn.py" in names and "breakout_sb3/fast/replay.py" in names

    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    code = "from breakout_sb3.config import default_config_path as p; print(p())"
    env = {**os.environ, "PYTHONPATH": str(target)}
    found = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == str(target / "breakout_sb3" / "hyperparams" / "dqn.yml")
