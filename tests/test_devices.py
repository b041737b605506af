"""Every workflow runs where the user's GPU is: ``device=auto`` takes it when torch sees one
(faked by ``fake_gpu.py``, each workflow in its own process), the first line says so, and no
host run is hidden from it unless asked."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from asu_plugin.workflows.builders.authors import generate
from asu_plugin.workflows.builders.tiny import build_tiny_llama, qa_texts
from asu_plugin.workflows.builders.tofu_format import read_jsonl
from asu_plugin.workflows.run.host import resolve_device

from conftest import fake_host

FAKE_GPU = str(Path(__file__).with_name("fake_gpu.py"))
# deepspeed, imported on the way on newer stacks, logs its accelerator to stdout first
LIBRARY_LOG = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+\] \[[A-Z]+\] ")
GPU = "GPU (Fake GPU 80GB)"


def start(tmp_path, workflow, *args, host=None):
    """``python -m asu_plugin.workflows.<workflow> args`` on the faked GPU, with ``host``
    (default: a fake one); its output and the host runs it asked for (each failed)."""
    record = tmp_path / "host_runs.jsonl"
    env = {
        **os.environ,
        "OPEN_UNLEARNING_DIR": str(host or fake_host(tmp_path / "host")),
        "OMP_NUM_THREADS": "1",
    }
    command = [
        sys.executable,
        FAKE_GPU,
        str(record),
        f"asu_plugin.workflows.{workflow}",
    ]
    result = subprocess.run(
        [*command, *args], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    runs = (
        [json.loads(line) for line in record.read_text().splitlines()]
        if record.exists()
        else []
    )
    result.stdout = "\n".join(
        line for line in result.stdout.splitlines() if not LIBRARY_LOG.match(line)
    )
    return result, runs


def continual(tmp_path, device):
    settings = ["task_name=t", "model_path=start", "model_config=phi-1_5"]
    return start(tmp_path, "continual", *settings, f"device={device}")


def relearn(tmp_path, device):
    generate(tmp_path / "data")
    (tmp_path / "target").mkdir()
    settings = ["task_name=t", f"data_dir={tmp_path / 'data'}", "model_config=phi-1_5"]
    models = [f"models={{target: {tmp_path / 'target'}}}", "steps=[5]"]
    return start(tmp_path, "relearn", *settings, *models, f"device={device}")


def demo(tmp_path, device):
    return start(tmp_path, "demo", "preset=tiny", "out_dir=demo", f"device={device}")


STARTS = {"continual": continual, "relearn": relearn, "demo": demo}


@pytest.mark.parametrize("workflow", STARTS)
def test_host_runs_see_the_gpu_unless_asked_for_the_cpu(tmp_path, workflow):
    result, runs = STARTS[workflow](tmp_path / "auto", "auto")
    assert result.returncode == 1 and "failed" in result.stderr, result.stderr[-2000:]
    assert GPU in result.stdout.splitlines()[0]
    (run,) = runs
    assert "CUDA_VISIBLE_DEVICES" not in run["env"]  # the user's own setting is kept
    assert (
        "trainer.args.bf16=false" not in run["command"]
    )  # the host's GPU precision stays

    result, runs = STARTS[workflow](tmp_path / "cpu", "cpu")
    assert "CPU (1 thread)" in result.stdout.splitlines()[0]
    (run,) = runs
    assert run["env"]["CUDA_VISIBLE_DEVICES"] == ""
    assert "trainer.args.bf16=false" in run["command"]


def test_a_bad_device_is_named_before_anything_runs(tmp_path):
    result, runs = continual(tmp_path, "tpu")
    assert result.returncode == 2 and runs == []
    assert "device 'tpu': one of auto, cpu, cuda" in result.stderr
    assert resolve_device("auto") == "cpu"  # torch sees no GPU here
    with pytest.raises(ValueError, match="device 'cuda': torch sees no GPU here"):
        resolve_device("cuda")


@pytest.mark.host
def test_in_process_workflows_put_their_models_on_the_gpu(host, tmp_path):
    generate(tmp_path / "data")
    rows = read_jsonl(tmp_path / "data" / "finetune.jsonl")
    model = build_tiny_llama(tmp_path / "model", qa_texts(rows))
    settings = [
        "model=SmolLM2-135M-Instruct",
        f"model.model_args.pretrained_model_name_or_path={model}",
        f"model.tokenizer_args.pretrained_model_name_or_path={model}",
        f"data_dir={tmp_path / 'data'}",
    ]
    for workflow, more in (
        ("calibrate", "rows=4"),
        ("owner_classifier", "rows_per_owner=7"),
    ):
        out = f"out_dir={workflow}"
        result, _ = start(tmp_path, workflow, *settings, more, out, host=host)
        assert result.returncode == 3, result.stderr[-2000:]
        lines = result.stdout.splitlines()
        assert lines[0] == f"{workflow}: {GPU}" and lines[-1] == "moved to cuda"


def test_every_workflow_config_defaults_to_auto():
    configs = Path(__file__).resolve().parents[1] / "asu_plugin" / "configs"
    for name in ("owner_classifier", "calibrate", "continual", "relearn"):
        assert "\ndevice: auto " in (configs / name / "default.yaml").read_text()
