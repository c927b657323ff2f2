"""One loop for per-case work: serial with one worker, else a process pool; a tqdm bar, results in input order.

``tqdm.contrib.concurrent.process_map`` does most of this, but it always starts a pool (also for one worker),
takes the pool's initializer for its own lock, and so cannot make the workers exit with a killed parent
(:mod:`nnunet_ext.utils.processes`); nnU-Net and acvl-utils have no such helper outside their own loops.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from tqdm import tqdm

from nnunet_ext.utils.processes import exit_with_parent

Job = TypeVar("Job")
Result = TypeVar("Result")


def map_cases(function: Callable[[Job], Result], jobs: Iterable[Job], num_workers: int = 1, desc: str = "",
              progress: bool = True, start_method: str | None = None) -> Iterator[Result]:
    """Yield ``function(job)`` for each job, in the order of ``jobs``, as each becomes available.

    With ``num_workers`` > 1 and more than one job, ``function`` (picklable: module level, or a
    ``functools.partial`` of one) runs in that many worker processes (``start_method``: multiprocessing's,
    default the platform's), which exit with this process. A job's exception is raised here unchanged (the
    callers' errors name the case), after the jobs already started have finished.
    """
    jobs = list(jobs)
    bar = tqdm(total=len(jobs), desc=desc, unit="case", disable=not progress)
    try:
        if num_workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                yield function(job)
                bar.update()
            return
        context = multiprocessing.get_context(start_method) if start_method else None
        with ProcessPoolExecutor(max_workers=min(num_workers, len(jobs)), mp_context=context,
                                 initializer=exit_with_parent, initargs=(os.getpid(),)) as pool:
            for future in [pool.submit(function, job) for job in jobs]:
                yield future.result()
                bar.update()
    finally:
        bar.close()
