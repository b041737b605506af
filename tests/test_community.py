"""community/methods/ASU: run.sh's commands compose against the real host."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

RUN_SH = (
    Path(__file__).resolve().parents[1] / "community" / "methods" / "ASU" / "run.sh"
)


def test_run_script_is_valid_bash():
    assert os.access(RUN_SH, os.X_OK)
    subprocess.run(["bash", "-n", str(RUN_SH)], check=True)


@pytest.mark.host
def test_every_run_script_command_composes_in_the_host(host, tmp_path):
    env = {
        **os.environ,
        "DRY_RUN": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HF_HUB_OFFLINE": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }
    result = subprocess.run(
        ["bash", str(RUN_SH)], cwd=host, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    commands = [line for line in result.stdout.splitlines() if line.startswith("+ ")]
    train = [c for c in commands if "src/train.py" in c]
    assert (
        len(train) == 10 and len(commands) == 19
    )  # 6 TOFU + 2 MUSE + 2 WMDP; evals; continual
    handlers = re.findall(r"^  handler: (\S+)$", result.stdout, re.MULTILINE)
    assert handlers == ["ASU_GD"] * 3 + ["ASU_KL"] * 6 + ["ASU_RMU"]
    temperatures = re.findall(r"^    temperature: (\S+)$", result.stdout, re.MULTILINE)
    assert temperatures == ["2.3"] * 6 + ["2.0", "2.35", "2.0", "100.0"]
    continual = result.stdout[
        result.stdout.index("+ python -m asu_plugin.workflows.continual") :
    ]
    assert "method: ASU_KL" in continual and "forget_split: forget10" in continual
