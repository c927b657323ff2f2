"""Step cache: a JSON manifest that records which steps of a long pipeline are finished.

A step counts as done only when (1) the manifest has a record for it, (2) the record was made with the same
parameters, and (3) every output file it declared still exists. Records are written only after the step's
function returned and its outputs were checked, and the manifest is replaced atomically, so a crash or
Ctrl-C at any moment leaves either the old or the new manifest, never a half-written one. Each record gets
a fresh ``token``; downstream steps put their upstream tokens into their own parameters, so re-running a
step (e.g. training with another budget) invalidates everything computed from it.

A step that was started but not finished is remembered as an *attempt* with its parameters; when it runs
again with the same parameters its function is told to ``resume`` (training continues from its latest
checkpoint instead of starting over).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nnunet_ext.atomic import atomic_write_text

log = logging.getLogger(__name__)
MANIFEST_VERSION = 1


class StepCache:
    """The manifest of one pipeline run, stored as ``path`` (outputs are recorded relative to its folder)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.root = self.path.parent
        self.steps: dict[str, dict[str, Any]] = {}
        self.attempts: dict[str, Any] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
            except json.JSONDecodeError as e:
                raise ValueError(f"{self.path}: not a valid manifest ({e}); move it away to start afresh") from e
            if data.get("version") != MANIFEST_VERSION:
                raise ValueError(f"{self.path}: manifest version {data.get('version')}, expected {MANIFEST_VERSION}")
            self.steps = data["steps"]
            self.attempts = data.get("attempts", {})

    def _relative(self, path: Path) -> str:
        path = Path(path)
        try:
            return str(path.resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(path.resolve())

    def record(self, step: str) -> dict[str, Any] | None:
        """The stored record of ``step`` (params, outputs, result, token, timestamps), or None."""
        return self.steps.get(step)

    def is_done(self, step: str, params: dict[str, Any]) -> bool:
        rec = self.steps.get(step)
        if rec is None or rec["params"] != _normalised(params):
            return False
        return all((self.root / out).exists() for out in rec["outputs"])

    def run(self, step: str, params: dict[str, Any], outputs: Sequence[Path],
            fn: Callable[[bool], dict[str, Any] | None]) -> dict[str, Any]:
        """Return the cached record of ``step`` when done with these ``params``; otherwise run ``fn(resume)``.

        ``resume`` is True when an earlier attempt with the same parameters was interrupted. ``fn`` returns a
        JSON-serialisable dict of results (timings, counts) stored in the record. It must produce every path
        in ``outputs``; a missing one is an error and nothing is recorded.
        """
        params = _normalised(params)
        if self.is_done(step, params):
            log.info("step %s: done earlier, cached", step)
            return self.steps[step]
        resume = self.attempts.get(step) == params
        self.steps.pop(step, None)
        self.attempts[step] = params
        self._save()
        log.info("step %s: %s", step, "resuming" if resume else "running")
        start = time.time()
        result = fn(resume) or {}
        missing = [str(p) for p in outputs if not Path(p).exists()]
        if missing:
            raise RuntimeError(f"step {step} finished without producing {', '.join(missing[:5])}"
                               + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
        self.attempts.pop(step, None)
        self.steps[step] = {
            "params": params,
            "outputs": [self._relative(p) for p in outputs],
            "result": result,
            "token": uuid.uuid4().hex,
            "started": start,
            "finished": time.time(),
        }
        self._save()
        return self.steps[step]

    def forget(self, step: str) -> None:
        """Drop the record of ``step`` (it will run again next time)."""
        if self.steps.pop(step, None) is not None:
            self._save()

    def _save(self) -> None:
        atomic_write_text(self.path, json.dumps({"version": MANIFEST_VERSION, "steps": self.steps,
                                                 "attempts": self.attempts}, indent=2))


def _normalised(params: dict[str, Any]) -> Any:
    """``params`` as they read back from JSON (tuples become lists), so comparisons are exact."""
    return json.loads(json.dumps(params))
