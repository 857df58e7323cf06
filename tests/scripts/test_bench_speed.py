"""The speed benches run end to end at tiny sizes (their figures are printed, not asserted: speed
targets are checked by reading `make bench`, not by timed tests)."""
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import bench_gpu  # noqa: E402
import bench_speed  # noqa: E402


def test_bench_gpu_on_cpu_with_synthetic_and_cached_batches(demo_root, tmp_path):
    rate = bench_gpu.main(model="timm", model_name="test_resnet", image_size=32, batch_size=4, steps=2, warmup=1,
                          device="cpu", channels_last=True)
    assert rate > 0
    rate = bench_gpu.main(model="timm", model_name="test_resnet", image_size=32, batch_size=4, steps=2, warmup=1,
                          device="cpu", loader="cache", root=str(demo_root), cache_dir=str(tmp_path), workers=0)
    assert rate > 0 and list(tmp_path.glob("rxrx1-32px-*/images.npy"))


@pytest.mark.slow
def test_bench_speed_prints_every_figure(tmp_path, capsys):
    bench_speed.main(out_dir=str(tmp_path), image_size=32, repeats=1, epochs=1, model_name="test_resnet",
                     train_image_size=32, ensemble_classes=100, serve_clients=0, sweep_trials=1, sweep_epochs=1)
    # (the service rows' machinery, answers checked against classify and bursts shed, is
    # tests/serve/test_serve.py's; bench/bench_serve.py only times it)
    table = pd.read_csv(tmp_path / "bench_speed.csv")
    targets = table.dropna(subset=["target"])
    assert len(targets) == 7 and (targets["value"] > 0).all()
    sweep = table[table["figure"].str.startswith("sweep:")]
    assert len(sweep) == 4 and (sweep["value"] > 0).all()  # the study ran a real trial and was timed
    assert set(table["met"].dropna()) <= {"yes", "NO"}
    assert "Catalyst epoch vs plain PyTorch loop" in capsys.readouterr().out
