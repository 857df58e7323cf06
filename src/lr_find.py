"""The learning-rate range test of a config (seed 004's LR finder): loss against a growing learning rate.

    python src/lr_find.py --config configs/classify.yml --overlay configs/data/hpa.yml --out_dir /logs/lr \
        [--stage finetune] [--min_lr 1e-6] [--max_lr 1] [--steps 100] [--section/key=value ...]

Writes OUT_DIR/lr_find.png (loss and smoothed loss against the learning rate, log scale, the
suggestion marked), lr_find.csv and lr_find.json (the suggestion: the steepest descent of the
smoothed loss, and a tenth of the rate at its minimum; the smaller of the two). Set the stage's
optimizer_params/lr or its OneCycle peak from it.
"""
import argparse
import json
import sys

from cellpipe.core import cli
from cellpipe.core import config as cfglib
from cellpipe.core.errors import ConfigError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--overlay", action="append", default=[])
    p.add_argument("--out_dir", required=True)
    p.add_argument("--stage", default="finetune", help="whose optimizer settings and frozen layers the test uses")
    p.add_argument("--min_lr", type=float, default=1e-6)
    p.add_argument("--max_lr", type=float, default=1.0)
    p.add_argument("--steps", type=int, default=100, help="batches (the loader repeats as needed)")
    p.add_argument("--smooth", type=float, default=0.9, help="exponential smoothing of the loss")
    p.add_argument("--diverge", type=float, default=4.0, help="stop once the smoothed loss passes this x its minimum")
    args, overrides = p.parse_known_args(argv)
    cli.setup_logging()
    try:
        cfg = cfglib.load_config(args.config, args.overlay, overrides)
        from cellpipe.tasks import resolve_defaults
        from cellpipe.training.checks import check_names
        from cellpipe.training.lr_find import lr_find

        check_names(cfg)
        resolve_defaults(cfg)
        if args.stage not in cfg["stages"]:
            raise ConfigError(f"--stage {args.stage}: the config's stages are {list(cfg['stages'])}")
        result = lr_find(cfg, args.out_dir, args.stage, args.min_lr, args.max_lr, args.steps, args.smooth,
                         args.diverge)
    except cli.USER_ERRORS as e:
        cli.fail(e)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
