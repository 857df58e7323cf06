"""The output-tree names shared by train, inference, ensemble and report."""
from cellpipe.core import layout


def test_fold_names_round_trip():
    assert layout.fold_dir(3) == "fold_3"
    assert layout.parse_fold(layout.fold_dir(12)) == 12
    assert layout.parse_fold("fold_x") is None
    assert layout.parse_fold("[1,2,3]") is None


def test_finished_runs_needs_done_marker(tmp_path):
    done = tmp_path / "[1,2,3,4,5]" / "fold_0" / "m"
    unfinished = tmp_path / "[1,2,3,4,5]" / "fold_1" / "m"
    other_model = tmp_path / "[1,2,3,4,5]" / "fold_2" / "other"
    for d in (done, unfinished, other_model):
        d.mkdir(parents=True)
    (done / layout.DONE_FILE).write_text("{}")
    (other_model / layout.DONE_FILE).write_text("{}")
    assert layout.finished_runs(tmp_path, "m") == [done]
