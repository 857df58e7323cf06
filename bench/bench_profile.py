"""Peak memory of a profile export against the size of the screen (the export streams plates).

    make bench-profile     # python bench/bench_profile.py [--image_size 128] [--n_sirnas 64] [--experiments 3,12]

Generates demo screens that differ only in their number of experiments (4 plates each, plus one
test experiment), makes one untrained run of them (the model's weights do not change what is
held in memory), and runs src/profile.py (export only: no corrections, no evaluation) on each in
a fresh process. Prints per screen the plates, sites, the largest plate's table and the process's
peak resident memory; the target is a peak that does not grow with the number of plates
(largest screen / smallest <= 1.1).
"""
import json
import subprocess
import sys
from pathlib import Path

import fire

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))


def screen(out: Path, experiments: int, image_size: int, n_sirnas: int) -> Path:
    import make_demo_data
    import make_folds

    data = out / f"screen_{experiments}"
    if not (data / "train.csv").is_file():
        make_demo_data.main(out_dir=str(data), image_size=image_size, n_sirnas=n_sirnas, cell_types=1,
                            train_experiments_per_type=experiments, test_experiments_per_type=1, pixel_stats=False)
        make_folds.main(str(data), out_dir=str(data / "csv"), n_folds=3, seed=0)
    return data


def main(out_dir: str = "bench_out/profile", image_size: int = 128, n_sirnas: int = 64, experiments="3,12",
         model_name: str = "resnet18", batch_size: int = 32, target: float = 1.1):
    from conftest import untrained_run

    out = Path(out_dir)
    counts = [int(e) for e in (experiments.split(",") if isinstance(experiments, str) else experiments)]
    screens = {e: screen(out, e, image_size, n_sirnas) for e in counts}
    first = screens[counts[0]]
    run = out / "logs" / "[1,2,3,4,5,6]" / "fold_0" / model_name
    if not (run / "DONE.json").is_file():
        untrained_run(["--config", str(REPO / "configs/config.yml"), "--overlay", str(REPO / "configs/demo.yml"),
                       "--logdir", str(run), f"--model_params/model_name={model_name}",
                       f"--model_params/num_classes={n_sirnas}", f"--data_params/source_params/control_offset={n_sirnas}",
                       f"--data_params/image_size={image_size}", "--data_params/channels=[1,2,3,4,5,6]",
                       f"--data_params/root={first}", f"--data_params/train_csv={first}/csv/train_0.csv",
                       f"--data_params/valid_csv={first}/csv/valid_0.csv"])
    rows = []
    for e, data in screens.items():
        dest = out / f"profiles_{e}"
        subprocess.run([sys.executable, str(REPO / "src/profile.py"), "--model", str(run), "--data_root", str(data),
                        "--out_dir", str(dest), "--corrections", "none", "--evaluate", "false",
                        "--batch_size", str(batch_size), "--overwrite"], cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        meta = json.loads((dest / "profile.json").read_text())
        rows.append((e, meta))
        print(f"{meta['plates']:4d} plates, {meta['sites']:6d} sites ({image_size} px, {meta['features']} features): "
              f"largest plate's table {meta['largest_plate_bytes'] / 2 ** 20:6.2f} MiB, all plates' "
              f"{meta['all_plates_bytes'] / 2 ** 20:7.2f} MiB, peak RSS {meta['peak_rss_mb']:7.1f} MiB")
    ratio = rows[-1][1]["peak_rss_mb"] / rows[0][1]["peak_rss_mb"]
    grow = rows[-1][1]["plates"] / rows[0][1]["plates"]
    print(f"peak RSS, {rows[-1][1]['plates']} plates / {rows[0][1]['plates']} plates ({grow:.1f}x the data): "
          f"{ratio:.3f}  target <= {target}  {'met' if ratio <= target else 'NOT met'}")
    return ratio


if __name__ == "__main__":
    fire.Fire(main)
