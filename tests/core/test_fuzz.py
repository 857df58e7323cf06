"""Property-based fuzzing (hypothesis): the override parser, the config loader and the table readers
either return a result or raise the project's one-line user error, never anything else."""
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cellpipe.core import config as cfglib
from cellpipe.core.errors import ConfigError, DataError, UserError
from cellpipe.core.tables import read_table

REPO = Path(__file__).resolve().parents[2]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

keys = st.lists(st.sampled_from(["data_params", "batch_size", "stages", "finetune", "num_epochs", "lr", "",
                                 "seed", "optimizer_params", "channels", "x"]), min_size=0, max_size=4)
values = st.one_of(st.sampled_from(["1", "-3", "nan", ".inf", "[1,2", "[1,2,3]", "{a: 1}", "null", "true", "abc",
                                    "", ":", "- a", "'", "0x10", "1e400"]), st.text(max_size=12))
override = st.builds(lambda k, v, eq: [f"--{'/'.join(k)}={v}"] if eq else [f"--{'/'.join(k)}", v], keys, values,
                     st.booleans())
argv = st.lists(st.one_of(override, st.lists(st.text(max_size=10), max_size=2)), max_size=4).map(
    lambda parts: [a for part in parts for a in part])


@FUZZ
@given(argv)
def test_override_parser_never_crashes(args):
    try:
        out = cfglib.parse_overrides(args)
    except ConfigError as e:
        assert "\n" not in str(e).strip()
    else:
        assert isinstance(out, dict)


@FUZZ
@given(argv)
def test_config_loader_never_crashes(args):
    try:
        cfg = cfglib.load_config(REPO / "configs" / "config.yml", [], args)
    except UserError:
        pass
    else:
        assert cfg["data_params"]["batch_size"] >= 1 and cfg["stages"]


cells = st.one_of(st.sampled_from(["1", "2.5", "nan", "inf", "-inf", "", "abc", "1e400", '"', "a,b", "HEPG2-01"]),
                  st.text(max_size=6))
rows = st.lists(st.lists(cells, min_size=1, max_size=5), max_size=6)


@FUZZ
@given(header=st.lists(st.sampled_from(["experiment", "plate", "well", "sirna", "mean", "x", ""]), max_size=5),
       body=rows, raw=st.binary(max_size=40), use_raw=st.booleans())
def test_table_reader_never_crashes(tmp_path, header, body, raw, use_raw):
    path = tmp_path / "t.csv"
    if use_raw:
        path.write_bytes(raw)
    else:
        path.write_text("\n".join([",".join(header)] + [",".join(r) for r in body]) + "\n")
    try:
        df = read_table(path, required=["plate", "sirna"], integers=["plate", "sirna"], numbers=[],
                        unique=["plate", "well"] if "well" in header else [])
    except DataError as e:
        assert "\n" not in str(e).strip() and str(path) in str(e)
    else:
        assert isinstance(df, pd.DataFrame) and df["plate"].dtype.kind == "i" and df["sirna"].dtype.kind == "i"
