"""Per-epoch checkpoints of a stage, and resuming a killed stage from its last finished epoch.

After every epoch ``EpochCheckpointCallback`` writes, each under a temporary name then renamed:
``checkpoints/model.last.pth``, ``checkpoints/model.best.pth`` (only when the epoch improved the
main metric: catalyst 22.4's CheckpointCallback rewrote it with the current weights every epoch)
and ``checkpoints/resume.pth``: weights, optimizer, scheduler, AMP scaler, epoch / batch / sample
counters, the epochs' metrics, the best score, the random generators and the state of every
stateful helper (EMA, history, early stopping, mixing). Re-running the same command loads
``resume.pth`` and continues with the next epoch. Catalyst reseeds the global generators from
(seed, epoch) at each epoch start and every training draw carries its own seed
(data.sampling.SeededBatches), so on the CPU a resumed stage ends bit-identical to an
uninterrupted one.
"""
import copy
import logging
import random
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch
from catalyst import dl
from catalyst.callbacks.checkpoint import ICheckpointCallback

from cellpipe.core.errors import DataError
from cellpipe.core.fsutil import atomic_path, link_atomic
from cellpipe.training import distributed

log = logging.getLogger(__name__)

BEST, LAST, RESUME = "model.best.pth", "model.last.pth", "resume.pth"


def save_atomic(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def cpu_copy(obj):
    """A deep copy with every tensor copied to the CPU (a snapshot the writer thread can save while
    training goes on, without a second copy of the optimizer state in GPU memory)."""
    if torch.is_tensor(obj):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: cpu_copy(v) for k, v in obj.items()}
    if type(obj) in (list, tuple):
        return type(obj)(cpu_copy(v) for v in obj)
    return copy.deepcopy(obj)


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class StatefulEarlyStopping(dl.EarlyStoppingCallback):
    """catalyst's early stopping whose patience counter survives a resume."""

    def state_dict(self) -> dict:
        return {"best_score": self.best_score, "bad_epochs": self.num_no_improvement_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.best_score, self.num_no_improvement_epochs = state["best_score"], state["bad_epochs"]


class EpochCheckpointCallback(ICheckpointCallback):
    """Best / last / per-epoch weights and the resume state of one stage (see the module doc).

    ``stateful``: name -> object with ``state_dict()`` / ``load_state_dict()`` saved with the run.
    Runs after the other callbacks (order External + 10), so that their epoch-end work is in the
    saved state and their experiment-start resets come before the resume overwrites them.
    """

    def __init__(self, logdir, loader_key: str, metric_key: str, minimize: bool, keep_epochs: bool = False,
                 stateful: Optional[Dict[str, object]] = None):
        super().__init__()
        self.order = dl.CallbackOrder.External + 10
        self.dir = Path(logdir)
        self.loader_key, self.metric_key, self.minimize = loader_key, metric_key, minimize
        self.keep_epochs = keep_epochs
        self.stateful = dict(stateful or {})
        self.best: Optional[dict] = None
        self._writer: Optional[ThreadPoolExecutor] = None
        self._pending: Optional[Future] = None

    # ---------------------------------------------------------------- resume
    @staticmethod
    def _scaler(runner):
        """The engine's AMP grad scaler (accelerate keeps one with fp16), or None."""
        scaler = getattr(runner.engine, "scaler", None)
        return scaler if hasattr(scaler, "state_dict") else None

    def on_experiment_start(self, runner) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.best = None
        path = self.dir / RESUME
        if not path.is_file():
            return
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
            model = runner.engine.unwrap_model(runner.model)
            model.load_state_dict(state["model"])
            if runner.optimizer is not None:
                runner.optimizer.load_state_dict(state["optimizer"])
        except Exception as e:  # noqa: BLE001 - a resume file that does not fit this run
            raise DataError(f"cannot resume from {path} ({type(e).__name__}: {e}); delete it to restart the "
                            f"stage, or pass --force") from None
        if runner.scheduler is not None and state.get("scheduler") is not None:
            runner.scheduler.load_state_dict(state["scheduler"])
        scaler = self._scaler(runner)
        if scaler is not None and state.get("scaler") is not None:
            scaler.load_state_dict(state["scaler"])
        for name, obj in self.stateful.items():
            if name in state["stateful"]:
                obj.load_state_dict(state["stateful"][name])
        runner.epoch_step, runner.batch_step, runner.sample_step = state["steps"]
        runner.experiment_metrics.update(state["metrics"])
        set_rng_state(state["rng"])
        self.best = state["best"]
        log.info("resuming %s after epoch %d (of %d) from %s", self.dir.parent.name, runner.epoch_step,
                 runner.num_epochs, path)

    # ---------------------------------------------------------------- saving
    def on_epoch_end(self, runner) -> None:
        score = float(runner.epoch_metrics[self.loader_key][self.metric_key])
        better = self.best is None or (score < self.best["score"] if self.minimize else score > self.best["score"])
        if better:
            self.best = {"score": score, "epoch": runner.epoch_step}
        if distributed.is_main():  # the other processes hold the same weights and decisions
            self._save(runner, better)

    def _save(self, runner, better: bool) -> None:
        """Snapshot the state now (copies: training goes on mutating it) and write it in a background
        thread while the next epoch trains; a write still running is waited for first. A kill during
        a write leaves the previous epoch's files (every file is renamed into place)."""
        weights = {k: v.detach().to("cpu", copy=True) for k, v in
                   runner.engine.unwrap_model(runner.model).state_dict().items()}
        scaler = self._scaler(runner)
        resume = cpu_copy({
            "optimizer": runner.optimizer.state_dict() if runner.optimizer is not None else None,
            "scheduler": runner.scheduler.state_dict() if runner.scheduler is not None else None,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "stateful": {name: obj.state_dict() for name, obj in self.stateful.items()},
            "steps": (runner.epoch_step, runner.batch_step, runner.sample_step),
            "metrics": {k: dict(v) for k, v in runner.experiment_metrics.items()},
            "best": self.best,
            "rng": rng_state(),
        })
        self.wait()
        self._writer = self._writer or ThreadPoolExecutor(1, thread_name_prefix="checkpoint")
        self._pending = self._writer.submit(self._write, weights, {"model": weights, **resume}, better,
                                            runner.epoch_step)

    def _write(self, weights, resume: dict, better: bool, epoch: int) -> None:
        save_atomic(weights, self.dir / LAST)
        # the same bytes under other names: links, not more writes (model.last is replaced by a rename
        # next epoch, so the links keep this epoch's file)
        if better:
            link_atomic(self.dir / LAST, self.dir / BEST)
        if self.keep_epochs:
            link_atomic(self.dir / LAST, self.dir / f"model.{epoch:04d}.pth")
        save_atomic(resume, self.dir / RESUME)

    def wait(self) -> None:
        """Block until the last checkpoint write is on disk (its error, if any, raised here)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def on_exception(self, runner) -> None:
        self.wait()

    def on_experiment_end(self, runner) -> None:
        self.wait()
        if self._writer is not None:
            self._writer.shutdown()
            self._writer = None
        distributed.barrier()  # nobody reads model.best before rank 0 wrote it
        # the stage ends on its best epoch's weights (the next stage or the final model starts there)
        best = self.dir / BEST
        if best.is_file():
            runner.engine.unwrap_model(runner.model).load_state_dict(torch.load(best, map_location="cpu"))
