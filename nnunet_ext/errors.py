"""How every ``nnunet-ext`` subcommand ends when something goes wrong: one line on stderr and an exit status.

- 2, bad input: a wrong or missing file, an invalid setting or argument (argparse's own status for a bad
  command line). Commands raise :class:`UsageError`, or ``SystemExit("message")`` as they long have.
- 1, a failed run: the inputs were accepted but the work failed, e.g. a child process such as
  ``nnUNetv2_train`` (:class:`RunFailed`), or an unexpected exception. For the latter the traceback is saved to
  a file that the line names, so that a long run need not be repeated to see it.

No traceback is printed unless ``nnunet-ext --debug`` or ``NNUNET_EXT_DEBUG=1`` asks for it; the exit status
is the same either way. Applied once, by :func:`run_command` in :mod:`nnunet_ext.cli`.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from collections.abc import Callable

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # what a shell reports for a process ended by Ctrl-C
DEBUG_ENV = "NNUNET_EXT_DEBUG"


class UsageError(ValueError):
    """Bad input; the message names the file or setting and what is wrong with it (exit status 2).

    A ``ValueError``, as the project's other bad-input errors are, so that existing ``except ValueError`` checks
    keep catching it.
    """


class RunFailed(RuntimeError):
    """A run that failed after its inputs were accepted; the message says why and where to look (exit status 1).

    Expected failures only (a child process exited with an error): no traceback is saved for them.
    """


def debug_requested(flag: bool) -> bool:
    """``--debug`` was given or ``NNUNET_EXT_DEBUG`` is set to anything but empty or 0."""
    return flag or os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")


def _message(command: str, text: str) -> str:
    """``nnunet-ext COMMAND: error: TEXT``, argparse's format, without a prefix the text already carries."""
    text = text.strip()
    for prefix in (f"nnunet-ext {command}:", "error:"):
        text = text.removeprefix(prefix).strip()
    return f"nnunet-ext {command}: error: {text}"


def _save_traceback(error: BaseException) -> str:
    """``error``'s traceback in a new file under the temporary folder; returns its path."""
    handle, path = tempfile.mkstemp(prefix="nnunet-ext-traceback-", suffix=".txt")
    with os.fdopen(handle, "w") as file:
        file.write("".join(traceback.format_exception(error)))
    return path


def run_command(command: str, run: Callable[[], int | None], debug: bool) -> int:
    """Run one subcommand and turn what it raises into the convention's message and exit status."""
    try:
        return int(run() or 0)
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            return stop.code or 0
        error, status, text, unexpected = stop, EXIT_BAD_INPUT, str(stop.code), False
    except (UsageError, RunFailed) as caught:
        error, text, unexpected = caught, str(caught), False
        status = EXIT_BAD_INPUT if isinstance(caught, UsageError) else EXIT_FAILED
    except KeyboardInterrupt as caught:
        error, status, text, unexpected = caught, EXIT_INTERRUPTED, "interrupted", False
    except Exception as caught:  # a bug or an unforeseen failure: one line too, the traceback kept in a file
        first = (str(caught).splitlines() or [""])[0]
        error, status, text, unexpected = caught, EXIT_FAILED, f"{type(caught).__name__}: {first}", True
    if debug:
        traceback.print_exception(error)
    elif unexpected:
        text += (f" (unexpected; traceback saved in {_save_traceback(error)}, or run again with nnunet-ext --debug "
                 f"or {DEBUG_ENV}=1)")
    print(_message(command, text), file=sys.stderr)
    return status
