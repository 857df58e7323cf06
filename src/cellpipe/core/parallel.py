"""A job list on a process pool with a progress bar (prep tools: resize, merge)."""
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, List, Optional, Sequence

import cv2
from tqdm import tqdm

JOB_CHUNK = 16  # jobs per pool task: amortises the pickling round trip, small enough for a smooth progress bar


def _init_worker() -> None:
    cv2.setNumThreads(1)  # the pool is the parallelism; OpenCV threads on top would oversubscribe the cores


def run_jobs(fn: Callable, jobs: Sequence, workers: Optional[int], desc: str) -> List:
    """``[fn(job) for job in jobs]`` on a process pool of ``workers`` (None: all CPUs), with a progress bar.

    One worker runs in this process (no start-up cost; tracebacks and debuggers work). An exception
    in a job cancels the jobs not yet started and is re-raised here.
    """
    workers = min(int(workers or os.cpu_count() or 1), len(jobs))
    results = []
    with tqdm(total=len(jobs), desc=desc, unit="img") as bar:
        if workers <= 1:
            for job in jobs:
                results.append(fn(job))
                bar.update()
            return results
        # spawn, not fork: a forked child of a process whose torch / OpenMP threads already run can deadlock
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker) as pool:
            try:
                for result in pool.map(fn, jobs, chunksize=JOB_CHUNK):
                    results.append(result)
                    bar.update()
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    return results
