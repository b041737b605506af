"""ASU_KL under DeepSpeed ZeRO-3 through the host's src/train.py: two CPU processes (gloo)."""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM

from asu_plugin.workflows.builders.authors import generate
from asu_plugin.workflows.builders.tiny import build_tiny_llama, qa_texts
from asu_plugin.workflows.builders.tofu_format import read_jsonl
from asu_plugin.workflows.run.host import (
    NO_EVAL,
    TRANSFORMERS_5,
    device_overrides,
    link_tofu,
)

pytestmark = pytest.mark.host

PROBE = Path(__file__).with_name("zero3_probe.py")
LORA = "{peft_type: LORA, r: 4, lora_alpha: 8, target_modules: [q_proj, v_proj]}"
GLOBAL_BATCH, STEPS = 4, 2
TIMEOUT_S = 900  # a run takes about a minute (two, building DeepSpeed's CPU op first)
# transformers 5 sizes DeepSpeed's global batch for one process unless told it runs on CPUs;
# 4.45 with use_cpu leaves DeepSpeed for plain DDP
CPU_ARGS = ["++trainer.args.use_cpu=true"] if TRANSFORMERS_5 else []


@pytest.fixture(scope="module")
def run_dir(host, tmp_path_factory):
    """Generated authors, a tiny Llama, and CPU copies of the host's ZeRO-3 configs."""
    run_dir = tmp_path_factory.mktemp("zero3")
    generate(run_dir / "data")
    link_tofu(run_dir, run_dir / "data")
    texts = qa_texts(read_jsonl(run_dir / "data" / "full.jsonl"))
    build_tiny_llama(run_dir / "tiny", texts, initializer_range=0.2)
    accelerate = host / "configs" / "accelerate"
    zero3 = json.loads((accelerate / "zero_stage3_offload_config.json").read_text())
    zero3["bf16"]["enabled"] = False  # float32 on a CPU
    for part in ("offload_optimizer", "offload_param"):
        zero3["zero_optimization"][part]["pin_memory"] = False  # no CUDA
    (run_dir / "zero3.json").write_text(json.dumps(zero3))
    launcher = yaml.safe_load((accelerate / "default_config.yaml").read_text())
    launcher["deepspeed_config"]["deepspeed_config_file"] = str(run_dir / "zero3.json")
    launcher.update(use_cpu=True, num_processes=2)
    (run_dir / "zero3.yaml").write_text(yaml.safe_dump(launcher))
    return run_dir


def train(host, run_dir, task, processes, extra=()):
    """src/train.py (via the probe) for STEPS steps of GLOBAL_BATCH; its log history."""
    tiny = run_dir / "tiny"
    overrides = [
        "--config-name=unlearn.yaml", "experiment=unlearn/tofu/default",
        "trainer=ASU_KL", f"task_name={task}", "model=phi-1_5",
        f"model.model_args.pretrained_model_name_or_path={tiny}",
        f"model.tokenizer_args.pretrained_model_name_or_path={tiny}",
        "forget_split=forget10", "retain_split=retain90", "holdout_split=holdout10",
        *device_overrides(), *NO_EVAL, f"+trainer.args.max_steps={STEPS}",
        f"trainer.args.per_device_train_batch_size={GLOBAL_BATCH // processes}",
        "trainer.args.gradient_accumulation_steps=1", "trainer.args.logging_steps=1",
        f"paths.root_dir={run_dir}", *CPU_ARGS, *extra,
    ]  # fmt: skip
    probe = [str(PROBE), str(host / "src"), str(run_dir / task)]
    port = free_port()
    if processes == 1:
        command = [sys.executable, *probe, *overrides]
    else:
        command = [
            sys.executable, "-m", "accelerate.commands.launch",
            "--main_process_port", str(port), "--config_file", str(run_dir / "zero3.yaml"),
            *probe, *overrides,
        ]  # fmt: skip
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(run_dir / f".hf_{task}"),
        "CUDA_VISIBLE_DEVICES": "",
        # DeepSpeed's CPU accelerator counts its devices with numactl unless told
        "LOCAL_SIZE": str(processes),
    }
    launcher = subprocess.Popen(
        command, cwd=run_dir, env=env, text=True, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        output, _ = launcher.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:  # a hang: each rank logs its stacks on SIGTERM
        os.killpg(launcher.pid, signal.SIGTERM)
        output = launcher.communicate(timeout=60)[0] + f"\nkilled after {TIMEOUT_S} s"
    finally:
        # DeepSpeed's CPU shared-memory segments, one per rank, named by the port
        for segment in Path("/dev/shm").glob(f"deepspeed_*_{os.getuid()}_*_{port}_*"):
            segment.unlink(missing_ok=True)
    assert launcher.returncode == 0, f"exit {launcher.returncode}\n--- launcher\n" + (
        output[-4000:] + rank_logs(run_dir, task)
    )
    saved = run_dir / "saves" / "unlearn" / task
    state = json.loads((saved / "trainer_state.json").read_text())
    return saved, [log for log in state["log_history"] if "forget_kl" in log]


def rank_logs(run_dir, task):
    """The end of what each rank of a run printed (zero3_probe.py keeps it)."""
    logs = sorted(run_dir.glob(f"{task}.rank*.log"))
    return "".join(f"\n--- {log}\n{log.read_text()[-6000:]}" for log in logs)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def references(run_dir, task):
    return [
        json.loads(p.read_text()) for p in sorted(run_dir.glob(f"{task}.ref*.json"))
    ]


def test_full_model_asu_kl_under_zero3_matches_one_process(host, run_dir):
    saved, sharded = train(host, run_dir, "zero3_full", 2)
    _, single = train(host, run_dir, "single_full", 1)

    # the frozen teacher went through the host's _prepare_deepspeed, sharded over both
    refs = references(run_dir, "zero3_full")
    assert len(refs) == 2, rank_logs(run_dir, "zero3_full")
    assert {r["stage"] for r in refs} == {3}
    full = refs[0]["full"]
    assert all(r["local"] == 0 and r["partition"] < full for r in refs)
    assert sum(r["partition"] for r in refs) >= full
    assert references(run_dir, "single_full") == []  # no DeepSpeed there

    # step 1: student = teacher's weights, so the forget KL is the smoothing's alone
    # (it is 0 if the hooks missed the gathered weights); the retain KL is 0 and so
    # is its gradient, so step 2's forget KL depends on the forget batch only
    assert len(sharded) == len(single) == STEPS, rank_logs(run_dir, "zero3_full")
    assert sharded[0]["forget_kl"] > 1e-3 and sharded[0]["retain_loss"] == 0
    for zero3, one in zip(sharded, single, strict=True):  # logs: means over processes
        for key in ("loss", "forget_kl"):
            assert zero3[key] == pytest.approx(one[key], rel=1e-3), key

    # ZeRO-3 gathers the 16-bit weights on save: a plain checkpoint
    model = AutoModelForCausalLM.from_pretrained(saved)
    start = AutoModelForCausalLM.from_pretrained(run_dir / "tiny").state_dict()
    weights = model.state_dict()
    assert weights.keys() == start.keys()
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert any(not torch.equal(w, start[k]) for k, w in weights.items())


def test_lora_asu_kl_under_zero3_matches_one_process(host, run_dir):
    from peft import PeftModel

    lora = [f"trainer.method_args.peft={LORA}"]
    saved, sharded = train(host, run_dir, "zero3_lora", 2, lora)
    _, single = train(host, run_dir, "single_lora", 1, lora)

    assert references(run_dir, "zero3_lora") == []  # the teacher is the student's base
    assert sharded[0]["forget_kl"] > 1e-3
    for zero3, one in zip(sharded, single, strict=True):
        for key in ("loss", "forget_kl"):
            assert zero3[key] == pytest.approx(one[key], rel=1e-3), key
    base = AutoModelForCausalLM.from_pretrained(run_dir / "tiny").eval()
    adapted = PeftModel.from_pretrained(base, saved).eval()
    assert sum(p.numel() for n, p in adapted.named_parameters() if "lora_" in n) > 0
