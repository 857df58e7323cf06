"""RxRx1 control wells as extra classes, dropped again by the plate assignment."""

import numpy as np
import pandas as pd


def test_controls_as_extra_classes_and_the_ensemble_drops_them(tmp_path):
    import make_demo_data
    import make_folds
    from cellpipe.rxrx.ensemble import main as rxrx_ensemble
    from cellpipe.sources import make_source

    data = tmp_path / "d"
    make_demo_data.main(out_dir=str(data), image_size=16, n_sirnas=8, n_controls=2, cell_types=1,
                        train_experiments_per_type=3, test_experiments_per_type=1, pixel_stats=False)
    make_folds.main(str(data), out_dir=str(tmp_path / "csv"), n_folds=3)
    dp = {"source": "rxrx1", "root": str(data), "source_params": {"control_offset": 8},
          "train_csv": str(tmp_path / "csv" / "train_0.csv"), "valid_csv": str(tmp_path / "csv" / "valid_0.csv")}
    with_controls = {**dp, "source_params": {"control_offset": 8, "controls_as_classes": True}}
    plain = make_source(dp).split("train", dp["train_csv"])
    extra = make_source(with_controls).split("train", dp["train_csv"])
    controls = extra.iloc[len(plain):]
    assert set(controls["label"]) == {"8", "9"} and set(controls["dataset"]) == {"train", "test"}
    assert make_source(with_controls).split("valid", dp["valid_csv"])["label"].astype(int).max() < 8
    # predictions with 10 columns (8 treatments + 2 controls): the assignment uses the first 8
    test = pd.read_csv(data / "test.csv")
    truth = pd.read_csv(data / "test_labels.csv").set_index("id_code").loc[test["id_code"], "sirna"].to_numpy()
    logits = np.full((len(test), 10), -5.0, np.float32)
    logits[np.arange(len(test)), truth] = 5.0
    logits[:, 9] = 50.0  # a control column that would win every argmax
    run = tmp_path / "pred" / "[1,2,3,4,5,6]" / "fold_0" / "m"
    run.mkdir(parents=True)
    np.save(run / "pred_test.npy", logits)
    out = rxrx_ensemble(str(data), str(tmp_path / "pred"), str(tmp_path / "ens"))
    sub = pd.read_csv(tmp_path / "ens" / "submission.csv")
    assert out["n_classes"] == 8 and (sub["sirna"].to_numpy() == truth).all()
