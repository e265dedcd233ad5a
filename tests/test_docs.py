"""
The documentation runs: the README's smoke run, command by command in a scratch folder, prints the lines the README
quotes, and every ```python block of README.md and docs/*.md runs (in that folder, after the smoke run, with
``BREAKOUT_SB3_EXAMPLE_STEPS`` making its training short).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, docs_environment, readme_section

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
EXAMPLE_STEPS = "200"


def code_blocks(path: Path, language: str) -> list[str]:
    """:return: the ```language blocks of a Markdown file, in order"""
    return re.findall(rf"^```{language}\n(.*?)^```$", path.read_text(), flags=re.M | re.S)


def smoke_section() -> str:
    return readme_section("A smoke run")


def quote_pattern(quote: str, example: bool) -> re.Pattern[str]:
    """
    :param quote: a line the README quotes; ``...`` stands for any text, and a line break of the Markdown for any space
    :param example: the README shows it "for example": its numbers depend on the machine, only its form is checked
    """
    parts = []
    for token in re.split(r"(\.\.\.|\s+|\d+(?:\.\d+)?)", quote):
        if token == "...":
            parts.append(".*?")
        elif token.isspace():
            parts.append(r"\s+")
        elif example and re.fullmatch(r"\d+(?:\.\d+)?", token):
            parts.append(r"\d+(?:\.\d+)?")
        elif token:
            parts.append(re.escape(token))
    return re.compile("".join(parts), flags=re.S)


def smoke_quotes() -> list[tuple[str, str, bool]]:
    """
    :return: (command, quote, whether it is an example) for each output line the smoke run's bullets quote; a bullet
        starts with its command (`` `train` ``), and a quoted output is a backquoted text with a space in it
    """
    bullets = re.findall(r"^- (.*?)(?=^- |^\S|\Z)", smoke_section().split("```", 2)[2], flags=re.M | re.S)
    quotes = []
    for bullet in bullets:
        spans = list(re.finditer(r"`([^`]+)`", bullet))
        command = spans[0].group(1)
        for span in spans[1:]:
            before = " ".join(bullet[: span.start()].split())
            if " " in span.group(1):
                quotes.append((command, span.group(1), before.endswith("for example")))
    return quotes


def smoke_files() -> list[str]:
    """:return: the files the smoke run's bullets say it writes (`` `game.mp4` ``, `` `curve.png` ``)"""
    return sorted(set(re.findall(r"`([\w-]+\.(?:mp4|png))`", smoke_section())))


def test_the_smoke_run_prints_the_lines_the_readme_quotes(smoke_run):
    folder, outputs = smoke_run
    quotes = smoke_quotes()
    assert {command for command, _, _ in quotes} == {"train", "evaluate", "record", "resume"}
    # the scores of the trained agent are examples; the games of 2,000 random steps are the same on every machine
    assert {command for command, _, example in quotes if example} == {"evaluate", "record"}
    assert {command for command, _, example in quotes if not example} == {"train", "resume"}
    for command, quote, example in quotes:
        assert quote_pattern(quote, example).search(outputs[command]), f"{command}: {quote!r} not in its output"
    assert smoke_files() == ["curve.png", "game.mp4"]
    for name in smoke_files():
        assert (folder / name).stat().st_size > 1000, name


def test_quoted_examples_check_the_form_and_not_the_numbers():
    example = quote_pattern("score 2.50 ± 2.50 (min 0, max 5)", example=True)
    assert example.search("score 3.00 ± 1.00 (min 2, max 4)")
    assert not example.search("score 3.00 (min 2, max 4)")
    exact = quote_pattern("Checkpoint at step 5000, 30 episodes:\n  ...", example=False)
    assert exact.search("Checkpoint at step 5000, 30 episodes: logs/dqn/x")
    assert not exact.search("Checkpoint at step 5000, 31 episodes: logs/dqn/x")


PYTHON_BLOCKS = [
    pytest.param(code, id=f"{path.relative_to(REPO)}#{index + 1}")
    for path in DOCS
    for index, code in enumerate(code_blocks(path, "python"))
]


def test_the_docs_have_python_examples():
    assert len(PYTHON_BLOCKS) >= 2


@pytest.mark.parametrize("code", PYTHON_BLOCKS)
def test_python_example_runs(smoke_run, code):
    """Each example runs as printed, in the smoke run's folder (its logs/dqn/BreakoutNoFrameskip-v4_1)."""
    if ".learn(" in code:
        assert "BREAKOUT_SB3_EXAMPLE_STEPS" in code, "a training example reads its length from the environment"
    folder, _ = smoke_run
    env = docs_environment(BREAKOUT_SB3_EXAMPLE_STEPS=EXAMPLE_STEPS)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
