"""Run a console entry point in this process and record its wall time and peak GPU memory.

``python -m nnunet_ext.compare.probe RECORD.json MODULE:FUNCTION [ARGS...]`` sets ``sys.argv`` to ``ARGS``
and calls ``MODULE.FUNCTION()`` (e.g. ``nnunetv2.run.run_training:run_training_entry``, the function behind
``nnUNetv2_train``). Running the entry point inside the probe, instead of as a child process, is what lets
us read PyTorch's own peak-memory counters of the process that used the GPU; an ``nvidia-smi`` poll would
miss short peaks and count other processes. RECORD.json is written (atomically) only on success.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

from nnunet_ext.atomic import atomic_write_text


def _peak_gpu_memory() -> dict[str, int | None]:
    """Peak bytes allocated / reserved by PyTorch's CUDA allocator in this process (None without CUDA)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return {"peak_gpu_allocated_bytes": None, "peak_gpu_reserved_bytes": None}
    return {"peak_gpu_allocated_bytes": int(torch.cuda.max_memory_allocated()),
            "peak_gpu_reserved_bytes": int(torch.cuda.max_memory_reserved())}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 2 or ":" not in argv[1]:
        print("usage: python -m nnunet_ext.compare.probe RECORD.json MODULE:FUNCTION [ARGS...]", file=sys.stderr)
        return 2
    record, entry, args = Path(argv[0]), argv[1], argv[2:]
    module_name, function_name = entry.split(":", 1)
    function = getattr(importlib.import_module(module_name), function_name)
    sys.argv = [entry, *args]
    start = time.perf_counter()
    try:
        code = function()
    except SystemExit as exit_:
        code = exit_.code
    wall = time.perf_counter() - start
    if code not in (None, 0):
        return code if isinstance(code, int) else 1
    atomic_write_text(record, json.dumps({"wall_seconds": wall, "argv": args, **_peak_gpu_memory()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
