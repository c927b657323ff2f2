"""A log file for a command's run, the way nnU-Net's trainer keeps ``training_log_*.txt`` beside its outputs."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TextIO


class _Tee:
    """Writes to the console stream and the log file alike (progress bars go to stderr and stay off the log)."""

    def __init__(self, console: TextIO, log: TextIO):
        self.console, self.log = console, log

    def write(self, text: str) -> int:
        self.log.write(text)
        self.log.flush()
        return self.console.write(text)

    def flush(self) -> None:
        self.console.flush()
        self.log.flush()

    def __getattr__(self, name: str):
        return getattr(self.console, name)


@contextmanager
def stdout_logged_to(folder: Path, prefix: str) -> Iterator[Path]:
    """Copy everything printed in this process to ``folder/<prefix>_<YYYY_MM_DD_HH_MM_SS>.txt``.

    An exception that ends the run is written to the log with its traceback before the log closes (the console
    gets the command's one-line error), so the log says why a run stopped.
    """
    path = Path(folder) / f"{prefix}_{datetime.now():%Y_%m_%d_%H_%M_%S}.txt"
    console = sys.stdout
    with open(path, "a", encoding="utf-8") as log:
        sys.stdout = _Tee(console, log)
        try:
            yield path
        except BaseException as error:
            if not (isinstance(error, SystemExit) and error.code in (None, 0)):
                log.write(f"{datetime.now()}: the run stopped: {type(error).__name__}: {error}\n"
                          f"{traceback.format_exc()}")
            raise
        finally:
            sys.stdout = console
