"""Several processes for one run (distributed data parallel), launched by torchrun.

``engine_params/processes: N`` makes src/train.py start itself under
``python -m torch.distributed.run --standalone --nproc_per_node N`` (one process per GPU;
gloo on CPU); a run started by torchrun or srun directly (several nodes) is picked up from
its environment (WORLD_SIZE, RANK, LOCAL_RANK). accelerate (under catalyst's engine) joins the
process group and wraps the model in DistributedDataParallel. Sampling and metrics are ours:

- training: every process draws the same global sequence of batches (and per-draw seeds) and
  keeps every world-th one (data.sampling.SeededBatches), so N processes see what one process
  would see, N batches at a time; ``batch_size`` is per process;
- validation: strided shards (``ShardSampler``), every process's logits gathered before the
  metrics, so early stopping and the best epoch are the same decision everywhere;
- only rank 0 writes files (checkpoints, history, reports); the others wait at barriers.
"""
import os
import subprocess
import sys
from typing import Iterator, List, Sequence

import torch.distributed as dist
from torch.utils.data import Sampler


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else \
        int(os.environ.get("WORLD_SIZE", 1))


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else int(os.environ.get("RANK", 0))


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if world_size() > 1 and dist.is_initialized():
        dist.barrier()


def gather(obj) -> List:
    """``obj`` of every process, in rank order (just ``[obj]`` in a single process)."""
    if world_size() == 1 or not dist.is_initialized():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


class ShardSampler(Sampler[int]):
    """Indices rank, rank + world, ... of ``n`` (no padding: shards differ by at most one sample)."""

    def __init__(self, n: int, rank_: int, world: int):
        self.indices = list(range(rank_, n, world))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def launch_command(processes: int, argv: Sequence[str]) -> List[str]:
    """The torchrun command line that runs ``argv`` (a script and its arguments) in ``processes`` processes."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={int(processes)}",
            *argv]


def relaunch(processes: int, argv: Sequence[str]) -> int:
    """Run ``argv`` under torchrun and return its exit status (the caller exits with it)."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1)
                                                                                        // int(processes)))))
    return subprocess.call(launch_command(processes, argv), env=env)

