"""Every command in the README's ``bash`` blocks is checked against the real program, so the docs cannot drift.

``nnunet-ext`` lines are parsed by the real argument parser; ``nnUNetv2_*`` and benchmark lines must use only
options their ``-h`` lists; the quick-start scripts must be the ones ``.ci/run`` executes. A README line of
any other kind fails here until a check for it is added.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from nnunet_ext.cli import build_parser
from tests.helpers.readme_blocks import readme_commands

ROOT = Path(__file__).resolve().parents[1]


@cache
def help_text(*program: str) -> str:
    result = subprocess.run([*program, "-h"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, f"{program} -h failed: {result.stderr[-2000:]}"
    return result.stdout


def options(tokens: list[str]) -> list[str]:
    return [t for t in tokens if t.startswith("-") and not re.fullmatch(r"-?\d+(\.\d+)?", t)]


def test_readme_has_commands():
    assert len(readme_commands()) > 20


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_is_valid(command: str):
    tokens = shlex.split(command)
    program = tokens[0]
    if program == "nnunet-ext":
        try:
            build_parser().parse_args(tokens[1:])
        except SystemExit as exc:
            pytest.fail(f"README command does not parse ({exc}): {command}")
    elif program in ("nnUNetv2_train", "nnUNetv2_predict"):
        text = help_text(program)
        for option in options(tokens[1:]):
            assert re.search(rf"(^|[\s\[]){re.escape(option)}([\s\],]|$)", text, flags=re.M), \
                f"{program} has no option {option}: {command}"
    elif program == "python" and tokens[1].startswith("benchmarks/"):
        text = help_text(sys.executable, str(ROOT / tokens[1]))
        for option in options(tokens[2:]):
            assert option in text, f"{tokens[1]} has no option {option}: {command}"
    elif program == "bash" and tokens[1].startswith("scripts/"):
        assert (ROOT / tokens[1]).is_file()
        # the quick-start scripts are what CI runs
        assert tokens[1] in (ROOT / ".ci" / "run").read_text(), f".ci/run does not run {tokens[1]}"
    elif program == "pip" and tokens[1:3] == ["install", "-e"]:
        assert "pip install -q -e" in (ROOT / "scripts" / "setup.sh").read_text()
    elif program == "eval":
        result = subprocess.run([sys.executable, "-m", "nnunet_ext.cli", "env"], capture_output=True, text=True,
                                check=True)
        assert result.stdout.startswith("export nnUNet_extTrainer=")
    else:
        pytest.fail(f"no check for this README command; add one to tests/test_readme.py: {command}")
