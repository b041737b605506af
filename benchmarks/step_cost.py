"""Step time and peak memory of ASU against the host's baselines, full and LoRA.

    OMP_NUM_THREADS=1 OPEN_UNLEARNING_DIR=~/open-unlearning python benchmarks/step_cost.py
    python benchmarks/step_cost.py --device cuda --dtype bfloat16 --size 1b   # on a GPU
    OMP_NUM_THREADS=2 ... python benchmarks/step_cost.py --size smollm2 --repeats 3  # real LLM

Builds each trainer through open-unlearning's ``load_trainer`` on the same random Llama (or
the pretrained SmolLM2-135M-Instruct, ``--size smollm2``: ``asu_plugin.workflows.smollm2``) and
the same forget/retain batch and times full training steps (loss, backward, AdamW step), one
process per method. Peak memory: ``torch.cuda.max_memory_allocated`` on a GPU; on a CPU the
process's peak resident memory above its level before the model was built (models, gradients,
optimizer state, activations). Prints a markdown table with ratios to GradDiff (KL). DareU
(``--size smollm2`` only: it needs a tokenizer; its classifier is a SmolLM2 with a random
head) also reports the share of its step spent generating the rollouts; ``--methods``
measures a few (GradDiff (KL) always). The CPU results and their readings:
``benchmarks/results/step_cost/``.
"""

import argparse
import contextlib
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

import torch
from omegaconf import OmegaConf
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
)

import asu_plugin
from asu_plugin import AttentionSmoothing
from asu_plugin.dareu.classifier import OTHER
from asu_plugin.workflows.host import host_dir
from asu_plugin.workflows.smollm2 import prepare

LORA = {"peft_type": "LORA", "r": 16, "lora_alpha": 32, "target_modules": "all-linear"}
METHODS = {
    "GradDiff (NLL)": ("GradDiff", {"retain_loss_type": "NLL"}),
    "GradDiff (KL)": ("GradDiff", {"retain_loss_type": "KL"}),
    "NPO": ("NPO", {}),
    "ASU_GD": ("ASU_GD", {}),
    "ASU_KL": ("ASU_KL", {}),
    "ASU_GD LoRA": ("ASU_GD", {"peft": LORA}),
    "ASU_KL LoRA": ("ASU_KL", {"peft": LORA}),
    "DareU": ("DareU", {}),  # --size smollm2 only: it needs a tokenizer and classifier
}
BASELINE = "GradDiff (KL)"
SIZES = {  # Llama shapes: tiny for a CPU, ~1.1B (Llama-3.2-1B-like) for a GPU
    "tiny": dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4),
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16),
    "smollm2": None,  # the pretrained SmolLM2-135M-Instruct (30 layers, 9 / 3 heads)
}


def batch(size, length, vocab, generator, device):
    input_ids = torch.randint(3, vocab, (size, length), generator=generator)
    labels = input_ids.clone()
    labels[:, : length // 2] = -100
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": torch.ones_like(input_ids).to(device),
        "labels": labels.to(device),
    }


def model_config(size, vocab):
    if size == "smollm2":
        return AutoConfig.from_pretrained(prepare())
    return LlamaConfig(
        vocab_size=vocab,
        num_attention_heads=SIZES[size]["hidden_size"] // 64,
        attn_implementation="sdpa",
        **SIZES[size],
    )


def build_model(size, vocab, dtype):
    torch.manual_seed(0)
    if size == "smollm2":
        return AutoModelForCausalLM.from_pretrained(
            prepare(), torch_dtype=dtype, attn_implementation="sdpa"
        )
    return LlamaForCausalLM(model_config(size, vocab)).to(dtype)


def step(trainer, inputs, optimizer):
    trainer.compute_loss(trainer.model, inputs).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def peak_bytes(device, baseline):
    if device == "cuda":
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline


def owner_classifier(out):
    """A SmolLM2 owner classifier over two owners and ``other`` (random head): the size
    of the one DareU's benchmark trains, so its reward costs what that one's does."""
    labels = ["author_0", "author_1", OTHER]
    model = AutoModelForSequenceClassification.from_pretrained(
        prepare(),
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    model.config.forget_owners = ["author_0"]
    model.config.pad_token_id = model.config.eos_token_id
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(prepare()).save_pretrained(out)
    return out


def measure(host_trainer, name, args, inputs, out):
    handler, method_args = METHODS[name]
    tokenizer = None
    if handler == "DareU":  # k samples of max_new_tokens per forget prompt
        method_args = {**method_args, "classifier": owner_classifier(f"{out}/owner")}
        tokenizer = AutoTokenizer.from_pretrained(prepare())
    dtype = getattr(torch, args.dtype)
    cfg = OmegaConf.create(
        {
            "handler": handler,
            "args": {
                "output_dir": out,
                "report_to": "none",
                "use_cpu": args.device == "cpu",
                "bf16": args.dtype == "bfloat16",
            },
            "method_args": method_args,
        }
    )
    baseline = resident_bytes()
    model = build_model(args.size, args.vocab, dtype)
    trainer, _ = host_trainer.load_trainer(
        cfg,
        model=model,
        train_dataset=[],
        tokenizer=tokenizer,
        data_collator=SimpleNamespace(),
    )
    generating = []  # DareU: seconds spent sampling the rollouts
    if handler == "DareU":
        sample = trainer.sample

        def timed_sample(*a, **kw):
            start = time.perf_counter()
            responses = sample(*a, **kw)
            generating.append(time.perf_counter() - start)
            return responses

        trainer.sample = timed_sample
    trainer.model.train()
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    for _ in range(2):  # warm-up; creates the optimizer state
        step(trainer, inputs, optimizer)
    times = []
    for _ in range(args.repeats):
        if args.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step(trainer, inputs, optimizer)
        if args.device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    trainable = sum(p.numel() for p in params)
    share = sum(generating[-args.repeats :]) / sum(times) if generating else None
    memory = peak_bytes(args.device, baseline)
    return statistics.median(times), memory, trainable, share


def measure_in_subprocess(name):
    """One method per process, so peak memory is that method's alone."""
    command = [sys.executable, __file__, *sys.argv[1:], "--method", name]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--size", default="tiny", choices=sorted(SIZES))
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--method", choices=list(METHODS), help=argparse.SUPPRESS)
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=list(METHODS),
        help=f"measure only these (with {BASELINE}, the ratios' base)",
    )
    args = parser.parse_args()
    if args.method is None:
        names = [n for n in METHODS if args.size == "smollm2" or n != "DareU"]
        names = [n for n in names if n in (args.methods or names) or n == BASELINE]
        rows = {name: measure_in_subprocess(name) for name in names}
        report(args, rows)
        return teacher_overhead(args)

    sys.path.insert(0, str(host_dir() / "src"))
    import model as host_model  # noqa: F401  (holds the registry register() fills)
    import trainer as host_trainer

    asu_plugin.register()
    g = torch.Generator().manual_seed(0)
    inputs = {
        split: batch(args.batch_size, args.length, args.vocab, g, args.device)
        for split in ("forget", "retain")
    }
    with tempfile.TemporaryDirectory() as out:
        print(json.dumps(measure(host_trainer, args.method, args, inputs, out)))


def report(args, rows):
    with torch.device("meta"):  # shapes only
        model = LlamaForCausalLM(model_config(args.size, args.vocab))
        size = sum(p.numel() for p in model.parameters())
    print(
        f"Llama {size / 1e6:.1f}M params, sdpa, {args.dtype}, {args.device} "
        f"({torch.get_num_threads()} thread(s)), batch {args.batch_size}x{args.length} "
        f"forget + retain, AdamW, median of {args.repeats} steps\n"
    )
    base_time, base_memory, *_ = rows[BASELINE]
    print(
        f"| method | trainable | ms / step | time vs {BASELINE} | peak MiB "
        f"| memory vs {BASELINE} | generating |\n|---|---|---|---|---|---|---|"
    )
    for name, (seconds, memory, trainable, share) in rows.items():
        share = "–" if share is None else f"{share:.0%}"
        print(
            f"| {name} | {trainable / 1e6:.2f}M | {seconds * 1e3:.1f} "
            f"| {seconds / base_time:.2f}x | {memory / 2**20:.1f} "
            f"| {memory / base_memory:.2f}x | {share} |"
        )


def teacher_overhead(args):
    """Median no-grad forward with and without smoothing (τ 2.3), interleaved."""
    model = build_model(args.size, args.vocab, getattr(torch, args.dtype))
    model.to(args.device).eval()
    g = torch.Generator().manual_seed(0)
    inputs = batch(args.batch_size, args.length, args.vocab, g, args.device)
    inputs.pop("labels")
    smoothing = AttentionSmoothing(model, 2.3)
    times = {False: [], True: []}
    with torch.no_grad():
        for _ in range(2 * args.repeats + 2):
            for smoothed in (False, True):
                if args.device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                with smoothing if smoothed else contextlib.nullcontext():
                    model(**inputs)
                if args.device == "cuda":
                    torch.cuda.synchronize()
                times[smoothed].append(time.perf_counter() - start)
    plain, smoothed = (statistics.median(times[k][2:]) for k in (False, True))
    print(
        f"\nTeacher forward (smoothed, hooks on and off around it) vs plain forward: "
        f"{smoothed * 1e3:.1f} / {plain * 1e3:.1f} ms = {smoothed / plain:.3f}x "
        f"(median of {2 * args.repeats}, {model.config._attn_implementation})"
    )


if __name__ == "__main__":
    main()
