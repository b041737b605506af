"""DareU end to end: the owner-classifier workflow's classifier, then open-unlearning's own
src/train.py with trainer=DareU, on tiny Llamas finetuned on the demo's generated authors."""

import ast
import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from asu_plugin.dareu.classifier import OTHER, OwnerClassifier
from asu_plugin.workflows.builders.authors import generate
from asu_plugin.workflows.builders.tiny import build_tiny_llama, encode_qa, qa_texts
from asu_plugin.workflows.builders.tofu_format import read_jsonl
from asu_plugin.workflows.run.host import (
    NO_EVAL,
    device_overrides,
    link_tofu,
    model_overrides,
    run_host,
)

pytestmark = pytest.mark.host
ROWS_PER_AUTHOR = 7  # the demo's authors have 7 QA rows


def finetune(start, out, rows, steps=150, lr=3e-3):
    """Memorise ``rows`` (plain AdamW on answer tokens): a tiny target / retain model."""
    tokenizer = AutoTokenizer.from_pretrained(start)
    model = AutoModelForCausalLM.from_pretrained(start)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(0)
    pad = torch.nn.utils.rnn.pad_sequence
    for _ in range(steps):
        batch = torch.randint(len(rows), (16,), generator=generator).tolist()
        ids, labels = [], []
        for i in batch:
            row_ids, start_at = encode_qa(tokenizer, rows[i])
            ids.append(torch.tensor(row_ids))
            labels.append(torch.tensor([-100] * start_at + row_ids[start_at:]))
        input_ids = pad(ids, batch_first=True, padding_value=tokenizer.pad_token_id)
        model(
            input_ids=input_ids,
            attention_mask=input_ids.ne(tokenizer.pad_token_id),
            labels=pad(labels, batch_first=True, padding_value=-100),
        ).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, host):
    """Demo data as locuslab/TOFU, a target (all authors) and a retain model (forget
    authors held out), and a classifier made by the owner-classifier workflow's command."""
    run_dir = tmp_path_factory.mktemp("dareu_run")
    generate(run_dir / "data")
    link_tofu(run_dir, run_dir / "data")
    rows = {
        s: read_jsonl(run_dir / "data" / f"{s}.jsonl")
        for s in ("finetune", "retain_finetune")
    }
    tiny = build_tiny_llama(run_dir / "tiny", qa_texts(rows["finetune"]), num_layers=2)
    finetune(tiny, run_dir / "target", rows["finetune"])
    finetune(tiny, run_dir / "retain", rows["retain_finetune"])
    command = [
        sys.executable,
        "-m",
        "asu_plugin.workflows.owner_classifier",
        *model_overrides(run_dir / "target"),
        f"data_dir={run_dir / 'data'}",
        f"rows_per_owner={ROWS_PER_AUTHOR}",
        "learning_rate=3e-3",
        "epochs=10",
        f"target={run_dir / 'target'}",
        f"retain={run_dir / 'retain'}",
        "max_new_tokens=16",
        f"out_dir={run_dir / 'attribution'}",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OPEN_UNLEARNING_DIR": str(host)}
    result = subprocess.run(
        command, cwd=run_dir, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return run_dir


def test_tool_saves_a_classifier_of_the_owners_and_reports_both_ends(run_dir):
    folder = run_dir / "attribution" / "classifier"
    classifier = OwnerClassifier(folder)
    assert classifier.labels == [f"author_{k}" for k in range(20)] + [OTHER]
    assert classifier.owners == ["author_18", "author_19"]  # forget10: the last two
    record = json.loads((run_dir / "attribution" / "attribution.json").read_text())
    held_out = record["held_out"]
    # the forget rows' paraphrases and wrong-facts answers, other
    assert held_out["all"]["rows"] == 14 + 14 + 4
    # paraphrases it never saw go to their owner; whether the wrong-facts answers go to
    # "other" is measured, not asserted (a tiny classifier leans on the name there)
    assert held_out["forget_owners"]["accuracy"] > 0.8
    assert held_out["other"]["accuracy"] == 1.0
    assert held_out["wrong_facts"]["rows"] == 14
    models = record["models"]
    # the target still says what the forget authors wrote; the retain model cannot
    assert models["target"]["forget_owner_probability"] > 0.8
    assert models["retain"]["forget_owner_probability"] < 0.5
    # the sampled answers DareU scores: 4 per forget question, target above retain
    separation = record["separation"]
    assert separation["samples_per_model"] == 14 * 4
    assert separation["auc"] > 0.5
    assert separation["target_mean"] > separation["retain_mean"]
    assert (run_dir / "attribution" / "attribution.md").is_file()


def test_host_train_with_dareu_raises_the_mean_reward(host, run_dir):
    overrides = [
        "--config-name=unlearn.yaml",
        "experiment=unlearn/tofu/dareu",
        "task_name=tiny_dareu",
        *model_overrides(run_dir / "target"),
        "forget_split=forget10",
        "holdout_split=holdout10",
        "retain_split=retain90",
        *device_overrides(),
        *NO_EVAL,
        "trainer.args.per_device_train_batch_size=4",
        "trainer.args.gradient_accumulation_steps=1",
        "+trainer.args.max_steps=12",
        "trainer.args.logging_steps=1",
        "trainer.args.learning_rate=1e-3",
        f"trainer.method_args.classifier={run_dir / 'attribution' / 'classifier'}",
        "trainer.method_args.max_new_tokens=12",
        f"paths.root_dir={run_dir}",
    ]
    result = run_host(host, "train.py", overrides, run_dir, capture_output=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    output = (result.stdout + result.stderr).splitlines()
    logs = [  # transformers 5 prints the logged numbers as strings
        {k: float(v) for k, v in ast.literal_eval(line[line.index("{") :]).items()}
        for line in output
        if "'reward'" in line
    ]
    assert len(logs) == 12
    assert logs[0]["kl"] == 0 and logs[0]["retain_loss"] == 0
    rewards = [log["reward"] for log in logs]
    assert rewards[0] < -0.5  # the target's samples name the forget authors
    assert sum(rewards[-4:]) / 4 > rewards[0] + 0.3, rewards
    assert (run_dir / "saves" / "unlearn" / "tiny_dareu" / "config.json").is_file()


def test_host_train_with_dareu_under_ddp_on_two_processes(host, run_dir):
    """torchrun, two CPU processes (gloo): each samples for its own forget batch; the logs
    are means over both; the saved model moved."""
    task = "tiny_dareu_ddp"
    overrides = [
        "--config-name=unlearn.yaml",
        "experiment=unlearn/tofu/dareu",
        f"task_name={task}",
        *model_overrides(run_dir / "target"),
        "forget_split=forget10",
        "holdout_split=holdout10",
        "retain_split=retain90",
        *device_overrides(),
        *NO_EVAL,
        "++trainer.args.use_cpu=true",
        "++trainer.args.ddp_backend=gloo",
        # the host's finetune config says `None`, which YAML reads as the string "None"
        "trainer.args.ddp_find_unused_parameters=false",
        "trainer.args.per_device_train_batch_size=2",
        "trainer.args.gradient_accumulation_steps=1",
        "+trainer.args.max_steps=2",
        "trainer.args.logging_steps=1",
        "trainer.args.learning_rate=1e-3",
        f"trainer.method_args.classifier={run_dir / 'attribution' / 'classifier'}",
        "trainer.method_args.max_new_tokens=8",
        f"paths.root_dir={run_dir}",
    ]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=29517",
        str(host / "src" / "train.py"),
        *overrides,
    ]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(run_dir / f".hf_{task}"),
        "CUDA_VISIBLE_DEVICES": "",
    }
    result = subprocess.run(
        command, cwd=run_dir, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    saved = run_dir / "saves" / "unlearn" / task
    state = json.loads((saved / "trainer_state.json").read_text())
    logs = [log for log in state["log_history"] if "reward" in log]
    assert len(logs) == 2 and logs[0]["kl"] == 0 and logs[1]["kl"] > 0
    moved = AutoModelForCausalLM.from_pretrained(saved).state_dict()
    start = AutoModelForCausalLM.from_pretrained(run_dir / "target").state_dict()
    assert any(not torch.equal(w, start[k]) for k, w in moved.items())
