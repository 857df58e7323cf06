"""Predict with finished runs.

    python src/inference.py predict-all --data_root=/data/ --model_root=/logs/pseudo/ \
        --model_name=se_resnext50_32x4d --out_dir=/predictions/pseudo/ [--tta=flip] [--reduce=max]
    python src/inference.py predict --run_dir=/logs/x --out_dir=/predictions/x [--epoch=7]
    python src/inference.py classify NEW_IMAGES/ more.png "shots/*.tif" --model /logs/manifest --out classified.csv
    python src/inference.py export --model /logs/manifest --out /models/manifest_v1 [--onnx]   # then classify it

``predict-all`` walks the seed's tree ``{model_root}/{channels}/fold_{k}/{model_name}/``
and writes ``{out_dir}/{channels}/fold_{k}/{model_name}/`` (pred_test.npy in the test
table's row order, test_ids.csv, pred_test.csv with class names and probabilities,
pred_valid.npy, valid_ids.csv, labels.json, meta.json; multi-label runs also
submission.csv and submission_optimal_threshold.csv). ``predict`` does the same for
one run folder anywhere, optionally with an earlier epoch's checkpoint.
"""
from pathlib import Path
from typing import Optional

from cellpipe.core import cli
from cellpipe.inference.predict import predict_all as _predict_all
from cellpipe.inference.predict import predict_run


def predict_all(data_root, model_root, model_name, out_dir, sites=None, tta: Optional[str] = None,
                batch_size: int = 32, num_workers: int = 0, device: str = "auto",
                overwrite: bool = False, image_size: Optional[int] = None, test_csv: Optional[str] = None,
                reduce: Optional[str] = None, crop: Optional[float] = None, adabn: Optional[str] = None,
                mlflow: bool = False, mlflow_uri: Optional[str] = None, mlflow_experiment: str = "cellpipe-predictions"):
    """Predict with every finished run under model_root.

    Args:
        data_root: the data folder (for rxrx1: test.csv, test/, train/); None = the run's data_params/root.
        model_root: a part's log folder, e.g. /logs/non_pseudo or /logs/pseudo.
        model_name: backbone folder name, e.g. se_resnext50_32x4d.
        out_dir: where {channels}/fold_{k}/{model_name}/pred_test.npy go.
        sites: sites whose logits are averaged (default: the run's valid_sites).
        tta: none | flip (identity + h/v flips) | d4 (8 dihedral views) | five_crop (4 corners +
            centre) | five_crop_flip; default: the run's predict_params/tta.
        batch_size: samples per batch (each is len(sites) images per view).
        num_workers: DataLoader worker processes.
        device: auto (CUDA when present) | cpu | cuda | cuda:N.
        overwrite: recompute outputs that already exist.
        image_size: resize to this size instead of the run's training size.
        test_csv: rows to predict (rxrx1 default {data_root}/test.csv; other sources: a file of ids).
        reduce: how TTA views' logits combine: mean | max (default: the run's predict_params/reduce).
        crop: five_crop's crop side, a fraction of the image side or pixels (default: predict_params/crop).
        adabn: re-estimate BatchNorm statistics per group before predicting it: plate | experiment
            (any normalisation level of the source; default: predict_params/adabn).
        mlflow: log the prediction as an MLflow run (arguments, models, sample counts, meta.json files).
        mlflow_uri: the tracking store (default sqlite:///mlflow.db; a file store or server URL).
        mlflow_experiment: the MLflow experiment of prediction runs.
    """
    args = dict(locals())
    result = _predict_all(data_root, model_root, model_name, out_dir, sites, tta, batch_size, num_workers, device,
                          overwrite, image_size, test_csv, reduce, crop, adabn)
    if mlflow:
        _track("predict-all", args, Path(out_dir), sorted(Path(out_dir).rglob("meta.json")))
    return result


def predict(run_dir, out_dir, data_root=None, epoch: Optional[int] = None, sites=None, tta: Optional[str] = None,
            reduce: Optional[str] = None, batch_size: int = 32, num_workers: int = 0, device: str = "auto",
            overwrite: bool = False, test_csv: Optional[str] = None, crop: Optional[float] = None,
            image_size: Optional[int] = None, adabn: Optional[str] = None, mlflow: bool = False,
            mlflow_uri: Optional[str] = None, mlflow_experiment: str = "cellpipe-predictions"):
    """Predict with one run folder (its best model, or the checkpoint of ``epoch``).

    Args:
        run_dir: a finished run folder (DONE.json, config.yml, checkpoints/best.pth).
        out_dir: where the prediction files go.
        data_root: the data folder (default: the run's data_params/root).
        epoch: use this epoch's checkpoint of the run's last stage (needs keep_epoch_checkpoints).
        sites: sites whose logits are averaged (default: the run's valid_sites).
        tta: none | flip | d4 | five_crop | five_crop_flip (default: the run's predict_params/tta).
        reduce: mean | max over the TTA views (default: predict_params/reduce).
        crop: five_crop's crop side (fraction of the side, or pixels).
        image_size: resize to this size instead of the run's training size (e.g. larger, then crop).
        adabn: BatchNorm statistics per group before predicting it: plate | experiment.
        batch_size: samples per batch.
        num_workers: DataLoader worker processes.
        device: auto | cpu | cuda | cuda:N.
        overwrite: recompute outputs that already exist.
        test_csv: rows to predict (a file of ids; default the source's test split).
        mlflow, mlflow_uri, mlflow_experiment: log the prediction as an MLflow run (as for predict-all).
    """
    args = dict(locals())
    sites = None if sites is None else [int(s) for s in ([sites] if isinstance(sites, int) else sites)]
    result = str(predict_run(Path(run_dir), data_root, Path(out_dir), sites, tta, batch_size, num_workers, device,
                             overwrite, image_size, test_csv, reduce, epoch, dest=Path(out_dir), crop=crop,
                             adabn=adabn))
    if mlflow:
        _track("predict", args, Path(out_dir), [Path(out_dir) / "meta.json"])
    return result


def classify(*images, model=None, out="classified.csv", pattern: Optional[str] = None, tta: Optional[str] = None,
             reduce: Optional[str] = None, batch_size: int = 32, num_workers: int = 0, device: str = "auto",
             top_k: int = 3, parquet: bool = False, runtime: str = "torch", group_stats: Optional[str] = None,
             min_prob: Optional[float] = None, mlflow: bool = False, mlflow_uri: Optional[str] = None,
             mlflow_experiment: str = "cellpipe-predictions"):
    """Classify new, unlabelled images with finished runs (no labels, no split, no training config).

    Args:
        images: image files, folders (searched recursively), glob patterns (quoted), or a .csv /
            .parquet table with a path column; one file per sample.
        model: a finished run folder, or a run tree (every finished run under it: the folds are averaged);
            a list or "a,b" for several.
        out: the CSV written (path, pred and its probability, every hierarchy level or the multi-label
            set, top-k, one probability per class, error for an unreadable file, model ids).
        pattern: one single-channel file per channel, grouped into samples by this file-name pattern,
            e.g. "{sample}_w{channel}.png" (RxRx1) or "{sample}_{channel}.png" (HPA stain names);
            other {fields} match anything. Default: one file per sample.
        tta: none | flip | d4 | five_crop | five_crop_flip (default: each run's predict_params/tta).
        reduce: mean | max over the TTA views (default: each run's).
        batch_size: samples per batch.
        num_workers: DataLoader worker processes.
        device: auto | cpu | cuda | cuda:N.
        top_k: how many top classes to list (top1, top2, ...).
        parquet: also write the table as parquet beside the CSV.
        runtime: torch | onnx (a package exported with --onnx, through onnxruntime on the CPU).
        group_stats: inputs: for runs that normalise per plate or experiment (the RxRx1 demo's plate),
            the given images are one such group and are normalised by their own per-channel mean/std.
        min_prob: single-label / hierarchy: a prediction (each level on its own) below this probability
            becomes the run's other label (Other), for images of classes the model never learnt.
        mlflow, mlflow_uri, mlflow_experiment: log the classification as an MLflow run (arguments, models,
            samples classified and unreadable, the output table as an artefact).
    """
    from cellpipe.inference.classify import classify as _classify

    args = dict(locals())
    if not model:
        raise SystemExit("classify: --model RUN_OR_TREE is required")
    models = model.split(",") if isinstance(model, str) else list(model)
    result = str(_classify(models, images, out, batch_size, num_workers, device, tta, reduce, top_k, parquet, pattern,
                           runtime, group_stats, min_prob))
    if mlflow:
        _track("classify", args, Path(out), [Path(out)])
    return result


def _track(command: str, args: dict, out: Path, files) -> None:
    """The MLflow run of a prediction command (``mlflow``, ``mlflow_uri``, ``mlflow_experiment`` of ``args``)."""
    import json

    import pandas as pd

    from cellpipe.inference.predictor import run_dirs
    from cellpipe.training.tracking import log_prediction

    uri, experiment = args.pop("mlflow_uri"), args.pop("mlflow_experiment")
    args.pop("mlflow")
    model = args.get("model") or args.get("run_dir") or args.get("model_root")
    runs = run_dirs(model.split(",") if isinstance(model, str) else list(model))
    if command == "predict-all":
        runs = [r for r in runs if r.name == args["model_name"]]
    if command == "classify":
        table = pd.read_csv(out)
        errors = int(table["error"].notna().sum()) if "error" in table else 0
        metrics = {"samples": len(table), "unreadable": errors}
    else:
        metas = [json.loads(Path(f).read_text()) for f in files if Path(f).is_file()]
        metrics = {"runs": len(metas), "test_samples": sum(m.get("n_test") or 0 for m in metas),
                   "valid_samples": sum(m.get("n_valid") or 0 for m in metas)}
    log_prediction(uri, experiment, command, args, out, runs, metrics, files)


def export(model=None, out=None, onnx: bool = False):
    """Write a self-contained model package (weights, label map, channels, normalisation statistics,
    rescale rule, image size, TTA, thresholds, hierarchy, resolved configs, SHA-256 hashes) for classify.

    Args:
        model: a finished run folder, or a run tree (every finished run under it: an ensemble); a list
            or "a,b" for several.
        out: the package folder (written in full, then renamed into place).
        onnx: also write each member's weights as ONNX for onnxruntime (classify / serve --runtime onnx).
    """
    from cellpipe.inference.package import export as _export
    from cellpipe.inference.predictor import run_dirs

    if not model or not out:
        raise SystemExit("export: --model RUN_OR_TREE and --out PACKAGE are required")
    models = model.split(",") if isinstance(model, str) else list(model)
    return str(_export(run_dirs(models), Path(out), onnx))


if __name__ == "__main__":
    cli.run({"predict-all": predict_all, "predict_all": predict_all, "predict": predict, "classify": classify,
             "export": export})
