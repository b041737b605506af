"""Step time and peak memory of ASU against the host's baselines, full and LoRA.

    OMP_NUM_THREADS=1 OPEN_UNLEARNING_DIR=~/open-unlearning python benchmarks/step_cost.py
    python benchmarks/step_cost.py --device cuda --dtype bfloat16 --size 1b   # on a GPU
    OMP_NUM_THREADS=2 ... python benchmarks/step_cost.py --size smollm2 --repeats 3  # real LLM
    ... python benchmarks/step_cost.py --size vocab128k --batch-size 2 --lengths 128 512 1024

Builds each trainer through open-unlearning's ``load_trainer`` on the same random Llama (or
the pretrained SmolLM2-135M-Instruct, ``--size smollm2``: ``asu_plugin.workflows.builders.smollm2``) and
the same forget/retain batch and times full training steps (loss, backward, AdamW step), one
process per method. Peak memory: ``torch.cuda.max_memory_allocated`` on a GPU; on a CPU the
process's peak resident memory above its level before the model was built (models, gradients,
optimizer state, activations). ``logits MiB``: the peak of the tensors whose last dimension is
the vocabulary alone (logits, their log-softmax and gradients), live at once during one more
step, traced op by op. Prints a markdown table per ``--lengths`` with ratios to GradDiff (KL)
and GradDiff (NLL). DareU (``--size smollm2`` only: it needs a tokenizer; its classifier is a
SmolLM2 with a random head) also reports the shares of its step spent generating the
rollouts, on the classifier's reward and on the starting model's forwards; ``--methods``
measures a few (the GradDiffs always). The CPU results and their readings:
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
import weakref
from types import SimpleNamespace

import torch
from omegaconf import OmegaConf
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
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
from asu_plugin.workflows.builders.smollm2 import prepare
from asu_plugin.workflows.run.host import host_dir

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
BASELINE, NLL = "GradDiff (KL)", "GradDiff (NLL)"
TINY = dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4)
SIZES = {  # Llama shapes: tiny for a CPU, ~1.1B (Llama-3.2-1B-like) for a GPU
    "tiny": TINY,
    # tiny with Llama-3's 128,256-token vocabulary: the output layer dominates, as in 8B runs
    "vocab128k": {**TINY, "vocab_size": 128256},
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
        **{"vocab_size": vocab, **SIZES[size]},
        num_attention_heads=SIZES[size]["hidden_size"] // 64,
        attn_implementation="sdpa",
    )


def vocab_size(args):
    return model_config(args.size, args.vocab).vocab_size


class LogitsPeak(TorchDispatchMode):
    """The peak bytes of live tensors whose last dimension is ``vocab``, op by op; views
    of the ``modules``' parameters (the output layer's transposed weight) left out."""

    def __init__(self, vocab, modules):
        super().__init__()
        self.vocab, self.live, self.peak = vocab, 0, 0
        self.seen = weakref.WeakSet()
        self.weights = {
            p.untyped_storage().data_ptr() for m in modules for p in m.parameters()
        }

    def _freed(self, size):
        self.live -= size

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if not isinstance(tensor, torch.Tensor) or tensor.dim() == 0:
                continue
            if tensor.shape[-1] != self.vocab:
                continue
            storage = tensor.untyped_storage()
            if storage not in self.seen and storage.data_ptr() not in self.weights:
                self.seen.add(storage)
                self.live += storage.nbytes()
                weakref.finalize(storage, self._freed, storage.nbytes())
                self.peak = max(self.peak, self.live)
            del storage
        return out


def build_model(size, vocab, dtype):
    torch.manual_seed(0)
    if size == "smollm2":
        return AutoModelForCausalLM.from_pretrained(
            prepare(), torch_dtype=dtype, attn_implementation="sdpa"
        )
    return LlamaForCausalLM(model_config(size, vocab)).to(dtype)


def timed(owner, name, seconds):
    """Wrap ``owner.name`` so that each call's seconds are appended to ``seconds``."""
    function = getattr(owner, name)

    def wrapper(*a, **kw):
        start = time.perf_counter()
        result = function(*a, **kw)
        seconds.append(time.perf_counter() - start)
        return result

    setattr(owner, name, wrapper)


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
    parts = {}  # DareU: seconds spent generating, on the reward, on the start's forwards
    if handler == "DareU":
        parts = {"generating": [], "classifier": [], "reference": []}
        timed(trainer, "sample", parts["generating"])
        timed(trainer, "rewards", parts["classifier"])
        timed(trainer.start, "positions", parts["reference"])
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
    shares = {  # the timed steps' calls: each part runs as often every step
        part: sum(seconds[len(seconds) * 2 // (args.repeats + 2) :]) / sum(times)
        for part, seconds in parts.items()
    }
    memory = peak_bytes(args.device, baseline)
    modules = [trainer.model, *([trainer.ref_model] if trainer.ref_model else [])]
    with LogitsPeak(model.config.vocab_size, modules) as logits:
        step(trainer, inputs, optimizer)
    return statistics.median(times), memory, trainable, shares, logits.peak


def measure_in_subprocess(name, length):
    """One method per process, so peak memory is that method's alone."""
    command = [
        sys.executable, __file__, *sys.argv[1:], "--method", name, "--length", str(length)
    ]  # fmt: skip
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
    parser.add_argument("--lengths", type=int, nargs="+", default=[128])
    parser.add_argument("--method", choices=list(METHODS), help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=list(METHODS),
        help=f"measure only these (with {BASELINE}, the ratios' base)",
    )
    args = parser.parse_args()
    if args.method is None:
        names = [n for n in METHODS if args.size == "smollm2" or n != "DareU"]
        names = [
            n for n in names if n in (args.methods or names) or n in (NLL, BASELINE)
        ]
        for length in args.lengths:
            rows = {name: measure_in_subprocess(name, length) for name in names}
            report(args, length, rows)
        return teacher_overhead(args)

    sys.path.insert(0, str(host_dir() / "src"))
    import model as host_model  # noqa: F401  (holds the registry register() fills)
    import trainer as host_trainer

    asu_plugin.register()
    g = torch.Generator().manual_seed(0)
    inputs = {
        split: batch(args.batch_size, args.length, vocab_size(args), g, args.device)
        for split in ("forget", "retain")
    }
    with tempfile.TemporaryDirectory() as out:
        print(json.dumps(measure(host_trainer, args.method, args, inputs, out)))


def report(args, length, rows):
    config = model_config(args.size, args.vocab)
    with torch.device("meta"):  # shapes only
        size = sum(p.numel() for p in LlamaForCausalLM(config).parameters())
    print(
        f"Llama {size / 1e6:.1f}M params, vocabulary {config.vocab_size}, sdpa, "
        f"{args.dtype}, {args.device} ({torch.get_num_threads()} thread(s)), batch "
        f"{args.batch_size}x{length} forget + retain, AdamW, median of {args.repeats} "
        "steps\n"
    )
    (kl_time, kl_memory, *_), (nll_time, nll_memory, *_) = rows[BASELINE], rows[NLL]
    parts = sorted({part for row in rows.values() for part in row[3]})
    print(
        "| method | trainable | ms / step | time vs KL | time vs NLL | peak MiB "
        "| memory vs KL | memory vs NLL | logits MiB |"
        + "".join(f" {part} |" for part in parts)
        + "\n|---|---|---|---|---|---|---|---|---|"
        + "---|" * len(parts)
    )
    for name, (seconds, memory, trainable, shares, logits) in rows.items():
        print(
            f"| {name} | {trainable / 1e6:.2f}M | {seconds * 1e3:.1f} "
            f"| {seconds / kl_time:.2f}x | {seconds / nll_time:.2f}x "
            f"| {memory / 2**20:.1f} | {memory / kl_memory:.2f}x "
            f"| {memory / nll_memory:.2f}x | {logits / 2**20:.1f} |"
            + "".join(
                f" {shares[part]:.0%} |" if part in shares else " – |" for part in parts
            )
        )
    print(f"\nKL: {BASELINE}, NLL: {NLL}\n")


def teacher_overhead(args):
    """Median no-grad forward with and without smoothing (τ 2.3), interleaved."""
    model = build_model(args.size, args.vocab, getattr(torch, args.dtype))
    model.to(args.device).eval()
    g = torch.Generator().manual_seed(0)
    inputs = batch(args.batch_size, args.lengths[0], vocab_size(args), g, args.device)
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
