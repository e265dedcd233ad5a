"""
rl-zoo3's ``push_to_hub`` or ``load_from_hub`` script, run unchanged with only the Hugging Face Hub's network calls
replaced, for the tests: ``python tests/hub_offline.py push_to_hub|load_from_hub [the script's flags]``.

- ``HfApi.create_repo``, ``HfApi.snapshot_download`` (a new, empty repo) and ``HfApi.upload_folder`` record their call;
- ``hf_hub_download`` serves the files of the folder ``$HUB_OFFLINE_REPO`` as the repo's.

Each call is appended, as a line of JSON, to ``$HUB_OFFLINE_CALLS`` (default ``hub_calls.jsonl``).
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from pathlib import Path
from typing import Any

import huggingface_hub
from huggingface_hub import HfApi
from huggingface_hub.errors import EntryNotFoundError


def record(call: str, **details: Any) -> None:
    with open(os.environ.get("HUB_OFFLINE_CALLS", "hub_calls.jsonl"), "a") as f:
        f.write(json.dumps({"call": call, **details}) + "\n")


def create_repo(self: HfApi, repo_id: str, **kwargs: Any) -> str:
    record("create_repo", repo_id=repo_id)
    return f"https://huggingface.co/{repo_id}"


def snapshot_download(self: HfApi, repo_id: str, local_dir: str | Path, **kwargs: Any) -> str:
    record("snapshot_download", repo_id=repo_id, local_dir=str(local_dir))
    Path(local_dir).mkdir(parents=True, exist_ok=True)
    return str(local_dir)


def upload_folder(self: HfApi, repo_id: str, folder_path: str | Path, **kwargs: Any) -> str:
    files = sorted(str(path.relative_to(folder_path)) for path in Path(folder_path).rglob("*") if path.is_file())
    record("upload_folder", repo_id=repo_id, folder_path=str(folder_path), files=files)
    return f"https://huggingface.co/{repo_id}"


def hf_hub_download(repo_id: str, filename: str, **kwargs: Any) -> str:
    record("hf_hub_download", repo_id=repo_id, filename=filename)
    path = Path(os.environ["HUB_OFFLINE_REPO"]) / filename
    if not path.is_file():
        raise EntryNotFoundError(f"{filename} is not in {repo_id}")
    return str(path)


if __name__ == "__main__":
    script = sys.argv[1]
    assert script in ("push_to_hub", "load_from_hub"), script
    HfApi.create_repo = create_repo
    HfApi.snapshot_download = snapshot_download
    HfApi.upload_folder = upload_folder
    huggingface_hub.hf_hub_download = hf_hub_download  # huggingface_sb3.load_from_hub imports it when called
    sys.argv = [script, *sys.argv[2:]]
    runpy.run_module(f"rl_zoo3.{script}", run_name="__main__", alter_sys=True)
