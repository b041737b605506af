"""Step cost of ASU against the host's baselines: forward + backward of each unlearning loss.

    OPEN_UNLEARNING_DIR=~/open-unlearning python benchmarks/step_cost.py [--repeats 20]

Builds each trainer through open-unlearning's ``load_trainer`` on the same random Llama and the
same forget/retain batch, and prints the median time per step and its ratio to GradDiff (KL).
CPU only here: no optimizer step, so it isolates the loss's forward/backward passes.
"""

import argparse
import statistics
import sys
import tempfile
import time
from types import SimpleNamespace

import torch
from omegaconf import OmegaConf
from transformers import LlamaConfig, LlamaForCausalLM

import asu_plugin
from asu_plugin.host import host_dir

METHODS = {
    "GradDiff (NLL)": ("GradDiff", {"retain_loss_type": "NLL"}),
    "GradDiff (KL)": ("GradDiff", {"retain_loss_type": "KL"}),
    "NPO": ("NPO", {}),
    "ASU_GD": ("ASU_GD", {}),
    "ASU_KL": ("ASU_KL", {}),
}
BASELINE = "GradDiff (KL)"


def batch(size, length, vocab, generator):
    input_ids = torch.randint(3, vocab, (size, length), generator=generator)
    labels = input_ids.clone()
    labels[:, : length // 2] = -100
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "labels": labels,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--length", type=int, default=128)
    args = parser.parse_args()

    sys.path.insert(0, str(host_dir() / "src"))
    import model as host_model  # noqa: F401  (holds the registry register() fills)
    import trainer as host_trainer

    asu_plugin.register()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=8192,
        hidden_size=256,
        intermediate_size=1024,
        num_hidden_layers=4,
        num_attention_heads=4,
        attn_implementation="sdpa",
    )
    model = LlamaForCausalLM(config)
    g = torch.Generator().manual_seed(0)
    inputs = {
        split: batch(args.batch_size, args.length, config.vocab_size, g)
        for split in ("forget", "retain")
    }

    rows = {}
    with tempfile.TemporaryDirectory() as out:
        for name, (handler, method_args) in METHODS.items():
            cfg = OmegaConf.create(
                {
                    "handler": handler,
                    "args": {"output_dir": out, "report_to": "none", "use_cpu": True},
                    "method_args": method_args,
                }
            )
            trainer, _ = host_trainer.load_trainer(
                cfg, model=model, train_dataset=[], data_collator=SimpleNamespace()
            )
            model.train()
            times = []
            for _ in range(args.repeats + 2):  # two warm-up steps
                start = time.perf_counter()
                trainer.compute_loss(model, inputs).backward()
                times.append(time.perf_counter() - start)
                model.zero_grad(set_to_none=True)
            rows[name] = statistics.median(times[2:])

    torch_threads = torch.get_num_threads()
    print(
        f"Llama {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params, "
        f"sdpa, fp32, batch {args.batch_size}x{args.length} forget + retain, "
        f"{torch_threads} thread(s), median of {args.repeats}\n"
    )
    print(f"| method | ms / step | vs {BASELINE} |\n|---|---|---|")
    for name, seconds in rows.items():
        print(f"| {name} | {seconds * 1e3:.1f} | {seconds / rows[BASELINE]:.2f}x |")


if __name__ == "__main__":
    main()
