"""The README's ``bash`` blocks as command lines, for the tests that check and run them."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def section_text(heading: str) -> str:
    """The README text under ``## heading`` up to the next ``## `` heading (error if there is no such section)."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", README.read_text(), flags=re.S | re.M)
    if match is None:
        raise LookupError(f"README has no section '## {heading}'")
    return match.group(1)


def readme_commands(heading: str | None = None) -> list[str]:
    """Command lines of the bash blocks (of one section, or all), comments removed, loops unwrapped.

    ``for f in 0 1 2 3 4; do X $f; done`` becomes ``X 0``: the other iterations are the same command.
    """
    text = README.read_text() if heading is None else section_text(heading)
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            tokens = shlex.split(line, comments=True)
            if not tokens:
                continue
            command = shlex.join(tokens)
            loop = re.fullmatch(r"for (\w+) in .*?; do (.*); done", " ".join(tokens))
            if loop:
                command = loop.group(2).replace(f"${loop.group(1)}", "0")
            commands.append(command)
    return commands
