"""Data preparation tools: seed 003's resize-and-split (prep.resize) and seed 001's link-tree merge (prep.merge)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import tifffile

from cellpipe.core.errors import DataError, UserError
from cellpipe.prep import merge, resize

REPO = Path(__file__).resolve().parents[2]
H, W = 40, 60  # source images: small, and not square so that a W/H mix-up shows


def noise(seed, channels=3, dtype=np.uint8):
    """A random H x W x channels image (RGB order when 3 channels)."""
    top = np.iinfo(dtype).max
    return np.random.default_rng(seed).integers(0, top, (H, W, channels), dtype=dtype, endpoint=True)


def write_png(path, rgb):
    """Save an RGB (or grey H x W x 1) array as PNG; cv2 wants BGR."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.shape[-1] == 3 else rgb[..., 0]
    assert cv2.imwrite(str(path), img)
    return path


def class_tree(root, classes=("alpha", "beta", "gamma"), n=10):
    """root/<class>/<i>.png with ``n`` distinct noise images per class."""
    for c, cls in enumerate(classes):
        for i in range(n):
            write_png(root / cls / f"{i}.png", noise(100 * c + i))
    return root


def truncated_png(path):
    """A PNG cut in half: the header is fine, the data is not."""
    data = cv2.imencode(".png", noise(7))[1].tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[:len(data) // 2])
    return path


def prep(in_dir, out_dir, **kw):
    kw.setdefault("workers", 1)
    kw.setdefault("size", 16)
    return resize.prepare_images(in_dir, out_dir, **kw)


def read_png(path):
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img


def files_under(root):
    return sorted(p.relative_to(root).as_posix() for p in Path(root).rglob("*") if p.is_file())


# ------------------------------------------------------------------ prep.resize

@pytest.mark.parametrize("n,fractions,expected", [
    (10, (0.8, 0.1, 0.1), [8, 1, 1]),
    (5, (0.8, 0.1, 0.1), [3, 1, 1]),  # 4/0/1 by rounding; the empty split borrows from training
    (3, (0.8, 0.1, 0.1), [1, 1, 1]),
    (2, (0.8, 0.1, 0.1), [2, 0, 0]),  # too few for all three splits: no forced coverage
    (100, (0.71, 0.29, 0.0), [71, 29, 0]),  # 0.29 * 100 is 28.999... in floating point
    (7, (1.0, 0.0, 0.0), [7, 0, 0]),
])
def test_split_counts(n, fractions, expected):
    assert resize.split_counts(n, fractions) == expected


def test_split_counts_add_up_and_follow_the_fractions():
    for fractions in [(0.8, 0.1, 0.1), (0.6, 0.2, 0.2), (0.5, 0.5, 0.0), (0.34, 0.33, 0.33)]:
        for n in range(60):
            counts = resize.split_counts(n, fractions)
            assert sum(counts) == n and min(counts) >= 0, (n, fractions, counts)
            positive = [i for i, f in enumerate(fractions) if f > 0]
            if n >= len(positive) + 2:  # room for the coverage rule: every positive split has an image
                assert all(counts[i] >= 1 for i in positive), (n, fractions, counts)
            assert all(abs(c - n * f) <= 2 for c, f in zip(counts, fractions)), (n, fractions, counts)


def test_split_layout_fractions_and_coverage(tmp_path):
    src = class_tree(tmp_path / "in")
    out = tmp_path / "out"
    summary = prep(src, out, size="24,18")
    assert summary["written"] == 30 and summary["skipped"] == 0
    assert summary["counts"] == {cls: {"training": 8, "validation": 1, "test": 1} for cls in ("alpha", "beta", "gamma")}
    table = pd.read_csv(out / "split.csv")
    assert list(table.columns) == ["source", "dest", "class", "split"]
    assert sorted(table.source) == sorted(str(p.absolute()) for p in src.rglob("*.png"))
    assert (table.groupby(["class", "split"]).size().unstack()[list(resize.SPLITS)].values == [8, 1, 1]).all()
    for row in table.itertuples():
        assert row.dest == f"{row.split}/{row[3]}/{Path(row.source).name}"
        assert read_png(out / row.dest).shape == (18, 24, 3)  # "W,H"
    assert files_under(out) == sorted(table.dest.tolist() + ["prep.json", "skipped.csv", "split.csv"])
    meta = json.loads((out / "prep.json").read_text())
    assert meta["size"] == [24, 18] and meta["fractions"] == [0.8, 0.1, 0.1] and meta["written"] == 30
    assert pd.read_csv(out / "skipped.csv").empty
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]  # no staging folder left beside out_dir


def test_split_none_keeps_class_folders(tmp_path):
    src = class_tree(tmp_path / "in", classes=("alpha", "beta"), n=4)
    summary = prep(src, tmp_path / "out", split="none")
    table = pd.read_csv(tmp_path / "out" / "split.csv")
    assert set(table.split) == {"none"} and len(table) == 8
    assert sorted(table.dest) == [f"{c}/{i}.png" for c in ("alpha", "beta") for i in range(4)]
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir()) == ["alpha", "beta"]
    assert summary["counts"] == {"alpha": {"none": 4}, "beta": {"none": 4}}


@pytest.mark.parametrize("name", ["nearest", "area", "lanczos"])
def test_size_and_filter_match_cv2(tmp_path, name):
    rgb = noise(1)
    write_png(tmp_path / "in" / "c" / "x.png", rgb)
    prep(tmp_path / "in", tmp_path / "out", size=(30, 20), interpolation=name, split="none")
    got = cv2.cvtColor(read_png(tmp_path / "out" / "c" / "x.png"), cv2.COLOR_BGR2RGB)
    assert got.shape == (20, 30, 3)
    assert np.array_equal(got, cv2.resize(rgb, (30, 20), interpolation=resize.FILTERS[name]))
    assert not np.array_equal(got, cv2.resize(rgb, (30, 20), interpolation=cv2.INTER_CUBIC))


def test_colour_order_grey_and_tiff_inputs(tmp_path):
    colour = np.zeros((H, W, 3), np.uint8)
    colour[...] = (200, 100, 0)  # RGB: orange; a BGR/RGB swap turns it blue
    (tmp_path / "in" / "c").mkdir(parents=True)
    tifffile.imwrite(tmp_path / "in" / "c" / "rgb8.tif", colour)
    write_png(tmp_path / "in" / "c" / "grey.png", noise(2, channels=1))
    prep(tmp_path / "in", tmp_path / "out", size=8, split="none")
    tif = read_png(tmp_path / "out" / "c" / "rgb8.png")
    assert tif.shape == (8, 8, 3) and (tif.reshape(-1, 3) == (0, 100, 200)).all()  # BGR on disk
    assert read_png(tmp_path / "out" / "c" / "grey.png").shape == (8, 8)


def test_16bit_needs_a_rescale_rule(tmp_path):
    write_png(tmp_path / "in" / "c" / "ok.png", noise(3))
    deep = np.full((H, W, 3), 32768, np.uint16)
    tifffile.imwrite(tmp_path / "in" / "c" / "deep.tif", deep)
    with pytest.raises(DataError, match=r"deep\.tif: uint16 image needs a rescale rule"):
        prep(tmp_path / "in", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # nothing half-written, no staging folder
    prep(tmp_path / "in", tmp_path / "out", split="none", rescale="{mode: full}")
    got = read_png(tmp_path / "out" / "c" / "deep.png")
    assert got.dtype == np.uint8 and (got == round(32768 * 255 / 65535)).all()


def test_unsupported_channel_count_names_the_file(tmp_path):
    class_tree(tmp_path / "in", classes=("c",), n=2)
    cv2.imwrite(str(tmp_path / "in" / "c" / "rgba.png"), noise(4, channels=4))
    with pytest.raises(DataError, match=r"rgba\.png: 4 channels"):
        prep(tmp_path / "in", tmp_path / "out")


def test_unreadable_images_are_skipped_and_listed(tmp_path):
    src = class_tree(tmp_path / "in", classes=("alpha", "beta"))
    bad = [truncated_png(src / "alpha" / "half.png"), src / "beta" / "empty.png"]
    bad[1].write_bytes(b"")
    good = src / "beta" / "whole.jpg"
    assert cv2.imwrite(str(good), noise(5))
    cut = src / "beta" / "cut.jpg"
    cut.write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])  # OpenCV decodes this without error
    bad.append(cut)
    summary = prep(src, tmp_path / "out")
    assert summary["written"] == 21 and summary["skipped"] == 3
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv")
    assert sorted(skipped.path) == sorted(str(p.absolute()) for p in bad)
    assert skipped.reason.str.contains("cannot decode|truncated JPEG").all()
    # the split is drawn from what was written: 10 and 11 images
    assert summary["counts"] == {"alpha": {"training": 8, "validation": 1, "test": 1},
                                 "beta": {"training": 9, "validation": 1, "test": 1}}
    assert not set(pd.read_csv(tmp_path / "out" / "split.csv").source) & set(skipped.path)


def test_split_is_seeded(tmp_path):
    src = class_tree(tmp_path / "in")
    splits = {}
    for name, seed in [("a", 1), ("b", 1), ("c", 2)]:
        prep(src, tmp_path / name, seed=seed)
        splits[name] = pd.read_csv(tmp_path / name / "split.csv").sort_values("source").reset_index(drop=True)
    assert splits["a"].equals(splits["b"])
    assert not splits["a"].dest.equals(splits["c"].dest)
    assert splits["a"].split.value_counts().to_dict() == splits["c"].split.value_counts().to_dict()


def test_process_pool_gives_the_same_output(tmp_path):
    src = class_tree(tmp_path / "in", classes=("alpha", "beta"), n=20)
    prep(src, tmp_path / "one", workers=1)
    prep(src, tmp_path / "two", workers=2)
    assert files_under(tmp_path / "one") == files_under(tmp_path / "two")
    for rel in files_under(tmp_path / "one"):
        assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "two" / rel).read_bytes(), rel


def test_non_empty_out_dir_is_refused_unless_overwrite(tmp_path):
    src = class_tree(tmp_path / "in")
    out = tmp_path / "out"
    prep(src, out, seed=1)
    with pytest.raises(DataError, match=r"out_dir .*out is not empty; pass overwrite"):
        prep(src, out, seed=2)
    prep(src, out, seed=2, size=12, overwrite=True)
    table = pd.read_csv(out / "split.csv")
    assert files_under(out) == sorted(table.dest.tolist() + ["prep.json", "skipped.csv", "split.csv"])  # nothing stale
    assert read_png(out / table.dest[0]).shape == (12, 12, 3)
    foreign = tmp_path / "foreign"
    (foreign / "keep.txt").parent.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="no prep.json"):
        prep(src, foreign, overwrite=True)
    assert (foreign / "keep.txt").read_text() == "mine"


def test_bad_inputs_name_the_folder(tmp_path):
    with pytest.raises(DataError, match=r"input folder not found: .*nowhere"):
        prep(tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty has no class sub-folders"):
        prep(tmp_path / "empty", tmp_path / "out")
    class_tree(tmp_path / "in", classes=("alpha",), n=2)
    (tmp_path / "in" / "beta").mkdir()
    (tmp_path / "in" / "beta" / "notes.txt").write_text("no image")
    with pytest.raises(DataError, match=r"class folder .*beta holds no images"):
        prep(tmp_path / "in", tmp_path / "out")
    with pytest.raises(UserError, match="fractions"):
        prep(tmp_path / "in", tmp_path / "out", fractions="0.8,0.1")
    with pytest.raises(UserError, match="filter must be one of"):
        prep(tmp_path / "in", tmp_path / "out", interpolation="sinc")
    with pytest.raises(DataError, match="must not contain each other"):
        prep(tmp_path / "in", tmp_path / "in" / "out")


# ------------------------------------------------------------------ prep.merge

def two_sources(root):
    """source_a: Aglais {1, 2}, Bombyx {1}; source_b: Aglais {1, 3}, Catocala {1}; each file distinct."""
    files = {"source_a": {"Aglais": ["1.png", "2.png"], "Bombyx": ["1.png"]},
             "source_b": {"Aglais": ["1.png", "3.png"], "Catocala": ["1.png"]}}
    k = 0
    for source, species in files.items():
        for sp, names in species.items():
            for name in names:
                write_png(root / source / sp / name, noise(1000 + k))
                k += 1
    return root / "source_a", root / "source_b"


def tree(root):
    """{relative link path: resolved target} of a link tree; fails on anything but links to files."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        if not p.is_dir():
            assert p.is_symlink() and os.path.isabs(os.readlink(p)), p
            out[p.relative_to(root).as_posix()] = Path(os.path.realpath(p))
    return out


def test_merge_overlapping_species_and_name_clash(tmp_path):
    a, b = two_sources(tmp_path)
    summary = merge.merge_folders(tmp_path / "out", [a, b], workers=1)
    links = tree(tmp_path / "out" / "image_folder")
    assert links == {
        "Aglais/2.png": (a / "Aglais" / "2.png").resolve(), "Aglais/3.png": (b / "Aglais" / "3.png").resolve(),
        "Aglais/source_a__1.png": (a / "Aglais" / "1.png").resolve(),
        "Aglais/source_b__1.png": (b / "Aglais" / "1.png").resolve(),
        "Bombyx/1.png": (a / "Bombyx" / "1.png").resolve(), "Catocala/1.png": (b / "Catocala" / "1.png").resolve(),
    }
    for rel, target in links.items():
        assert (tmp_path / "out" / "image_folder" / rel).read_bytes() == target.read_bytes()
    assert summary == {"tree": str(tmp_path / "out" / "image_folder"), "linked": 6, "hidden": 0, "species": 3,
                       "renamed": 2, "below_min_samples": []}
    counts = pd.read_csv(tmp_path / "out" / "image_folder_counts.csv")
    assert counts.to_dict("list") == {"species": ["Aglais", "Bombyx", "Catocala"], "n_images": [4, 1, 1]}


def test_merge_hides_corrupt_and_empty_images(tmp_path):
    a, b = two_sources(tmp_path)
    bad = [truncated_png(a / "Bombyx" / "half.png"), b / "Aglais" / "empty.png", b / "Dryas" / "zero.jpg"]
    (b / "Dryas").mkdir()
    for p in bad[1:]:
        p.write_bytes(b"")
    summary = merge.merge_folders(tmp_path / "out", [a, b], min_samples=2, workers=1)
    hidden = pd.read_csv(tmp_path / "out" / "hidden.csv")
    assert list(hidden.columns) == ["path", "reason"]
    assert sorted(hidden.path) == sorted(str(p.absolute()) for p in bad)
    assert hidden.reason.str.startswith("cannot decode image").all()
    links = tree(tmp_path / "out" / "image_folder")
    assert len(links) == 6 and not {Path(p).name for p in links} & {"half.png", "empty.png", "zero.jpg"}
    counts = pd.read_csv(tmp_path / "out" / "image_folder_counts.csv").set_index("species").n_images.to_dict()
    assert counts == {"Aglais": 4, "Bombyx": 1, "Catocala": 1, "Dryas": 0}
    assert summary["hidden"] == 3 and summary["below_min_samples"] == ["Bombyx", "Catocala", "Dryas"]
    assert "3 species below min_samples=2" in merge.summary_text(summary, 2)


def test_merge_rerun_replaces_the_tree(tmp_path):
    a, b = two_sources(tmp_path)
    out = tmp_path / "out"
    merge.merge_folders(out, [a, b], workers=1)
    (b / "Aglais" / "1.png").unlink()  # the clash is gone: source_a's 1.png keeps its own name
    merge.merge_folders(out, [a, b], workers=1)
    assert sorted(tree(out / "image_folder")) == ["Aglais/1.png", "Aglais/2.png", "Aglais/3.png", "Bombyx/1.png",
                                                  "Catocala/1.png"]
    merge.merge_folders(out, [a], workers=1)
    assert sorted(tree(out / "image_folder")) == ["Aglais/1.png", "Aglais/2.png", "Bombyx/1.png"]
    assert sorted(p.name for p in out.iterdir()) == ["hidden.csv", "image_folder", "image_folder_counts.csv"]


def test_merge_refuses_bad_sources_and_real_folders(tmp_path):
    a, b = two_sources(tmp_path)
    with pytest.raises(DataError, match=r"source folder not found: .*missing"):
        merge.merge_folders(tmp_path / "out", [a, tmp_path / "missing"])
    with pytest.raises(DataError, match="given twice"):
        merge.merge_folders(tmp_path / "out", [a, a])
    with pytest.raises(DataError, match="must not contain each other"):
        merge.merge_folders(tmp_path, [a], out_name="source_a")
    real = tmp_path / "real" / "image_folder" / "Aglais"
    write_png(real / "1.png", noise(9))
    with pytest.raises(DataError, match="holds real files"):
        merge.merge_folders(tmp_path / "real", [a, b])
    assert (real / "1.png").is_file() and not (real / "1.png").is_symlink()


# ------------------------------------------------------------------ the command lines

def run_cli(*args):
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_prep_images_cli(tmp_path):
    src = class_tree(tmp_path / "in", classes=("alpha", "beta"), n=10)
    r = run_cli("src/prep_images.py", src, tmp_path / "out", "--size", "20,10", "--filter", "area",
                "--fractions", "0.6,0.2,0.2", "--seed", "3", "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert "wrote 20 PNG(s) of 2 class(es)" in r.stdout and "training 12, validation 4, test 4" in r.stdout
    meta = json.loads((tmp_path / "out" / "prep.json").read_text())
    assert (meta["size"], meta["filter"], meta["fractions"], meta["seed"]) == ([20, 10], "area", [0.6, 0.2, 0.2], 3)
    assert read_png(next((tmp_path / "out" / "test" / "beta").iterdir())).shape == (10, 20, 3)


def test_merge_folders_cli(tmp_path):
    a, b = two_sources(tmp_path)
    r = run_cli("src/merge_folders.py", tmp_path / "out", a, b, "--min_samples", "2", "--workers", "1")
    assert r.returncode == 0, r.stderr
    assert "linked 6 image(s) of 3 species" in r.stdout and "2 species below min_samples=2" in r.stdout
    assert len(tree(tmp_path / "out" / "image_folder")) == 6


def test_cli_bad_input_is_one_error_line(tmp_path):
    r = run_cli("src/prep_images.py", tmp_path / "nowhere", tmp_path / "out")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"error: input folder not found: {tmp_path / 'nowhere'}"]
