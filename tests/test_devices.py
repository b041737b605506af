"""Every workflow runs where the user's GPU is: ``device=auto`` takes it when torch sees one
(faked here), the first line says so, and no host run is hidden from it unless asked."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from asu_plugin.workflows import attribution, calibrate, continual, demo, host, relearn
from asu_plugin.workflows.demo_data import generate
from asu_plugin.workflows.host import resolve_device
from asu_plugin.workflows.tiny import build_tiny_llama, qa_texts
from asu_plugin.workflows.tofu_format import read_jsonl

from conftest import fake_host

GPU = "Fake GPU 80GB"
RUN = subprocess.run


@pytest.fixture
def gpu(monkeypatch):
    """The workflows' device lookup sees one GPU (torch itself is left as it is)."""
    cuda = SimpleNamespace(is_available=lambda: True, get_device_name=lambda *_: GPU)
    monkeypatch.setattr(host, "torch", SimpleNamespace(cuda=cuda))


class HostRuns:
    """``subprocess.run`` of the host scripts faked: records command and environment and
    fails, so the workflow stops after its first host run."""

    def __init__(self):
        self.calls = []

    def __call__(self, command, env=None, **kwargs):
        if not any(str(part).endswith(("train.py", "eval.py")) for part in command):
            return RUN(command, env=env, **kwargs)  # e.g. git, for the host's commit
        self.calls.append((command, env))
        return subprocess.CompletedProcess(command, 1)


@pytest.fixture
def host_runs(monkeypatch, tmp_path):
    runs = HostRuns()
    monkeypatch.setattr("asu_plugin.workflows.host.subprocess.run", runs)
    monkeypatch.setenv("OPEN_UNLEARNING_DIR", str(fake_host(tmp_path / "host")))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return runs


def hydra_main(monkeypatch, workflow, settings):
    monkeypatch.setattr(sys, "argv", [workflow.__name__, *settings])
    workflow.main()


def start_continual(monkeypatch, tmp_path, device):
    settings = ["task_name=t", "model_path=start", "model_config=phi-1_5"]
    out = [f"out_dir={tmp_path / 'out'}", f"device={device}"]
    hydra_main(monkeypatch, continual, [*settings, *out])


def start_relearn(monkeypatch, tmp_path, device):
    generate(tmp_path / "data")
    model = tmp_path / "target"
    model.mkdir()
    settings = ["task_name=t", f"data_dir={tmp_path / 'data'}", "model_config=phi-1_5"]
    out = [f"models={{target: {model}}}", "steps=[5]", f"out_dir={tmp_path / 'out'}"]
    hydra_main(monkeypatch, relearn, [*settings, *out, f"device={device}"])


def start_demo(monkeypatch, tmp_path, device):
    demo.main(["--model", "tiny", "--out", str(tmp_path / "demo"), "--device", device])


STARTS = {"continual": start_continual, "relearn": start_relearn, "demo": start_demo}


@pytest.mark.parametrize("workflow", STARTS)
def test_host_runs_see_the_gpu_unless_asked_for_the_cpu(
    gpu, host_runs, monkeypatch, tmp_path, capsys, workflow
):
    with pytest.raises(SystemExit, match="failed"):
        STARTS[workflow](monkeypatch, tmp_path / "auto", "auto")
    assert GPU in capsys.readouterr().out.splitlines()[0]
    ((command, env),) = host_runs.calls
    assert "CUDA_VISIBLE_DEVICES" not in env  # the user's own setting, if any, is kept
    assert "trainer.args.bf16=false" not in command  # the host's GPU precision stays

    with pytest.raises(SystemExit, match="failed"):
        STARTS[workflow](monkeypatch, tmp_path / "cpu", "cpu")
    assert "CPU (1 threads)" in capsys.readouterr().out.splitlines()[0]
    command, env = host_runs.calls[-1]
    assert env["CUDA_VISIBLE_DEVICES"] == "" and "trainer.args.bf16=false" in command


def test_a_bad_device_is_named_before_anything_runs(host_runs, monkeypatch, tmp_path):
    with pytest.raises(SystemExit) as stop:
        start_continual(monkeypatch, tmp_path, "tpu")
    assert stop.value.code == 2 and host_runs.calls == []
    assert resolve_device("auto") == "cpu"  # torch sees no GPU here
    with pytest.raises(ValueError, match="device 'cuda': torch sees no GPU here"):
        resolve_device("cuda")


class OnTheGPU(Exception):
    """Raised by a model moved to ``cuda``: the workflow asked for the GPU."""


@pytest.fixture
def stop_on_cuda(monkeypatch):
    move = torch.nn.Module.to

    def to(module, *args, **kwargs):
        if "cuda" in map(str, (*args, *kwargs.values())):
            raise OnTheGPU
        return move(module, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", to)


@pytest.fixture
def tiny_data(tmp_path):
    generate(tmp_path / "data")
    rows = read_jsonl(tmp_path / "data" / "finetune.jsonl")
    return tmp_path / "data", build_tiny_llama(tmp_path / "model", qa_texts(rows))


def model_settings(model):
    return [
        "model=SmolLM2-135M-Instruct",
        f"model.model_args.pretrained_model_name_or_path={model}",
        f"model.tokenizer_args.pretrained_model_name_or_path={model}",
    ]


@pytest.mark.host
def test_in_process_workflows_put_their_models_on_the_gpu(
    host, gpu, stop_on_cuda, monkeypatch, tiny_data, tmp_path, capsys
):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # Hydra raises what the run raised
    data, model = tiny_data
    settings = [*model_settings(model), f"data_dir={data}", "rows=4"]
    with pytest.raises(OnTheGPU):
        hydra_main(monkeypatch, calibrate, [*settings, f"out_dir={tmp_path / 'c'}"])
    assert capsys.readouterr().out.splitlines()[0] == f"calibrate: GPU ({GPU})"

    owners = [*model_settings(model), f"data_dir={data}", "rows_per_owner=7"]
    with pytest.raises(OnTheGPU):
        hydra_main(monkeypatch, attribution, [*owners, f"out_dir={tmp_path / 'a'}"])
    assert capsys.readouterr().out.splitlines()[0] == f"attribution: GPU ({GPU})"


def test_every_workflow_config_defaults_to_auto():
    configs = Path(calibrate.__file__).parent.parent / "configs"
    for name in ("attribution", "calibrate", "continual", "relearn"):
        assert "\ndevice: auto " in (configs / name / "default.yaml").read_text()
