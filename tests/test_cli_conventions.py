"""Conventions every ``nnunet-ext`` subcommand follows, checked through the real console script.

- ``--help`` ends with an example whose ``nnunet-ext`` lines the real parser accepts;
- bad input: exit status 2 and exactly one stderr line, naming the file or setting, without a traceback;
  ``--debug`` or ``NNUNET_EXT_DEBUG=1`` add the traceback and keep the status;
- a run that fails after its inputs were accepted (a child process failing): exit status 1;
- an unforeseen exception: exit status 1, one line naming the file that keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from nnunet_ext.cli import build_parser
from nnunet_ext.errors import DEBUG_ENV, run_command
from tests.helpers.synthetic import make_raw_dataset

NNUNET_EXT = str(Path(sys.executable).with_name("nnunet-ext"))


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


def _help_commands() -> list[str]:
    """Every subcommand, and every task of a subcommand that has them (``convert brats-gli``)."""
    names = []
    for name, sub in _subparsers(build_parser()).items():
        names.append(name)
        names += [f"{name} {task}" for task in _subparsers(sub)]
    return names


SUBCOMMANDS = list(_subparsers(build_parser()))

# bad input per subcommand (paths relative to the test's folder): the arguments and what the line must name
BAD_INPUT = {
    "compare": (["compare", "-d", "5", "--budget-epochs", "1", "-o", "cmp"], "dataset '5'"),
    "convert": (["convert", "brats-gli", "no_download", "-d", "5"], "no_download"),
    "demo": (["demo", "--cases", "4", "--out", "d"], "--cases"),
    "demo-data": (["demo-data", "out", "--task", "gli", "-n", "2", "--unlabelled", "3"], "--unlabelled"),
    "env": (["env", "--shell", "zsh"], "--shell"),
    "evaluate": (["evaluate", "--pred", "no_pred", "--ref", "no_ref", "--rules", "brats-gli-2024", "-o", "ev"],
                 "no_pred"),
    "export-brats": (["export-brats", "no_pred", "sub", "--task", "gli"], "no_pred"),
    "plan": (["plan", "-d", "998"], "Dataset998_NoJson/dataset.json"),
    "postprocess": (["postprocess", "-i", "no_pred", "-o", "pp"], "no_pred"),
    "predict": (["predict", "-m", "no_model", "-i", "no_in", "-o", "out", "-device", "cpu"], "no_model/plans.json"),
}


@pytest.fixture
def folder(nnunet_dirs: dict[str, Path], tmp_path: Path) -> Path:
    """The test's folder with nnU-Net's three folders, holding a raw dataset without dataset.json (998)."""
    (nnunet_dirs["nnUNet_raw"] / "Dataset998_NoJson").mkdir()
    return tmp_path


def nnunet_ext(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([NNUNET_EXT, *args], cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=300)


def _commands(line: str) -> list[list[str]]:
    """The commands of a shell line: split at pipes and ``;``, comments removed."""
    commands, current = [], []
    for token in [*shlex.split(line, comments=True), ";"]:
        if token in ("|", ";", "&&"):
            commands += [current] if current else []
            current = []
        else:
            current.append(token)
    return commands


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("command", _help_commands())
def test_help_ends_with_an_example_the_parser_accepts(command: str) -> None:
    result = nnunet_ext([*command.split(), "--help"], Path.cwd())
    assert result.returncode == 0, result.stderr
    assert "Example" in result.stdout
    example = result.stdout[result.stdout.rindex("\nExample"):].splitlines()[2:]
    assert example and all(line.startswith("  ") for line in example), result.stdout[-2000:]
    for line in example:
        for tokens in _commands(line):
            if tokens[0] == "nnunet-ext" and "--help" not in tokens:
                try:
                    build_parser().parse_args(tokens[1:])
                except SystemExit as stop:
                    pytest.fail(f"{command} --help: the example does not parse ({stop}): {line}")


@pytest.mark.parametrize("command", [c for c in _help_commands() if c.split()[0] != "predict"])
def test_one_spelling_for_workers_and_device_and_the_old_ones_hidden(command: str) -> None:
    """``-np/--num-processes``, ``--device`` outside ``predict``; ``-j/--num-workers``, ``-device``: hidden aliases."""
    parser = build_parser()
    for name in command.split():
        parser = _subparsers(parser)[name]
    spellings = {a.dest: a.option_strings for a in parser._actions if a.help != argparse.SUPPRESS}
    shown = [option for options in spellings.values() for option in options]
    assert not {"-j", "--num-workers", "--workers", "-device"} & set(shown), shown
    hidden = {option: action.dest for option, action in parser._option_string_actions.items()
              if action.help == argparse.SUPPRESS}
    if "num_processes" in spellings:
        assert spellings["num_processes"] == ["-np", "--num-processes"]
        assert hidden.get("-j") == hidden.get("--num-workers") == "num_processes"
    if "device" in spellings:
        assert spellings["device"] == ["--device"] and hidden.get("-device") == "device"


def test_every_subcommand_has_a_bad_input_case() -> None:
    assert sorted(BAD_INPUT) == sorted(SUBCOMMANDS)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_bad_input_is_one_line_and_exit_status_2(command: str, folder: Path) -> None:
    args, named = BAD_INPUT[command]
    result = nnunet_ext(args, folder)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(lines(result.stderr)) == 1, result.stderr
    assert result.stderr.startswith(f"nnunet-ext {command}") and named in result.stderr, result.stderr


@pytest.mark.parametrize("command, how", [("convert", "--debug"), ("predict", DEBUG_ENV), ("plan", "--debug")])
def test_debug_adds_the_traceback_and_keeps_the_status(command: str, how: str, folder: Path) -> None:
    args, named = BAD_INPUT[command]
    result = nnunet_ext(["--debug", *args] if how == "--debug" else args, folder, **({how: "1"} if how == DEBUG_ENV
                                                                                    else {}))
    assert result.returncode == 2, result.stderr
    assert "Traceback (most recent call last)" in result.stderr
    assert lines(result.stderr)[-1].startswith(f"nnunet-ext {command}: error:") and named in result.stderr


def test_a_failing_child_process_is_a_failed_run(folder: Path, nnunet_dirs: dict[str, Path]) -> None:
    """compare accepts the dataset and the budget, then its planning child rejects the setting: exit status 1."""
    make_raw_dataset(nnunet_dirs["nnUNet_raw"], 997, "Tiny", n_cases=2, shape=(6, 8, 8))
    result = nnunet_ext(["compare", "-d", "997", "--budget-epochs", "1", "--device", "cpu", "-np", "1", "-o", "cmp",
                         "--set", "batch_size=0", "--quiet"], folder)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "traceback saved" not in result.stderr
    errors = [line for line in lines(result.stderr) if line.startswith("nnunet-ext compare: error:")]
    assert len(errors) == 1 and "command failed with exit code 2" in errors[0], result.stderr
    assert f"full log: {folder / 'cmp' / 'logs' / 'plan.log'}" in result.stderr
    assert "sliceres.batch_size = 0" in (folder / "cmp" / "logs" / "plan.log").read_text()


def test_an_unforeseen_exception_is_a_failed_run_with_its_traceback_kept(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def broken() -> int:
        return {}["missing key"]

    assert run_command("plan", broken, debug=False) == 1
    (line,) = lines(capsys.readouterr().err)
    assert line.startswith("nnunet-ext plan: error: KeyError: 'missing key' (unexpected; traceback saved in ")
    (saved,) = tmp_path.glob("nnunet-ext-traceback-*.txt")
    assert str(saved) in line and "in broken" in saved.read_text()


WORKER_COUNTS = [(["plan", "-d", "998", "-np", "0"], "-np", "positive"),
                 (["evaluate", "--pred", "p", "--ref", "r", "--rules", "brats-gli-2024", "-o", "e", "-j", "-1"], "-j",
                  "positive"),
                 (["predict", "-m", "m", "-i", "i", "-o", "o", "-npp", "-1"], "-npp", "non-negative"),
                 (["predict", "-m", "m", "-i", "i", "-o", "o", "-nps", "two"], "-nps", "non-negative")]


@pytest.mark.parametrize(("args", "flag", "allowed"), WORKER_COUNTS)
def test_a_worker_count_below_one_is_bad_input(args: list[str], flag: str, allowed: str, folder: Path) -> None:
    """Below 1; in ``predict``, whose ``-npp 0 -nps 0`` is nnU-Net's sequential mode, below 0."""
    result = nnunet_ext(args, folder)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert f"argument {flag}" in result.stderr and f"expected a {allowed} integer" in result.stderr, result.stderr
