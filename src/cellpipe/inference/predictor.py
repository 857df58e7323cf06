"""Finished runs (or a model package) loaded once, applied to samples that are files or arrays in
memory: what ``classify`` and the HTTP service share, so both give the same numbers.

Each run applies what it was trained with: its channels and their order, rescale rule, image size,
the normalisation statistics kept in its checkpoint, its TTA views and reducer, its fitted
thresholds (multi-label) and its joint hierarchy decoding. Several runs of one label map (the
folds of a run tree, the members of a package, channel combinations) are averaged as the ensemble
averages them; multi-label thresholds are averaged too.
"""
import json
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import pandas as pd

from cellpipe.core import config as cfglib
from cellpipe.core import layout
from cellpipe.core.errors import DataError
from cellpipe.core.fsutil import file_sha256
from cellpipe.core.images import read_image
from cellpipe.data.build import context_spec, make_eval_dataset
from cellpipe.data.normalize import FIXED_MODES, make_normalizer
from cellpipe.data.tta import tta_views
from cellpipe.inference.package import PACKAGE_FILE, model_card, source_channels, verify
from cellpipe.inference.predict import _data_params, load_run, resolve_device, tta_settings
from cellpipe.sources.base import TABLE_COLUMNS, Source
from cellpipe.training.evaluate import predict_logits


class ImageFiles(Source):
    """The given samples as a test split. ``samples`` maps a sample id to its one file (or decoded
    H x W x C array) holding at least ``n_channels`` channels (the first ``n_channels`` are used), or to
    its single-channel files (or H x W x 1 arrays) as a {channel number: file} mapping or a list of
    channels 1..n."""

    name = "files"

    def __init__(self, samples: dict, n_channels: int, rescale: Optional[dict] = None):
        super().__init__("/", rescale=rescale)  # the run's rule for deeper-than-8-bit files
        self.samples, self._n = dict(samples), int(n_channels)
        self.per_channel_files = any(isinstance(v, (list, tuple, dict)) for v in self.samples.values())

    def catalog(self) -> pd.DataFrame:
        # ids are a dict's keys (unique), the split and labels fixed: finish_table would find nothing, and
        # its pandas checks were a third of a one-sample request's time in the service
        if self._catalog is None:
            ids = [str(k) for k in self.samples]
            self._catalog = pd.DataFrame({"id": ids, "split": "test", "label": pd.Series([None] * len(ids), dtype=object),
                                          "group": ids}, columns=TABLE_COLUMNS)
        return self._catalog

    def describe(self) -> str:
        return f"{len(self.samples)} image sample(s)"

    @property
    def channel_names(self) -> List[str]:
        return [f"channel {c}" for c in range(1, self._n + 1)]

    def _items(self, row, channels) -> list:
        value = self.samples[row["id"]]
        if not self.per_channel_files:
            return [value]
        return [value[c] if isinstance(value, dict) else value[c - 1] for c in channels]

    def image_files(self, row, site: int, channels) -> List[Path]:
        return [Path(f) for f in self._items(row, channels)]

    def read_arrays(self, row, site: int, channels):
        items = self._items(row, channels)
        arrays = [v if isinstance(v, np.ndarray) else read_image(v) for v in items]
        names = [f"{row['id']} channel {c}" if isinstance(v, np.ndarray) else v for c, v in zip(channels, items)]
        if not self.per_channel_files:  # RGBA for an RGB model, a stack with extra pages: the model's channels
            return [arrays[0][..., :self._n]], [row["id"] if isinstance(items[0], np.ndarray) else items[0]]
        return arrays, names


def run_dirs(models: Sequence[str]) -> List[Path]:
    """Run folders: each item a finished run (DONE.json), a model package (checked against its hashes)
    or a run tree searched for them."""
    out = []
    for m in models:
        m = Path(m)
        if (m / PACKAGE_FILE).is_file():  # exactly the members it lists, every file checked
            out += [m / member["folder"] for member in verify(m)["members"]]
        elif (m / layout.DONE_FILE).is_file():
            out.append(m)
        else:
            found = sorted(p.parent for p in m.rglob(layout.DONE_FILE)) if m.is_dir() else []
            if not found:
                raise DataError(f"--model {m}: neither a finished run (no {layout.DONE_FILE}) nor a tree of them")
            out += found
    return out


def model_id(run_dir: Path) -> str:
    """The run's backbone name and the first 12 hex digits of its checkpoint's SHA-256: the same for
    a run and its copy in a model package."""
    digest = file_sha256(run_dir / layout.FINAL_CHECKPOINT)[:12]
    return f"{cfglib.read_run_config(run_dir / layout.CONFIG_FILE)['model_params']['model_name']}@{digest}"


class Member:
    """One run: its model on the device, label map, data settings, TTA and thresholds."""

    def __init__(self, run_dir: Path, device, tta=None, reduce=None, runtime: str = "torch",
                 group_stats: Optional[str] = None):
        self.run_dir = run_dir
        self.model, cfg, self.labels, payload = load_run(run_dir, device, check_folder=False)
        if runtime == "onnx":  # the same run, its weights through onnxruntime
            from cellpipe.inference.onnx import OnnxModel

            if device.type != "cpu":
                raise DataError(f"--runtime onnx runs on the CPU; got --device {device}")
            self.model = OnnxModel(run_dir / layout.ONNX_MODEL, self.model.num_classes)
        elif runtime != "torch":
            raise DataError(f"--runtime must be torch or onnx, got {runtime!r}")
        dp = _data_params(cfg, None, None, None)
        dp.update(cache=None, check_files=False, valid_sites=[1])
        if group_stats not in (None, "inputs"):
            raise DataError(f"--group_stats must be inputs or unset, got {group_stats!r}")
        # a run normalised per plate / experiment: the inputs are one such group (--group_stats inputs)
        self.inputs_as_group = dp["normalization"] not in FIXED_MODES
        if self.inputs_as_group and group_stats != "inputs":
            raise DataError(f"{run_dir}: the run normalises per {dp['normalization']} with that group's statistics; "
                            "classify new images of one such group (a plate, an experiment) with --group_stats "
                            "inputs, which normalises them by their own per-channel mean and std (the service "
                            "takes samples one by one and cannot serve such a run)")
        if context_spec(payload["model_params"]):
            raise DataError(f"{run_dir}: the model takes a context column "
                            f"({payload['model_params']['context_column']}), which new images do not have")
        self.dp, self.cfg, self.state = dp, cfg, payload.get("normalization")
        self.views = tta_settings(cfg, tta, reduce)
        self.thresholds = self.labels.read_thresholds(run_dir / layout.THRESHOLDS)
        self.id = model_id(run_dir)

    def probabilities(self, samples: dict, n_channels: int, batch_size: int, num_workers: int, device,
                      desc: Optional[str]) -> np.ndarray:
        source = ImageFiles(samples, n_channels, self.dp.get("rescale"))
        table = source.catalog()
        if self.inputs_as_group:  # the inputs' own per-channel statistics stand for the group's
            normalizer = make_normalizer(dict(self.dp, normalization="dataset"), source, [table], workers=0)
        else:
            normalizer = make_normalizer(self.dp, source, [table], state=self.state)
        ds = make_eval_dataset(self.dp, source, table, self.labels, normalizer, source.describe())
        logits = predict_logits(self.model, ds, batch_size=batch_size, num_workers=num_workers, device=device,
                                views=tta_views(self.views["tta"], self.views["crop"]), reduce=self.views["reduce"],
                                desc=desc)
        return self.labels.probabilities(logits)


class Predictor:
    """The runs of ``models`` (runs, run trees, packages), loaded once."""

    def __init__(self, models: Sequence[str], device: str = "auto", tta: Optional[str] = None,
                 reduce: Optional[str] = None, runtime: str = "torch", group_stats: Optional[str] = None):
        self.runs = run_dirs(models)
        self.device = resolve_device("cpu" if runtime == "onnx" and device == "auto" else device)
        self.members = [Member(r, self.device, tta, reduce, runtime, group_stats) for r in self.runs]
        self.runtime = runtime
        self.labels = self.members[0].labels
        for m in self.members[1:]:
            if list(m.labels.classes) != list(self.labels.classes):
                raise DataError(f"{m.run_dir}: its classes differ from {self.runs[0]}'s; "
                                "runs are averaged only when they share one label map")
        thresholds = [m.thresholds for m in self.members if m.thresholds is not None]
        self.thresholds = np.mean(thresholds, axis=0) if thresholds else None
        # every channel some member reads: a sample must hold channels 1..n_channels
        self.channels = sorted({c for m in self.members for c in m.dp["channels"]})
        self.n_channels = max(self.channels)
        self.model_ids = [m.id for m in self.members]
        self.info = model_card(self.runs)
        packages = {Path(p) for p in models if (Path(p) / PACKAGE_FILE).is_file()}
        if len(packages) == 1:  # verified by run_dirs
            self.info["sha256"] = json.loads((packages.pop() / PACKAGE_FILE).read_text())["sha256"]
        # channel name -> number over the whole source (a {channel} in a file name may be a name)
        names = source_channels(self.members[0].cfg)[0] or self.info["channel_names"]
        numbers = range(1, len(names) + 1) if len(names) >= self.n_channels else self.info["channels"]
        self.channel_numbers = dict(zip(names, numbers))
        self.info["models"] = self.model_ids
        self.info["runtime"] = runtime

    def check(self, planes: dict, name: str) -> None:
        """Do now what the loader will do with one sample's single-channel planes ({channel: H x W x 1}
        in their own dtype, for every channel of ``self.channels``), so that a bad sample is reported
        alone: each member's rescale rule (DataError naming the sample)."""
        deep = sorted({str(p.dtype) for p in planes.values() if p.dtype != np.uint8})
        if deep and any(m.dp.get("rescale") is None for m in self.members):
            raise DataError(f"{name} is {deep[0]}; the model has no rescale rule for images deeper than 8 bits "
                            "(it was trained with data_params/rescale null): give it 8-bit images")
        for rule in {json.dumps(m.dp.get("rescale"), sort_keys=True) for m in self.members}:
            ImageFiles({name: planes}, self.n_channels, json.loads(rule)).load_planes({"id": name}, 1, self.channels)

    @property
    def model(self) -> str:
        return ";".join(self.model_ids)

    def probabilities(self, samples: dict, batch_size: int = 32, num_workers: int = 0,
                      progress: bool = True) -> np.ndarray:
        """Averaged probabilities of ``samples`` (see ImageFiles), in their order."""
        probs = sum(m.probabilities(samples, self.n_channels, batch_size, num_workers, self.device,
                                    f"classify {m.run_dir.name}" if progress else None) for m in self.members)
        return probs / len(self.members)

    def table(self, samples: dict, top_k: int = 3, batch_size: int = 32, num_workers: int = 0,
              min_prob: Optional[float] = None, progress: bool = True) -> pd.DataFrame:
        """One row per sample: the task's decoded prediction (class and probability; every hierarchy
        level; the multi-label set at the thresholds), top1..top_k, one probability per output."""
        probs = self.probabilities(samples, batch_size, num_workers, progress)
        return self.decode(probs, top_k, min_prob)

    def decode(self, probs: np.ndarray, top_k: int = 3, min_prob: Optional[float] = None) -> pd.DataFrame:
        """See ``table``. ``min_prob``: a single-label or hierarchy prediction (each level on its own)
        less probable than this becomes the run's other label ("Other"; "unknown" without one), so
        that an image of a class the model never learnt is not forced into a known one; top1..k keep
        the model's best guesses."""
        labels = self.labels
        order = np.argsort(-probs[:, :len(labels.classes)], axis=1)[:, :top_k]
        top = {f"top{k + 1}": [labels.classes[i] for i in order[:, k]] for k in range(min(top_k, order.shape[1]))}
        decoded = labels.decode(probs, self.thresholds)
        if min_prob is not None:
            decoded = labels.reject_unsure(decoded, min_prob)
        return pd.concat([decoded, pd.DataFrame(top), pd.DataFrame(probs, columns=labels.prob_columns())], axis=1)
