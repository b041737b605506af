import copy
import importlib.util
import os
from pathlib import Path

import pytest
import torch
import transformers
from transformers import (
    AutoModelForCausalLM,
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    LlamaConfig,
    LlamaForSequenceClassification,
)

from asu_plugin.workflows.builders.tiny import build_tokenizer
from asu_plugin.workflows.run.host import CLONE, host_dir, is_host

TINY = dict(
    vocab_size=96,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
    initializer_range=0.2,  # peaked enough that τ moves logits by > 1
)
# Family -> config class and what differs from TINY.
FAMILIES = {
    "llama": ("LlamaConfig", {}),
    "qwen2": ("Qwen2Config", {}),
    "mistral": ("MistralConfig", {"sliding_window": None}),
    "gemma": ("GemmaConfig", {"head_dim": 8}),
    "phi3": ("Phi3Config", {}),
    "phi": ("PhiConfig", {}),  # phi-1.5: partial rotary, dense attention output
    # QK-norm: the queries are normalised after projection, per head or whole
    # one head: 4.45.1's phi applies its head-sized query norm before the head split
    "phi-qk": (
        "PhiConfig",
        {"qk_layernorm": True, "num_attention_heads": 1, "num_key_value_heads": 1},
    ),
    "cohere-qk": ("CohereConfig", {"use_qk_norm": True}),
    "qwen3": ("Qwen3Config", {"head_dim": 8}),
    "gemma3": ("Gemma3TextConfig", {"head_dim": 8}),
    "olmo2": ("Olmo2Config", {}),
}


def tiny_model(family, attn_implementation="eager", seed=0, **overrides):
    """A random tiny causal LM of a family; same seed, same weights."""
    config_cls, extra = FAMILIES.get(family, (family, {}))
    if not hasattr(transformers, config_cls):
        pytest.skip(f"transformers {transformers.__version__} has no {config_cls}")
    config = getattr(transformers, config_cls)(**{**TINY, **extra, **overrides})
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(
        config, attn_implementation=attn_implementation
    )
    return model.eval()


# a LoRA adapter on the queries and the output layer, its B != 0 so that it changes the outputs
LORA_ON_OUTPUT = {
    "peft_type": "LORA",
    "r": 4,
    "lora_alpha": 8,
    "target_modules": r".*(q_proj|qkv_proj|lm_head)",
    "init_lora_weights": False,
}


def frozen_copy(model):
    ref = copy.deepcopy(model).eval()
    ref.requires_grad_(False)
    return ref


def qa_batch(batch_size=3, seq_len=12, vocab_size=96, seed=0):
    """Right-padded batch whose labels cover an answer span, like host QA data."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, vocab_size, (batch_size, seq_len), generator=g)
    attention_mask = torch.ones_like(input_ids)
    labels = input_ids.clone()
    for row in range(batch_size):
        pad = row * 2  # row 0 unpadded, later rows padded on the right
        if pad:
            input_ids[row, -pad:] = 0
            attention_mask[row, -pad:] = 0
            labels[row, -pad:] = -100
        labels[row, : seq_len // 2] = -100  # question tokens carry no loss
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


NLI_LABELS = {0: "entailment", 1: "neutral", 2: "contradiction"}  # the release's NLI's


def build_tiny_bert(out_dir, texts, labels=None, bias=None, seed=0):
    """A random tiny BERT and word-level tokenizer (of ``texts``), 128 positions: a
    sentence encoder, or with ``labels`` a sequence classifier (``bias``: fixed logits,
    the weights zeroed)."""
    tokenizer = build_tokenizer(texts)
    tokenizer.model_max_length = 128  # truncation=True cuts there
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=0.5,
    )
    torch.manual_seed(seed)
    if labels is None:
        model = BertModel(config)
    else:
        config.id2label = labels
        config.label2id = {v: k for k, v in labels.items()}
        model = BertForSequenceClassification(config)
        if bias is not None:
            with torch.no_grad():
                model.classifier.weight.zero_()
                model.classifier.bias.copy_(torch.tensor(bias))
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return str(out_dir)


# src/train.py copies the start model, noting max_steps; src/eval.py scores by τ, or by the
# model's "prob" file plus its steps / 100; both keep their overrides
FAKE_SCRIPT = """
import json, shutil, sys
from pathlib import Path
args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a and a[0] != "-")
out = Path(args["paths.output_dir"])
model = Path(args["model.model_args.pretrained_model_name_or_path"])
if {fail}:
    sys.exit("fake failure")
if "{script}" == "train.py":
    shutil.copytree(model, out)
    (out / "steps").write_text(args.get("++trainer.args.max_steps", "0"))
else:
    out.mkdir(parents=True)
    prob = 1 / float(args.get("+model.model_args.attention_temperature", 1))
    if (model / "prob").is_file():
        prob = float((model / "prob").read_text())
        prob += int((model / "steps").read_text()) / 100 if (model / "steps").is_file() else 0
    logs = {{"forget_Q_A_Prob": {{"agg_value": prob}}}}
    (out / "TOFU_EVAL.json").write_text(json.dumps(logs))
(out / "overrides.json").write_text(json.dumps(sys.argv[1:]))
"""


def fake_host(path, fail=False):
    """A host checkout whose src/train.py and src/eval.py are FAKE_SCRIPT."""
    (path / "src").mkdir(parents=True)
    for script in ("train.py", "eval.py"):
        text = FAKE_SCRIPT.format(script=script, fail=fail)
        (path / "src" / script).write_text(text)
    return path


HOST_REQUIREMENTS = (
    "accelerate",
    "deepspeed",
    "lm_eval",
    "rouge_score",
    "scipy",
    "sklearn",
)


# the host's TOFU metrics: left out of the paper-metric runs to keep them short (the paper's
# metrics pre-compute what they read)
HOST_TOFU_METRICS = (
    "forget_truth_ratio",
    "forget_quality",
    "forget_Q_A_Prob",
    "forget_Q_A_ROUGE",
    "model_utility",
    "privleak",
    "extraction_strength",
)
NO_HOST = "no open-unlearning checkout"  # how every skip for want of a host starts
NO_HOST_REQUIREMENTS = "open-unlearning's requirements are missing"


@pytest.fixture(scope="session")
def host():
    """open-unlearning checkout with its requirements importable, else skip."""
    path = host_dir()
    if not is_host(path):
        pytest.skip(
            f"{NO_HOST} at {path}: {CLONE} "
            "(or set OPEN_UNLEARNING_DIR to your checkout)"
        )
    missing = [m for m in HOST_REQUIREMENTS if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(
            f"{NO_HOST_REQUIREMENTS} ({', '.join(missing)}): "
            "install them with `make host`"
        )
    return path


@pytest.fixture(scope="session")
def tofu():
    """Real TOFU: ``$TOFU_DIR`` holding locuslab/TOFU's jsonl files, else skip."""
    path = os.environ.get("TOFU_DIR")
    if not path or not (Path(path).expanduser() / "forget01.jsonl").is_file():
        pytest.skip(
            f"no real TOFU ({f'none at TOFU_DIR={path}' if path else 'TOFU_DIR unset'}): "
            "set TOFU_DIR to a folder with locuslab/TOFU's jsonl files (huggingface-cli "
            "download locuslab/TOFU --repo-type dataset --local-dir DIR)"
        )
    return Path(path).expanduser()


def pytest_collection_modifyitems(items):
    """Every host test is slow (it runs the host, mostly in subprocesses)."""
    for item in items:
        if item.get_closest_marker("host"):
            item.add_marker(pytest.mark.slow)


HOST_TESTS = {"ran": 0, "skipped for want of a host": 0, "skipped otherwise": 0}


def pytest_runtest_logreport(report):
    """Count the host-marked tests that ran and those that skipped, and why."""
    if "host" not in report.keywords:
        return
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
        without_host = NO_HOST in reason or NO_HOST_REQUIREMENTS in reason
        HOST_TESTS[
            f"skipped {'for want of a host' if without_host else 'otherwise'}"
        ] += 1
    elif report.when == "call":
        HOST_TESTS["ran"] += 1


def pytest_terminal_summary(terminalreporter):
    """One line that says whether the host tests ran (CI fails a host leg on 0 ran)."""
    if any(HOST_TESTS.values()):
        counts = ", ".join(f"{n} {what}" for what, n in HOST_TESTS.items())
        terminalreporter.write_line(f"host-marked tests: {counts}")


def build_tiny_classifier(out_dir, tokenizer, labels, forget_owners=None, seed=0):
    """Save a random tiny Llama owner classifier over ``labels`` with ``tokenizer``."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        forget_owners=forget_owners,
    )
    torch.manual_seed(seed)
    LlamaForSequenceClassification(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
