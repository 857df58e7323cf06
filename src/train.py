"""Train one run of a pipeline part with Catalyst.

    python src/train.py --config configs/config.yml --logdir LOGDIR \
        [--overlay configs/demo.yml] [--data_params/channels=[1,2,3,4,5] ...]

A run is the config's stages in order (a frozen-backbone warm-up, then the
whole model with OneCycle). Each stage writes its Catalyst logs (CSV,
TensorBoard) and checkpoints under LOGDIR/<stage>/ and marks itself done, so a
restarted run skips finished stages; the whole run ends with
LOGDIR/checkpoints/best.pth (+ labels.json), valid_predictions.csv,
per_class.csv, history.csv, training_logs/, the figures of its target kind
(confusion_matrix*.png or per_class_f1.png) and LOGDIR/DONE.json; a finished run is skipped.
With --engine_params/processes=N the run goes distributed (N processes under torchrun, see
cellpipe.training.distributed).
"""
import argparse
import json
import logging
import sys
from pathlib import Path

from cellpipe.core import cli, layout
from cellpipe.core import config as cfglib
from cellpipe.core.runlock import check_writable

log = logging.getLogger("train")


def setup_logging(logdir) -> None:
    """Log to stderr and to train.log next to the checkpoints (a folder that cannot be written is
    one error line, before anything else); in a distributed run only rank 0 logs below warnings."""
    from cellpipe.training import distributed

    try:
        check_writable(logdir)
    except cli.USER_ERRORS as e:
        cli.fail(e)
    if not distributed.is_main():
        logging.basicConfig(level=logging.WARNING, format=f"rank {distributed.rank()}: %(levelname)s %(message)s")
        return
    cli.setup_logging(logging.FileHandler(Path(logdir) / layout.TRAIN_LOG))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="stage YAML, e.g. configs/config.yml")
    p.add_argument("--logdir", required=True, help="run folder (checkpoints, logs, resolved config); "
                   "{model_name} in it is replaced by the config's model_params/model_name")
    p.add_argument("--overlay", action="append", default=[], help="extra YAML merged on top (repeatable)")
    p.add_argument("--force", action="store_true", help="retrain even if the run or a stage finished")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return p.parse_known_args(argv)


def main(argv=None) -> int:
    args, overrides = parse_args(argv)
    try:
        cfg = cfglib.load_config(args.config, [o for o in args.overlay if o], overrides)
        # the training stack (torch, timm, catalyst) loads only for a config that parsed: a typo fails at once
        from cellpipe.training import distributed, tracking
        from cellpipe.training.checks import check_names
        from cellpipe.training.runner import train
        from cellpipe.training.trial import PRUNED_EXIT, Pruned

        check_names(cfg)
    except cli.USER_ERRORS as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        print(cfglib.dump(cfg))
        return 0
    # the run tree's model folder, named by the resolved config (bin/train_classify.sh without MODEL_NAME)
    # ("/" of names such as hf-hub:org/model would nest a folder)
    args.logdir = args.logdir.replace("{model_name}", str(cfg["model_params"]["model_name"]).replace("/", "_"))
    processes = cfg["engine_params"].get("processes", 1)
    if processes > 1 and distributed.world_size() == 1:  # start the processes, each runs this script
        return distributed.relaunch(processes, [__file__, *(argv if argv is not None else sys.argv[1:])])
    setup_logging(args.logdir)
    try:
        summary = train(cfg, args.logdir, force=args.force)
        from cellpipe.reports.plots import run_figures  # matplotlib only after training

        if distributed.is_main():
            run_figures(args.logdir)
            if tracking.enabled(cfg):  # after the figures: they are artefacts of the MLflow run
                tracking.finish(cfg, Path(args.logdir), summary, Path(args.logdir) / layout.FINAL_CHECKPOINT)
    except cli.USER_ERRORS as e:
        log.debug("failed", exc_info=True)
        cli.fail(e)
    except Pruned as e:  # a sweep's trial stopped by its study's pruner: not a failure
        log.info("%s", e)
        if tracking.enabled(cfg):
            tracking.stop(cfg, Path(args.logdir), "KILLED", pruned=str(e))
        return PRUNED_EXIT
    log.info("done: %s", json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
