"""Run the pipeline's commands as child processes, with their output in a log file (and on the console).

Children get an explicit environment (nnU-Net folders, trainer discovery, budgets) instead of inheriting
changes to ``os.environ``, so a pipeline never alters the caller's nnU-Net setup.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from nnunet_ext.errors import RunFailed


class StepFailed(RunFailed):
    """A pipeline command exited with an error; the message names the command and its log file."""


def probe_command(record: Path, entry: str, args: Sequence[str]) -> list[str]:
    """The command that runs console entry point ``entry`` under :mod:`nnunet_ext.compare.probe`."""
    return [sys.executable, "-m", "nnunet_ext.compare.probe", str(record), entry, *map(str, args)]


def run_logged(cmd: Sequence[str], env: Mapping[str, str], log_file: Path, echo: bool = True,
               cwd: Path | None = None) -> None:
    """Run ``cmd``; every output line goes to ``log_file`` (appended) and, with ``echo``, to stdout.

    Raises :class:`StepFailed` with the tail of the log when the command fails.
    """
    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(c) for c in cmd]
    with open(log_file, "a", encoding="utf-8") as log:
        log.write(f"$ {shlex.join(cmd)}\n")
        log.flush()
        with subprocess.Popen(cmd, env=dict(env), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, bufsize=1, errors="replace") as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                if echo:
                    sys.stdout.write(line)
                    sys.stdout.flush()
            code = proc.wait()
    if code != 0:
        tail = "".join(log_file.read_text(errors="replace").splitlines(keepends=True)[-25:])
        raise StepFailed(f"command failed with exit code {code}: {shlex.join(cmd)}\n"
                         f"full log: {log_file}\nlast lines:\n{tail}")
