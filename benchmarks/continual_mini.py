"""Continual unlearning at mini scale: ASU_GD, ASU_KL, GradDiff and NPO over 5 requests.

    OPEN_UNLEARNING_DIR=~/open-unlearning python benchmarks/continual_mini.py [--out DIR]

The demo's generated author set and tiny Llama (target finetuned on all 20 authors); request k
forgets 2 new authors (``request<k>``), each step is scored on everything forgotten so far
(``forgotten<k>``), retain set: the 10 authors no request names. One ``python -m
asu_plugin.workflows.continual`` run per method (work folder ``--out``); writes ``results.md`` and
``results.png`` comparing them to ``--results`` (default ``benchmarks/results/continual_mini``).
"""

import argparse
import subprocess
import sys
from pathlib import Path

import torch
import transformers

from asu_plugin.workflows.builders.targets import prepare
from asu_plugin.workflows.continual import PLOTTED, finished_steps
from asu_plugin.workflows.run.entry import WorkflowError, stops
from asu_plugin.workflows.run.host import NO_EVAL, device_overrides, hydra_list
from asu_plugin.workflows.run.runs import Recipe, Runs
from asu_plugin.workflows.run.tables import markdown_table

REQUESTS = 5
UNLEARN = Recipe(10, 1e-3, 4)  # the same for every method
METHODS = {  # each method's own method_args; the host's defaults otherwise
    "ASU_GD": ["trainer.method_args.temperature=6", "trainer.method_args.gamma=1"],
    "ASU_KL": ["trainer.method_args.temperature=6", "trainer.method_args.gamma=1"],
    "GradDiff": [],
    "NPO": [],
}


def run_method(runs, target, name):
    """``python -m asu_plugin.workflows.continual`` over the requests; its steps."""
    requests = [
        {
            "forget_split": f"request{k}",
            "retain_split": "retain_stream",
            "eval_forget_split": f"forgotten{k}",
        }
        for k in range(1, REQUESTS + 1)
    ]
    tokenizer = f"model.tokenizer_args.pretrained_model_name_or_path={target}"
    train = [tokenizer, *device_overrides(), *NO_EVAL, *UNLEARN.overrides()]
    train += ["trainer.args.logging_steps=50", *METHODS[name]]
    evals = [tokenizer, "model.model_args.device_map=cpu", "holdout_split=holdout10"]
    out_dir = runs.out / "continual" / name
    command = [
        sys.executable,
        "-m",
        "asu_plugin.workflows.continual",
        f"task_name={name}",
        f"model_path={target}",
        "model_config=phi-1_5",
        f"method={name}",
        f"requests={hydra_list(requests)}",
        f"train_overrides={hydra_list(train)}",
        f"eval_overrides={hydra_list(evals)}",
        f"work_dir={runs.out}",
        f"out_dir={out_dir}",
        f"host_dir={runs.host}",
    ]
    code = subprocess.run(command).returncode
    if code:
        raise WorkflowError(
            f"python -m asu_plugin.workflows.continual failed for {name} (exit {code}); "
            "its output is above"
        )
    return finished_steps(out_dir)


def write_comparison(out, runs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = {m for steps in runs.values() for s in steps for m in s["metrics"]}
    metrics = [m for m in PLOTTED if m in present]
    rows = [
        [name, s["step"], *(s["metrics"].get(m) for m in metrics)]
        for name, steps in runs.items()
        for s in steps
    ]
    lines = [
        "# Continual unlearning, mini scale\n",
        f"Command: `OPEN_UNLEARNING_DIR=~/open-unlearning python {' '.join(sys.argv)}`\n",
        f"torch {torch.__version__}, transformers {transformers.__version__}, CPU. Tiny "
        "4-layer Llama finetuned on 20 generated authors; request k forgets 2 new authors "
        "(10 epochs, lr 1e-3, batch 4; ASU τ 6, γ 1; host defaults otherwise). Forget "
        "metrics are on everything forgotten so far (requests 1..k); retain metrics on "
        "the 10 never-requested authors. The target model starts at forget/retain answer "
        "prob ≈ 1. model_utility is the host's harmonic mean including real-author and "
        "world-fact QA, which a tiny model barely knows, so it drops to 0 at random.\n",
        markdown_table(["method", "step", *metrics], rows),
    ]
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
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument(
        "--results",
        type=Path,
        default=Path(__file__).parent / "results" / "continual_mini",
    )
    args = parser.parse_args()
    with stops("continual_mini"):
        run(args)


def run(args):
    """Every method's continual run, then the comparison."""
    runs = Runs(args.out)
    target = prepare(runs, names=["target"])["target"]
    steps = {}
    for name in args.methods:
        runs.stage(f"continual unlearning with {name}")
        steps[name] = run_method(runs, target, name)
    args.results.mkdir(parents=True, exist_ok=True)
    write_comparison(args.results, steps)
    runs.stage(
        f"wrote {args.results / 'results.md'} and {args.results / 'results.png'}"
    )


if __name__ == "__main__":
    main()
