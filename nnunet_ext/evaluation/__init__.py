"""Segmentation evaluation with the BraTS rules (lesion-wise and legacy scores) plus agreement statistics.

Public API (used by ``nnunet-ext evaluate`` and ``nnunet-ext compare``)::

    from nnunet_ext.evaluation import evaluate_folders, write_outputs, format_table
    rows, summary = evaluate_folders(pred_dir, ref_dir, "brats-gli-2024", num_workers=4, cache_dir=out / "cases")
    write_outputs(rows, summary, out)      # per_case.csv + summary.json
    print(format_table(summary))

Names are resolved lazily (PEP 562) so that importing :mod:`.rules` for CLI argument parsing stays cheap.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "PER_CASE_COLUMNS": "evaluate",
    "evaluate_case": "evaluate",
    "evaluate_folders": "evaluate",
    "format_table": "evaluate",
    "summarize_rows": "evaluate",
    "write_outputs": "evaluate",
    "EvaluationError": "volumes",
    "LABEL_CONVENTIONS": "rules",
    "RULES": "rules",
    "Region": "rules",
    "Rules": "rules",
    "icc_a1": "icc",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
