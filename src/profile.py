"""Morphological profiles from a finished run (or a model package): embeddings per site, well and
treatment as parquet, batch correction fitted on the control wells, mAP / accuracy before and after.

    python src/profile.py --model logs/.../fold_0/resnet18 --data_root data/demo --out_dir profiles/demo
    python src/profile.py --model pkg/ --data_root /screen --out_dir profiles/new_plates \\
        --transforms profiles/demo/transforms --control_label DMSO

See docs/profiling.md; cellpipe.profiling.pipeline lists the output files.
"""
import sys
from pathlib import Path

if __name__ == "profile":
    # src/ on sys.path (scripts, pytest) makes this file shadow the standard library's ``profile``,
    # which cProfile imports: whoever imports ``profile`` gets the real one
    import importlib.util
    import sysconfig

    _spec = importlib.util.spec_from_file_location("profile", Path(sysconfig.get_paths()["stdlib"]) / "profile.py")
    _stdlib = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_stdlib)
    sys.modules["profile"] = _stdlib
    globals().update({k: v for k, v in vars(_stdlib).items() if not k.startswith("__")})
else:
    from cellpipe.core import cli
    from cellpipe.profiling import pipeline


def main(model: str, out_dir: str, data_root: str = None, corrections: str = "center_scale,pca_whiten,tvn",
         transforms: str = None, control_label: str = None, control_query: str = None, aggregate: str = "mean",
         tta: str = None, batch_size: int = 32, num_workers: int = 0, device: str = "auto", illumination: str = None,
         evaluate: bool = True, null_size: int = 1000, seed: int = 0, n_components: int = None, shrink: float = 0.5,
         min_std_ratio: float = 0.5, source: str = None, source_params=None, rescale=None, overwrite: bool = False,
         export: bool = True) -> None:
    """Write OUT_DIR/sites/<plate>/<plate>.parquet, wells.parquet, treatments.parquet, corrected/, transforms/,
    evaluation.csv and evaluation.png.

    Args:
        model: a finished run folder or a one-run model package.
        out_dir: output folder (written whole or not at all; --overwrite replaces an earlier one).
        data_root: the screen's data folder (default: the run's data_params/root); the run's source
            and settings read it.
        corrections: comma-separated methods fitted on the control wells: center_scale, pca_whiten, tvn
            (default all three; none: no correction).
        transforms: a transforms/ folder of an earlier profile run: apply its fitted corrections instead
            of fitting new ones (new plates corrected as the screen was).
        control_label: the negative controls' label (e.g. DMSO); default: the source's own rule
            (RxRx1: well_type negative_control).
        control_query: or a pandas query over the sample table marking the controls.
        aggregate: mean (default) or median, for sites -> wells -> treatments.
        tta: TTA views averaged per site (default: the run's predict_params/tta).
        batch_size: images per forward pass (default 32).
        num_workers: loader processes (default 0).
        device: auto (default), cpu or cuda.
        illumination: a data_params/illumination folder for these images (default: the run's setting).
        source: read DATA_ROOT with another adapter than the run's (e.g. cells, loaddata); the run's
            channels must exist there.
        source_params: that adapter's settings (YAML flow mapping).
        rescale: the rule for deeper-than-8-bit images (default: the run's).
        evaluate: write evaluation.csv / .png and print the table (default True).
        null_size: copairs' permutations per p-value (default 1000).
        seed: seed of the permutations and the logistic model (default 0).
        n_components: at most this many PCA components in pca_whiten / tvn (default: all with variance).
        shrink: tvn's ridge on each plate's control covariance (default 0.5, as EFAAR).
        min_std_ratio: center_scale's floor on a plate's control std, as a share of the feature's pooled
            within-plate control std (default 0.5; 0: none).
        overwrite: replace a non-empty OUT_DIR (its contents go).
        export: false: correct and evaluate the profiles OUT_DIR already holds (other corrections,
            controls or floors without embedding again).
    """
    summary = pipeline.run(model, out_dir, data_root=data_root, corrections=corrections, transforms=transforms,
                           control_label=control_label, control_query=control_query, aggregate=aggregate, tta=tta,
                           batch_size=batch_size, num_workers=num_workers, device=device,
                           illumination=illumination, evaluate_profiles=evaluate, null_size=null_size, seed=seed,
                           n_components=n_components, shrink=shrink, min_std_ratio=min_std_ratio, source=source,
                           source_params=cli.mapping(source_params, "source_params"),
                           rescale=cli.mapping(rescale, "rescale"), overwrite=overwrite, export_profiles=export)
    print(f"profiles of {summary['wells']} wells ({summary['sites']} sites, {summary['plates']} plates, "
          f"{summary['features']} features, {summary['controls']} control wells) in {out_dir}")


if __name__ == "__main__":
    cli.run(main)
