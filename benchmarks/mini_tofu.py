"""Mini-TOFU: ASU against the host's baselines along each method's knobs, with seeds.

    OPEN_UNLEARNING_DIR=~/open-unlearning python benchmarks/mini_tofu.py --data generated
    OPEN_UNLEARNING_DIR=~/open-unlearning python benchmarks/mini_tofu.py --data tofu --seeds 0
    OPEN_UNLEARNING_DIR=~/open-unlearning python benchmarks/mini_tofu.py --device cuda

TOFU's protocol scaled down: a target finetuned on all authors plus general QA, a retain model
without the forget authors (forget quality), then each method's sweep through the host's
``src/train.py`` and ``src/eval.py``. Data: ``generated`` is the demo's 20 fictitious authors
(forget 2); ``tofu`` is real TOFU (``--tofu-dir``): forget01's 2 authors and the first
``--retain-authors`` of ``full``. ``--device cuda``: all 200 TOFU authors (forget10), a 16M
Llama, bf16. The forget-teacher is evaluated at every τ / layer set of the ASU sweep
(``AttentionSmoothedForCausalLM``): it is the ceiling of what ASU's student can forget. Utility
is read on the retain authors (answer prob, ROUGE) and as the host's ``model_utility``, which
also averages the real-author / world-fact QA mixed into training (barely learnt on the
generated set). Writes ``results.md`` (mean ± std over seeds, Pareto fronts, matched-utility
points) and ``results.png`` (forget vs utility).
"""

import argparse
import os
import re
import statistics
from pathlib import Path
from typing import NamedTuple

import torch
import transformers
from fronts import best_at, pareto, plot_fronts

from asu_plugin.workflows.host import host_commit, teacher_overrides
from asu_plugin.workflows.runs import Recipe, Runs, scores
from asu_plugin.workflows.tables import markdown_table
from asu_plugin.workflows.targets import GENERATED, Setup, prepare
from asu_plugin.workflows.tofu_format import tofu_subset

EPOCHS, BATCH = 10, 4
ASU = "unlearn/tofu/asu"
BASE = "unlearn/tofu/default"
SYMBOLS = {"temperature": "τ", "alpha": "α", "beta": "β"}


class Point(NamedTuple):
    label: str
    name: str  # of the run's folder
    recipe: Recipe
    method_args: dict  # the method's own knobs only


def knob(lr="1e-3", epochs=EPOCHS, **method_args):
    """One sweep point; the label names what differs from lr 1e-3 and EPOCHS epochs."""
    items = [("lr", lr)] if lr != "1e-3" or not method_args else []
    items += method_args.items()
    items += [("epochs", epochs)] if epochs != EPOCHS else []
    label = " ".join(f"{SYMBOLS.get(k, k)}={v}" for k, v in items)
    name = "_".join(f"{k}{v}" for k, v in items).replace(".", "p")
    recipe = Recipe(epochs, float(lr), BATCH)
    return Point(label, re.sub(r"\W+", "", name), recipe, method_args)


def asu(temperature, alpha=1, epochs=EPOCHS, **method_args):
    return knob(epochs=epochs, temperature=temperature, alpha=alpha, **method_args)


def lrs(*values):
    return [knob(lr) for lr in values]


# method -> (experiment, sweep points); lr 1e-3 and the host's method_args unless given
SWEEPS = {
    "ASU_KL": (
        ASU,
        [asu(t) for t in (2, 4, 6, 10, 32)]
        + [asu(10, alpha=0.3), asu(10, alpha=3), asu(10, layers="[0]")]
        + [asu(10, epochs=30), asu(32, epochs=30)],
    ),
    "ASU_GD": (
        ASU,
        [asu(t) for t in (4, 6, 10, 32)] + [asu(10, alpha=3), asu(32, epochs=30)],
    ),
    "GradDiff": (
        BASE,
        lrs("1e-4", "3e-4", "1e-3") + [knob("3e-4", alpha=3), knob("1e-4", epochs=30)],
    ),
    "NPO": (
        BASE,
        lrs("1e-4", "3e-4", "1e-3")
        + [knob("3e-4", beta=0.5), knob("3e-4", alpha=3), knob("1e-4", epochs=30)]
        + [knob("3e-4", epochs=30, beta=0.5)],
    ),
    "SimNPO": (
        BASE,
        lrs("3e-4", "1e-3", "3e-3")
        + [knob(beta=2), knob(beta=10), knob(epochs=30), knob(epochs=30, beta=2)],
    ),
    "UNDIAL": (
        BASE,
        lrs("3e-4", "1e-3")
        + [knob(beta=3), knob(beta=30), knob(alpha=1), knob(epochs=30, alpha=1)],
    ),
}
FORGET, UTILITY = "forget_Q_A_Prob", "retain_Q_A_Prob"
THRESHOLDS = (0.95, 0.9, 0.85, 0.8, 0.6)  # of UTILITY, for the matched-utility table
COLUMNS = (
    "forget_Q_A_Prob",
    "forget_Q_A_ROUGE",
    "forget_truth_ratio",
    "forget_quality",
    "retain_Q_A_Prob",
    "retain_Q_A_ROUGE",
    "model_utility",
    "forget_repetition",
)


def teachers(methods):
    """The forget-teachers of the ASU sweep points: label -> (run name, eval overrides)."""
    points = {}
    for method in methods:
        for point in SWEEPS[method][1]:
            args = point.method_args
            smoothed = {k: args[k] for k in ("temperature", "layers") if k in args}
            if smoothed:
                label, name, *_ = knob(**smoothed)
                overrides = teacher_overrides(**smoothed)
                points[label] = (args["temperature"], f"teacher_{name}", overrides)
    return {
        label: point[1:]
        for label, point in sorted(points.items(), key=lambda kv: (kv[1][0], kv[0]))
    }


def run_sweeps(runs, target, retain_logs, methods, seeds):
    results = []  # (method, label, seed, metrics)
    for method in methods:
        experiment, points = SWEEPS[method]
        for label, name, recipe, method_args in points:
            for seed in seeds:
                run = f"{method}_{name}_s{seed}"
                if not runs.evaluated(run):
                    model = runs.ensure_model(
                        run,
                        target,
                        [
                            "--config-name=unlearn.yaml",
                            f"experiment={experiment}",
                            f"trainer={method}",
                            f"trainer.args.seed={seed}",
                            *(
                                f"trainer.method_args.{k}={v}"
                                for k, v in method_args.items()
                            ),
                        ],
                        recipe,
                        stage=f"{method} {label} seed {seed}",
                    )
                    runs.evaluate(run, model, retain_logs)
                metrics = scores(runs.eval_dir(run))["metrics"]
                results.append((method, label, seed, metrics))
    return results


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def aggregate(runs):
    """(method, knob) -> column -> (mean, std) over seeds."""
    points = {}
    for method, knob, _, metrics in runs:
        points.setdefault((method, knob), []).append(metrics)
    return {
        key: {c: mean_std([m.get(c) for m in ms]) for c in COLUMNS}
        for key, ms in points.items()
    }


def fmt(mean_and_std):
    mean, std = mean_and_std
    return "n/a" if mean is None else f"{mean:.3f} ± {std:.3f}"


def write_results(out, agg, teachers, references, seeds, command, setup):
    everything = [
        [name, "–", *(fmt((m.get(c), 0.0)) for c in COLUMNS)]
        for name, m in references.items()
    ]
    everything += [
        [method, knob, *(fmt(p[c]) for c in COLUMNS)]
        for (method, knob), p in agg.items()
    ]
    teacher_rows = [
        [tau, *(fmt((metrics.get(c), 0.0)) for c in COLUMNS)]
        for tau, metrics in teachers.items()
    ]
    methods = dict.fromkeys(m for m, _ in agg)
    fronts = [
        f"- {method}: "
        + ", ".join(
            f"{k} ({forget((k, p)):.3f}, {utility((k, p)):.3f})"
            for k, p in pareto(method_points(agg, method), forget, utility)
        )
        for method in methods
    ]
    matched = [
        [method, *(best(agg, method, threshold) for threshold in THRESHOLDS)]
        for method in methods
    ]
    lines = [
        "# Mini-TOFU: ASU against the host's baselines\n",
        f"Command: `{command}`\n",
        f"torch {torch.__version__}, transformers {transformers.__version__}. {setup} "
        f"Unlearning: batch {BATCH}, lr 1e-3 and {EPOCHS} epochs unless the knob says, the baselines' "
        "method_args at the host's defaults unless swept (GradDiff / NPO / SimNPO: α = "
        "retain weight; UNDIAL's default α is 0, no retain term; ASU: α = forget weight). "
        f"Mean ± std over seeds {list(seeds)} (the unlearning run's seed; one target and "
        "retain model). forget_repetition: share of repeated words in the generated forget "
        "answers (fluency check).\n",
        "## Every setting\n",
        markdown_table(["method", "knob", *COLUMNS], everything),
        "\n## Forget-teacher at each τ / layer set of the ASU sweep (the target, smoothed)\n",
        markdown_table(["τ", *COLUMNS], teacher_rows),
        "\n## Pareto fronts (forget answer prob ↓ vs retain answer prob ↑)\n",
        *fronts,
        "\n## Matched utility: lowest forget prob with retain prob ≥ threshold\n",
        markdown_table(["method", *(f"≥ {t}" for t in THRESHOLDS)], matched),
    ]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    plot_fronts(
        out / "results.png",
        {method: method_points(agg, method) for method in methods},
        forget,
        utility,
        ("forget answer prob (↓)", "retain answer prob (utility, ↑)"),
        [
            ("forget-teacher (τ)", "k^", [_mean(m) for m in teachers.values()]),
            ("retain model (goal)", "k*", [_mean(references["retain model"])]),
        ],
        title="Mini-TOFU: forget vs utility, Pareto fronts",
    )


def _mean(metrics):
    """A single run's metrics as a point of ``forget`` / ``utility``."""
    return (None, {c: (metrics.get(c), 0.0) for c in (FORGET, UTILITY)})


def forget(item):
    return item[1][FORGET][0]


def utility(item):
    return item[1][UTILITY][0]


def method_points(agg, method):
    return [(k, p) for (m, k), p in agg.items() if m == method]


def best(agg, method, threshold):
    """The lowest forget prob of ``method`` with retain prob ≥ ``threshold``, and its knob."""
    item = best_at(method_points(agg, method), forget, utility, threshold)
    return "–" if item is None else f"{forget(item):.3f} ({item[0]})"


def preset(args):
    """The run's ``Setup`` (data, model, finetuning), device and description."""
    tofu = {"tofu_dir": args.tofu_dir and args.tofu_dir.resolve()}
    if args.device == "cuda":  # the recipe: memorises TOFU in ~150 s on an H100
        data = {"forget": "forget10", "num_retain_authors": 180, "num_eval_retain": 20}
        setup = Setup(
            tofu_subset,
            {**tofu, **data, "num_general": None},
            {"hidden_size": 320, "num_layers": 8, "vocab_size": 16384},  # 16M
            Recipe(20, 1e-3, 32),
        )
        return setup, "One GPU, bf16. 16M 8-layer Llama on all 200 TOFU authors, " + (
            "forget10 (20 authors)."
        )
    if args.data == "generated":  # the demo's 4-layer Llama
        return (
            GENERATED,
            "CPU. Tiny 4-layer Llama on the demo's 20 generated authors, forget 2.",
        )
    setup = Setup(tofu_subset, {**tofu, "num_retain_authors": args.retain_authors})
    return setup, (
        "CPU. Tiny 4-layer Llama on real TOFU: forget01's 2 authors and the first "
        f"{args.retain_authors} authors of full (retain metrics on 4 of them)."
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", choices=("generated", "tofu"), help="default generated"
    )
    parser.add_argument(
        "--tofu-dir", type=Path, default=os.environ.get("TOFU_DIR"), help="or TOFU_DIR"
    )
    parser.add_argument("--retain-authors", type=int, default=18)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--methods", nargs="+", choices=SWEEPS, default=list(SWEEPS))
    parser.add_argument(
        "--out", type=Path, help="work folder (default .mini_tofu/DATA)"
    )
    parser.add_argument(
        "--results", type=Path, help="default benchmarks/results/mini_tofu/DATA"
    )
    args = parser.parse_args()
    if args.device == "cuda" and args.data == "generated":
        parser.error("--device cuda runs on all 200 TOFU authors: --data tofu or none")
    args.data = args.data or ("tofu" if args.device == "cuda" else "generated")
    if args.data == "tofu" and not (args.tofu_dir and args.tofu_dir.is_dir()):
        parser.error(
            f"--data tofu needs --tofu-dir or TOFU_DIR: a folder with locuslab/TOFU's "
            f"jsonl files (got {args.tofu_dir})"
        )
    kind = args.data if args.device == "cpu" else "tofu_all_cuda"
    results = args.results or Path(__file__).parent / "results" / "mini_tofu" / kind
    results.mkdir(parents=True, exist_ok=True)
    setup, description = preset(args)
    runs = Runs(args.out or Path(".mini_tofu") / kind, device=args.device)
    commit = host_commit(runs.host) or "(not a git checkout)"
    description = f"Host: open-unlearning {commit}. {description}"
    models = prepare(runs, setup)
    retain = runs.ensure_eval(
        "retain", models["retain"], stage="evaluating the retain model"
    )
    retain_logs = runs.eval_logs("retain")
    references = {  # the retain model never saw the forget authors: the goal
        "target (before)": runs.ensure_eval("target", models["target"], retain_logs),
        "retain model": retain,
    }
    teacher_scores = {
        label: runs.ensure_eval(
            name,
            models["target"],
            retain_logs,
            overrides,
            stage=f"evaluating the forget-teacher at {label}",
        )
        for label, (name, overrides) in teachers(args.methods).items()
    }
    sweeps = run_sweeps(runs, models["target"], retain_logs, args.methods, args.seeds)
    command = "OPEN_UNLEARNING_DIR=~/open-unlearning python benchmarks/mini_tofu.py"
    command += f" --data {args.data} --seeds {' '.join(map(str, args.seeds))}"
    if set(args.methods) != set(SWEEPS):
        command += f" --methods {' '.join(args.methods)}"
    if args.device == "cuda":
        command += " --device cuda"
    agg = aggregate(sweeps)
    write_results(
        results, agg, teacher_scores, references, args.seeds, command, description
    )
    runs.stage(f"wrote {results / 'results.md'} and {results / 'results.png'}")


if __name__ == "__main__":
    main()
