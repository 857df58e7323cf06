"""The bin/ loops themselves (no training: PYTHON=echo prints the commands they would run)."""
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_channel_lists_are_not_globbed(tmp_path):
    """A file named like a glob match ('1') must not replace a channel list in bin/ loops."""
    (tmp_path / "1").write_text("")
    env = {"PYTHON": "echo", "CHANNELS": "[1,2,3,4,5] [1]", "FOLDS": "0", "LOG_DIR": "L", "PRETRAINED_CONTROL": ""}
    proc = subprocess.run(["bash", str(REPO / "bin" / "train.sh")], cwd=tmp_path, env={**os.environ, **env},
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2
    assert "--data_params/channels=[1,2,3,4,5]" in lines[0]
    assert "--data_params/channels=[1]" in lines[1]
    assert "--model_params/weight= " in lines[0] + " "  # empty PRETRAINED_CONTROL -> no weight
