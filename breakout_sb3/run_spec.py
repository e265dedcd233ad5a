"""A run's ``resume.json``: what ``resume`` needs to continue the run, named relative to the run folder."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from breakout_sb3.errors import BreakoutSB3Error
from callbacks.atomic import atomic_write
from callbacks.validation import first_problem

RESUME_FILE = "resume.json"
# 1: rl-zoo3's flags with absolute paths (the run's log folder, its YAML copy); 2: paths relative to the run folder
RESUME_FORMAT = 2
# rl-zoo3 flags that name a place outside the run, left out of a run's saved flags: the log folder that held it
# (resume writes into the run folder itself), the model it started from (resume starts from a checkpoint), and
# the YAML (the run's own copy is named apart, relative to the run folder)
_PLACE_FLAGS = {"-f", "--log-folder", "-i", "--trained-agent", "-conf", "--conf-file"}
TENSORBOARD_FLAGS = ("-tb", "--tensorboard-log")


@dataclass
class RunSpec:
    """
    What ``breakout-sb3 resume`` needs to continue a run, as the run's ``resume.json`` holds it. Nothing in it names
    a place outside the run folder, except a TensorBoard folder given with ``-tb`` (the user's, shared by runs), so
    a run that was copied or moved resumes in its new place with its own values.

    :param argv: the rl-zoo3 train flags the run was started with, without ``-f``, ``-i`` and ``--conf-file``
    :param conf_file: the run's own copy of the YAML it was started with, relative to the run folder (None: the run
        was configured another way, given in ``argv``)
    :param config_entry: the YAML entry the run trains, where it is not the env id's (the fast configuration's)
    :param checkpoint_options: breakout-sb3's own checkpoint flags (``CheckpointOptions``)
    :param precision: ``--precision`` (``float32`` for a run started before the flag existed)
    """

    argv: list[str]
    conf_file: str | None
    config_entry: str | None
    checkpoint_options: dict[str, Any]
    precision: str = "float32"

    @classmethod
    def of_new_run(
        cls,
        argv: list[str],
        run_dir: str | Path,
        conf_copy: str | Path | None,
        config_entry: str | None,
        checkpoint_options: dict[str, Any],
        precision: str = "float32",
    ) -> RunSpec:
        """
        :param argv: the rl-zoo3 train flags of the run, as given
        :param run_dir: the run folder
        :param conf_copy: the run's copy of its YAML (inside ``run_dir``), None if it has none
        """
        conf_file = Path(conf_copy).relative_to(run_dir).as_posix() if conf_copy is not None else None
        kept = _without(argv, _PLACE_FLAGS if conf_file is not None else _PLACE_FLAGS - {"-conf", "--conf-file"})
        return cls(_absolute_tensorboard(kept), conf_file, config_entry, checkpoint_options, precision)

    def train_argv(self, run_dir: Path, notes: list[str] | None = None) -> list[str]:
        """
        :param run_dir: where the run folder is now
        :param notes: receives a line for a TensorBoard folder that is gone (left out, so nothing is written outside
            the run in a place that no longer exists)
        :return: the rl-zoo3 train flags that continue the run in ``run_dir``, with its own YAML
        """
        argv, expects_tensorboard = [], False
        for arg in self.argv:
            if expects_tensorboard and not Path(arg).is_dir():
                argv.pop()
                if notes is not None:
                    notes.append(f"the run's TensorBoard folder {arg} is gone: no TensorBoard events this time")
            else:
                argv.append(arg)
            expects_tensorboard = arg in TENSORBOARD_FLAGS
        if self.conf_file is not None:
            argv += ["--conf-file", str(run_dir / self.conf_file)]
        return argv

    @classmethod
    def read(cls, run_dir: Path) -> tuple[RunSpec, int, list[str]]:
        """
        Read ``run_dir``'s ``resume.json``, of this format or of format 1 (absolute paths): a format-1 run whose
        YAML copy is not where its file says (the run was copied or moved) uses the copy in its own folder.

        :return: the spec, the format it was read from, and a line for each thing to say about it
        :raise BreakoutSB3Error: one line starting with ``run_dir`` if the file is missing or unreadable, of an
            unknown format, lacks a field or has one of another type, or a format-1 run has no YAML copy of its own
        """
        try:
            saved = json.loads((run_dir / RESUME_FILE).read_text())
        except FileNotFoundError:
            raise BreakoutSB3Error(f"{run_dir}: no {RESUME_FILE} (not started by breakout-sb3 train)") from None
        except (OSError, ValueError) as e:
            raise BreakoutSB3Error(f"{run_dir}: {RESUME_FILE} is unreadable ({type(e).__name__}: {e})") from None
        if not isinstance(saved, dict) or "format" not in saved:
            raise BreakoutSB3Error(f"{run_dir}: {RESUME_FILE} has no format (not written by breakout-sb3)")
        version = saved["format"]
        if type(version) is not int or version not in (1, RESUME_FORMAT):
            raise BreakoutSB3Error(f"{run_dir}: {RESUME_FILE} of unknown format {version!r} (a newer breakout-sb3's?)")
        if version == 1:  # its fields were optional, its YAML named among the flags
            saved = {
                "argv": saved.get("argv", []),
                "conf_file": None,
                "config_entry": saved.get("config_entry"),
                "checkpoint_options": saved.get("checkpoint_options", {}),
            }
        try:
            spec = _RECORD.validate_python({key: value for key, value in saved.items() if key != "format"})
        except ValidationError as e:
            raise BreakoutSB3Error(f"{run_dir}: {RESUME_FILE}: {first_problem(e)}") from None
        return (spec, version, []) if version == RESUME_FORMAT else spec._of_format_1(run_dir)

    def _of_format_1(self, run_dir: Path) -> tuple[RunSpec, int, list[str]]:
        argv, entry, options = self.argv, self.config_entry, self.checkpoint_options
        confs = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg in ("-conf", "--conf-file")]
        if not confs or not confs[-1].endswith((".yml", ".yaml")):
            return RunSpec(_without(argv, _PLACE_FLAGS - {"-conf", "--conf-file"}), None, entry, options), 1, []
        recorded = Path(confs[-1])  # the run's copy: <run>/<env>/hyperparams.yml
        own = run_dir / recorded.parent.name / recorded.name
        if not own.is_file():
            raise BreakoutSB3Error(
                f"{run_dir}: its {RESUME_FILE} (format 1) names {recorded}, and the run has no {own.parent.name}/"
                f"{own.name} of its own: copy that file there to resume it"
            )
        spec = RunSpec(_without(argv, _PLACE_FLAGS), own.relative_to(run_dir).as_posix(), entry, options)
        notes = []
        if recorded.resolve() != own.resolve():
            notes.append(f"{RESUME_FILE} (format 1) names the run's YAML at its old place {recorded}: using {own}")
        return spec, 1, notes

    def write(self, run_dir: Path) -> None:
        """Write ``resume.json`` into ``run_dir``, atomically."""
        content = {"format": RESUME_FORMAT, **asdict(self)}
        atomic_write(run_dir / RESUME_FILE, lambda f: f.write((json.dumps(content, indent=2) + "\n").encode()))


# resume.json's fields, checked as they are read (each one there, each of its type)
_RECORD = TypeAdapter(RunSpec)


def _without(argv: list[str], flags: set[str]) -> list[str]:
    """:return: ``argv`` without ``flags`` (``-f DIR`` and ``-f=DIR`` alike) and their value"""
    result, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in flags:
            skip = True
        elif arg.partition("=")[0] not in flags:
            result.append(arg)
    return result


def _absolute_tensorboard(argv: list[str]) -> list[str]:
    """:return: ``argv`` with its TensorBoard folder absolute, as rl-zoo3 used it (``-tb=DIR`` as ``-tb DIR``)"""
    result, expects = [], False
    for arg in argv:
        name, sep, value = arg.partition("=")
        if expects:
            result.append(os.path.abspath(arg))
        elif sep and name in TENSORBOARD_FLAGS:
            result += [name, os.path.abspath(value)]
        else:
            result.append(arg)
        expects = not sep and arg in TENSORBOARD_FLAGS
    return result
