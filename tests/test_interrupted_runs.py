"""Interrupted runs: ``kill -9`` in the middle of a command, then the same command again (``predict``: with
``--continue_prediction``). The final outputs must equal those of an uninterrupted run, and no worker process of
the killed command may outlive it (they exit with their parent: :mod:`nnunet_ext.utils.processes`).

Each command runs as a subprocess with two worker processes on tiny ``demo-data`` cases; it is killed as soon as
its first output exists (a run that finishes before it can be killed fails the test: the data are sized so that
it does not). Processes are read from ``/proc`` (Linux).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_ext.dataset_conversion.demo_data import write_demo_dataset

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads processes from /proc")

N_CASES = 10
N_EVALUATED = 4  # scoring is the slow part: a few cases keep the three runs short
SHAPE = (48, 48, 32)
WORKER_EXIT_SECONDS = 5  # the kernel kills them at once (without it: plan 3-10 s, predict never)


# ------------------------------------------------------------------------------------------------- processes
def _parents() -> dict[int, int]:
    """pid -> parent pid of every live (not zombie) process."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X"):
            table[int(stat.parent.name)] = int(fields[1])
    return table


def descendants(pid: int) -> set[int]:
    table = _parents()
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        children = [child for child, ppid in table.items() if ppid == parent]
        found.update(children)
        todo.extend(children)
    return found


def still_alive(pids: set[int], timeout: float = WORKER_EXIT_SECONDS) -> set[int]:
    """The processes of ``pids`` that are still alive after ``timeout`` seconds (zombies count as gone)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = pids & set(_parents())
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def kill_when(command: list[str], env: dict[str, str], ready: Callable[[], bool], workers: int,
              log: Path, timeout: float = 300) -> set[int]:
    """Run ``command``; once ``ready()`` and at least ``workers`` child processes exist, ``kill -9`` it.

    Returns the processes it had started (all seen while it ran); fails when it ends before it could be killed.
    """
    with open(log, "w") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            current = descendants(proc.pid)
            seen |= current
            if proc.poll() is not None:
                pytest.fail(f"{command[2:4]} ended (rc {proc.returncode}) before it could be killed:\n"
                            f"{log.read_text()[-3000:]}")
            if len(current) >= workers and ready():
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                assert proc.returncode == -signal.SIGKILL
                return seen
            time.sleep(0.005)
        pytest.fail(f"{command[2:4]} never became ready:\n{log.read_text()[-3000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def assert_no_workers_left(seen: set[int]) -> None:
    assert seen, "the command started no worker processes"
    left = still_alive(seen)
    commands = {pid: Path(f"/proc/{pid}/cmdline").read_bytes()[:200] for pid in left}
    for pid in left:  # do not leave them running when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not left, commands


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "nnunet_ext.cli", *map(str, args)]


def run_ok(command: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{command[2:4]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def digests(folder: Path, pattern: str = "*") -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob(pattern)) if p.is_file() and ".partial" not in p.parts}


def arrays(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in sorted(folder.glob("[!.]*.nii.gz"))}


def preprocessed(folder: Path) -> dict[str, np.ndarray]:
    """nnU-Net's preprocessed arrays (their compressed bytes differ from run to run, the arrays must not)."""
    import blosc2

    return {p.name: blosc2.open(str(p), mode="r")[:] for p in sorted(folder.glob("*.b2nd"))}


def any_file(folder: Path, pattern: str) -> Callable[[], bool]:
    return lambda: any(folder.glob(pattern))


# --------------------------------------------------------------------------------------------------- data
@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BraTS-GLI demo download of ``N_CASES`` cases."""
    root = tmp_path_factory.mktemp("interrupted") / "gli"
    write_demo_dataset(root, "gli", N_CASES, SHAPE, seed=4, num_workers=2)
    return root


@pytest.fixture(scope="module")
def label_maps(downloads: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """References (the demo labels) and predictions (the labels with every 7th slice shifted, plus specks), of
    every case and (``eval_*``) of the first ``N_EVALUATED``."""
    root = tmp_path_factory.mktemp("label_maps")
    folders = {name: root / name for name in ("ref", "pred", "eval_ref", "eval_pred")}
    for folder in folders.values():
        folder.mkdir()
    for index, seg in enumerate(sorted(downloads.rglob("*-seg.nii.gz"))):
        name = seg.name.replace("-seg", "")
        shutil.copyfile(seg, folders["ref"] / name)
        image = sitk.ReadImage(str(seg))
        labels = sitk.GetArrayFromImage(image)
        labels[::7] = np.roll(labels[::7], 2, axis=-1)
        labels[1::9, 1:3, 1:3] = 3  # small components for post-processing to remove
        out = sitk.GetImageFromArray(labels)
        out.CopyInformation(image)
        sitk.WriteImage(out, str(folders["pred"] / name), useCompression=True)
        if index < N_EVALUATED:
            shutil.copyfile(seg, folders["eval_ref"] / name)
            shutil.copyfile(folders["pred"] / name, folders["eval_pred"] / name)
    return folders


def env(**extra: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE",
            **{name: str(value) for name, value in extra.items()}}


# --------------------------------------------------------------------------------------------------- tests
def test_worker_exits_with_a_killed_parent(tmp_path: Path) -> None:
    """The mechanism itself, for a parent killed with ``kill -9``: our pool's workers, a spawn pool and a manager
    started as nnU-Net starts them (inside ``workers_exit_with_parent``), a program run as HD-BET is run, and the
    polling thread used where prctl is missing."""
    script = tmp_path / "parent.py"
    script.write_text(f"""
import multiprocessing, os, subprocess, time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from nnunet_ext.utils.pool import map_cases
from nnunet_ext.utils.processes import program_exits_with_parent, watch_parent, workers_exit_with_parent

if __name__ == "__main__":
    with workers_exit_with_parent():
        spawn_pool = multiprocessing.get_context("spawn").Pool(1)
        manager = multiprocessing.Manager()
        spawn_pool.apply(time.sleep, (0,))
    plain = ProcessPoolExecutor(1, initializer=watch_parent, initargs=(os.getpid(),))  # the fallback elsewhere
    plain.submit(time.sleep, 0).result()
    subprocess.Popen(["sleep", "600"], preexec_fn=partial(program_exits_with_parent, os.getpid()))
    open({str(tmp_path / "ready")!r}, "w").close()
    list(map_cases(time.sleep, [600, 600], num_workers=2, progress=False))
""")
    seen = kill_when([sys.executable, str(script)], env(), any_file(tmp_path, "ready"), 6, tmp_path / "log")
    assert_no_workers_left(seen)


def test_convert_killed_then_rerun_equals_one_run(downloads: Path, tmp_path: Path) -> None:
    def convert(raw: Path, workers: int) -> list[str]:
        return cli("convert", "brats-gli", downloads, "-d", "601", "-n", "Killed", "-np", workers,
                   "--raw-root", raw, "--preprocessed-root", raw.parent / f"{raw.name}_pre")

    run_ok(convert(tmp_path / "once", 1), env())
    dataset = tmp_path / "killed" / "Dataset601_Killed"
    seen = kill_when(convert(tmp_path / "killed", 2), env(), any_file(dataset, "imagesTr/*.nii.gz"), 2,
                     tmp_path / "log")
    assert_no_workers_left(seen)
    assert len(list((dataset / "imagesTr").glob("*.nii.gz"))) < 4 * N_CASES  # really interrupted
    run_ok(convert(tmp_path / "killed", 2), env())
    once = tmp_path / "once" / "Dataset601_Killed"
    for part in ("imagesTr", "labelsTr", "imagesTs"):
        assert digests(dataset / part) == digests(once / part), part
    assert (dataset / "dataset.json").read_text() == (once / "dataset.json").read_text()
    assert not list(dataset.rglob(".partial"))


@pytest.mark.e2e  # its spawned workers import the scoring stack: about 25 s on a busy 2-core box
def test_evaluate_killed_then_rerun_equals_one_run(label_maps: dict[str, Path], tmp_path: Path) -> None:
    def evaluate(out: Path, workers: int) -> list[str]:
        return cli("evaluate", "--pred", label_maps["eval_pred"], "--ref", label_maps["eval_ref"],
                   "--rules", "brats-gli-2024", "-o", out, "-np", workers)

    run_ok(evaluate(tmp_path / "once", 1), env())
    killed = tmp_path / "killed"
    seen = kill_when(evaluate(killed, 2), env(), any_file(killed, "cases/*.json"), 2, tmp_path / "log")
    assert_no_workers_left(seen)
    assert not (killed / "summary.json").exists()
    run_ok(evaluate(killed, 2), env())
    for name in ("per_case.csv", "summary.json"):
        assert (killed / name).read_text() == (tmp_path / "once" / name).read_text(), name


def test_postprocess_in_place_killed_then_rerun_equals_one_run(label_maps: dict[str, Path], tmp_path: Path) -> None:
    once, killed = tmp_path / "once", tmp_path / "killed"
    shutil.copytree(label_maps["pred"], once)
    shutil.copytree(label_maps["pred"], killed)
    original = {p.name: p.stat().st_mtime_ns for p in killed.glob("*.nii.gz")}
    run_ok(cli("postprocess", "-i", once, "-o", once, "--mode", "components", "--min-size", 8), env())

    def rewritten() -> bool:
        return any(p.stat().st_mtime_ns != original[p.name] for p in killed.glob("[!.]*.nii.gz"))

    command = cli("postprocess", "-i", killed, "-o", killed, "--mode", "components", "--min-size", 8, "-np", 2)
    seen = kill_when(command, env(), rewritten, 2, tmp_path / "log")
    assert_no_workers_left(seen)
    run_ok(command, env())
    ours, reference = arrays(killed), arrays(once)
    assert ours.keys() == reference.keys() and len(ours) == N_CASES
    for name, labels in reference.items():
        assert np.array_equal(ours[name], labels), name
    assert not list(killed.glob(".*"))  # nor what the killed run was writing


@pytest.mark.e2e
def test_plan_killed_then_rerun_equals_one_run(downloads: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    run_ok(cli("convert", "brats-gli", downloads, "-d", "602", "-n", "Plan", "-np", 2, "--raw-root", raw,
               "--preprocessed-root", tmp_path / "unused"), env())

    def plan(pre: Path) -> tuple[list[str], dict[str, str]]:
        return (cli("plan", "-d", 602, "-c", "2d", "-np", 2),
                env(nnUNet_raw=raw, nnUNet_preprocessed=pre, nnUNet_results=tmp_path / "results"))

    run_ok(*plan(tmp_path / "once"))
    killed = tmp_path / "killed" / "Dataset602_Plan"
    command, variables = plan(tmp_path / "killed")
    seen = kill_when(command, variables, any_file(killed, "nnUNetPlans_2d/*"), 2, tmp_path / "log")
    assert_no_workers_left(seen)
    run_ok(command, variables)
    once = tmp_path / "once" / "Dataset602_Plan"
    assert (killed / "nnUNetPlans.json").read_text() == (once / "nnUNetPlans.json").read_text()
    assert digests(killed / "nnUNetPlans_2d", "*.pkl") == digests(once / "nnUNetPlans_2d", "*.pkl")
    ours, reference = preprocessed(killed / "nnUNetPlans_2d"), preprocessed(once / "nnUNetPlans_2d")
    assert ours.keys() == reference.keys() and len(ours) == 2 * N_CASES  # images and segmentations
    for name, values in reference.items():
        assert np.array_equal(ours[name], values), name


@pytest.mark.e2e
def test_predict_killed_then_continued_equals_one_run(stub_model: dict, tmp_path: Path) -> None:
    def predict(out: Path, *extra: str) -> list[str]:
        return ["nnunet-ext", "predict", "-i", str(stub_model["raw"] / "imagesTs"), "-o", str(out),
                "-d", stub_model["dataset"], "-tr", "nnUNetTrainer", "-device", "cpu", "--disable_progress_bar",
                "-npp", "1", "-nps", "1", "--axes", "0", "2", "--transforms", "0,5", *extra]

    run_ok(predict(tmp_path / "once"), stub_model["env"])
    killed = tmp_path / "killed"
    # killed while it predicts (nnU-Net has written its arguments): its preprocessing worker, their queues'
    # manager, the export pool's worker and multiprocessing's resource tracker are running
    seen = kill_when(predict(killed), stub_model["env"], any_file(killed, "**/predict_from_raw_data_args.json"), 3,
                     tmp_path / "log")
    assert_no_workers_left(seen)
    run_ok(predict(killed, "--continue_prediction"), stub_model["env"])
    ours, reference = arrays(killed), arrays(tmp_path / "once")
    assert ours.keys() == reference.keys() and len(ours) == 3
    for name, labels in reference.items():
        assert np.array_equal(ours[name], labels), name

