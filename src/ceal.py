"""Seed 000's CEAL step: low-entropy predictions of TEST / unlabelled rows -> a new manifest version.

    python src/inference.py predict --run_dir R --out_dir P
    python src/ceal.py --manifest data/manifest.parquet --predictions P/pred_test.csv \
        --out data/manifest_v2.parquet --max_entropy 0.3 [--top_fraction 0.5]
    SOURCE=manifest ... bash bin/train_classify.sh \
        --data_params/source_params="{manifest: manifest_v2.parquet, use_pseudo: true}"
"""
from cellpipe.core import cli
from cellpipe.prep.ceal import pseudo_manifest


def main(manifest, predictions, out, max_entropy=None, top_fraction=None, path_column="img_path",
         split_column="split_set", label_column="label", id_column=None):
    """Write a manifest version whose confident predictions are TRAIN rows with is_gt=False.

    Args:
        manifest: the current manifest (CSV or parquet).
        predictions: pred_test.csv of a run (id, pred, prob_<class>...).
        out: the new manifest version (CSV or parquet by suffix; written atomically).
        max_entropy: keep predictions with entropy (nats) at or below this.
        top_fraction: keep at most this fraction of each predicted class, lowest entropy first.
        path_column: the manifest's image path column (the sample id unless id_column is set).
        split_column: the manifest's split column (TRAIN/VAL/TEST).
        label_column: the manifest's label column.
        id_column: a manifest column holding sample ids (default: the image path).
    """
    summary = pseudo_manifest(manifest, predictions, out, max_entropy, top_fraction, path_column, split_column,
                              label_column, id_column)
    print(summary)
    return None


if __name__ == "__main__":
    cli.run(main)
