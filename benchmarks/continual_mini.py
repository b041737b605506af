"""Continual unlearning at mini scale: ASU_GD, ASU_KL, GradDiff and NPO over 5 requests.

    OPEN_UNLEARNING_DIR=~/open-unlearning python benchmarks/continual_mini.py [--out DIR]

The demo's generated author set and tiny Llama (target finetuned on all 20 authors); request k
forgets 2 new authors (``request<k>``), each step is scored on everything forgotten so far
(``forgotten<k>``), retain set: the 10 authors no request names. One ``python -m
asu_plugin.workflows.continual`` run per method; writes ``results.md`` and ``results.png`` comparing them.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
import transformers

from asu_plugin.workflows.continual import PLOTTED, scores
from asu_plugin.workflows.demo import Demo
from asu_plugin.workflows.host import host_dir, train_overrides

REQUESTS = 5
METHODS = {  # trainer and method overrides; the same lr / epochs for all
    "ASU_GD": ["trainer.method_args.temperature=6", "trainer.method_args.alpha=1"],
    "ASU_KL": ["trainer.method_args.temperature=6", "trainer.method_args.alpha=1"],
    "GradDiff": [],
    "NPO": [],
}
TRAIN = [
    "trainer.args.do_eval=false",
    "trainer.args.eval_on_start=false",
    "trainer.args.eval_strategy=no",
    "trainer.args.num_train_epochs=10",
    "trainer.args.learning_rate=1e-3",
    "trainer.args.per_device_train_batch_size=4",
    "trainer.args.gradient_accumulation_steps=1",
    "trainer.args.logging_steps=50",
]


def hydra_list(items):
    return "[" + ",".join(f"'{item}'" for item in items) + "]"


def run_method(out, target, tiny, name):
    requests = ",".join(
        f"{{forget_split: request{k}, retain_split: retain_stream, "
        f"eval_forget_split: forgotten{k}}}"
        for k in range(1, REQUESTS + 1)
    )
    tokenizer = f"model.tokenizer_args.pretrained_model_name_or_path={tiny}"
    command = [
        sys.executable,
        "-m",
        "asu_plugin.workflows.continual",
        f"task_name={name}",
        f"model_path={target}",
        "model=phi-1_5",
        f"method={name}",
        f"requests=[{requests}]",
        f"train_overrides={hydra_list([tokenizer, *train_overrides(), *TRAIN, *METHODS[name]])}",
        f"eval_overrides={hydra_list([tokenizer, 'model.model_args.device_map=cpu', 'holdout_split=holdout10'])}",
        f"work_dir={out}",
        f"out_dir={out / 'continual' / name}",
    ]
    subprocess.run(command, check=True)
    steps = [out / "continual" / name / f"step{k}" for k in range(1, REQUESTS + 1)]
    return [
        {**json.loads((step / "step.json").read_text()), **scores(step / "eval")}
        for step in steps
    ]


def write_comparison(out, runs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in PLOTTED if any(m in s["metrics"] for s in runs["ASU_KL"])]
    lines = [
        "# Continual unlearning, mini scale\n",
        f"Command: `OPEN_UNLEARNING_DIR=~/open-unlearning python {' '.join(sys.argv)}`\n",
        f"torch {torch.__version__}, transformers {transformers.__version__}, CPU. Tiny "
        "4-layer Llama finetuned on 20 generated authors; request k forgets 2 new authors "
        "(10 epochs, lr 1e-3, batch 4; ASU τ 6, α 1; host defaults otherwise). Forget "
        "metrics are on everything forgotten so far (requests 1..k); retain metrics on "
        "the 10 never-requested authors. The target model starts at forget/retain answer "
        "prob ≈ 1. model_utility is the host's harmonic mean including real-author and "
        "world-fact QA, which a tiny model barely knows, so it drops to 0 at random.\n",
        "| method | step | " + " | ".join(metrics) + " |",
        "|---" * (len(metrics) + 2) + "|",
    ]
    for name, steps in runs.items():
        for s in steps:
            cells = (f"{s['metrics'].get(m, float('nan')):.3f}" for m in metrics)
            lines.append(f"| {name} | {s['step']} | {' | '.join(cells)} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")

    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.2))
    for ax, metric in zip(axes, metrics, strict=True):
        for name, steps in runs.items():
            ax.plot(
                [s["step"] for s in steps],
                [s["metrics"].get(metric, float("nan")) for s in steps],
                marker="o",
                label=name,
            )
        ax.set(title=metric, xlabel="request")
    axes[0].legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out / "results.png", dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(".continual_mini"))
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    demo = Demo(host_dir(), out, temperature=6, alpha=1)
    target = out / "target"
    if not (target / "config.json").is_file():
        target = demo.prepare()
    runs = {}
    for name in args.methods:
        demo.stage(f"continual unlearning with {name}")
        runs[name] = run_method(out, target, out / "tiny", name)
    write_comparison(out, runs)
    demo.stage(f"wrote {out / 'results.md'} and {out / 'results.png'}")


if __name__ == "__main__":
    main()
