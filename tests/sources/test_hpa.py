"""The HPA adapter's bad targets through the real train command: one line, nothing written."""

import pandas as pd
import pytest


@pytest.mark.parametrize("edit,match", [
    (lambda df: df.assign(Target=df["Target"].where(df.index != 3, "0 31")), "Target id '31' of Id tr00003 is outside"),
    (lambda df: df.assign(Target=df["Target"].where(df.index != 2, "")), "Target of Id tr00002 is empty"),
])


def test_hpa_bad_target_is_one_line(tmp_path, edit, match):
    import train
    from cellpipe.demo.hpa import write_hpa

    root = write_hpa(tmp_path / "hpa", n_train=12, n_test=4, size=16, duplicates=0)
    csv = root / "train.csv"
    before = csv.read_text()
    edit(pd.read_csv(csv, dtype=str, keep_default_na=False)).to_csv(csv, index=False)
    changed = csv.read_text()
    with pytest.raises(SystemExit) as e:
        train.main(["--config", "configs/classify.yml", "--overlay", "configs/data/hpa.yml", "--overlay",
                    "configs/tiny.yml", "--logdir", str(tmp_path / "run"), f"--data_params/root={root}",
                    "--data_params/source_params={classes: 8}"])
    message = str(e.value.code)  # SystemExit's message: what the interpreter prints on exit
    assert len(message.splitlines()) == 1 and match in message and "train.csv" in message, message
    assert csv.read_text() == changed != before and not (tmp_path / "run" / "DONE.json").exists()


def test_a_channel_dropout_that_can_empty_a_sample_is_a_start_up_error(tmp_path, capsys):
    import train
    from cellpipe.demo.hpa import write_hpa

    root = write_hpa(tmp_path / "hpa", n_train=8, n_test=2, size=16, duplicates=0)
    rc = train.main(["--config", "configs/classify.yml", "--overlay", "configs/data/hpa.yml", "--overlay",
                     "configs/tiny.yml", "--logdir", str(tmp_path / "run"), f"--data_params/root={root}",
                     "--data_params/source_params={classes: 8}",
                     "--data_params/augmentations/train=[{transform: ChannelDropout, channel_drop_range: [1, 4]}]"])
    err = capsys.readouterr().err
    assert rc == 2 and "channel_drop_range [1, 4] can drop all 4 channel(s)" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
