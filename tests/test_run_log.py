"""The run log keeps what was printed and, when the run fails, why it stopped."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnunet_ext.run_log import stdout_logged_to


def test_printed_lines_and_the_error_that_ended_the_run_reach_the_log(tmp_path: Path, capsys) -> None:
    with pytest.raises(ValueError, match="bad case"):
        with stdout_logged_to(tmp_path, "run_log") as path:
            print("predicting case_001")
            raise ValueError("bad case case_002")
    text = path.read_text()
    assert "predicting case_001" in text
    assert "the run stopped: ValueError: bad case case_002" in text and "Traceback" in text
    assert "predicting case_001" in capsys.readouterr().out


def test_a_clean_exit_writes_no_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        with stdout_logged_to(tmp_path, "run_log") as path:
            print("done")
            raise SystemExit(0)
    assert path.read_text() == "done\n"
