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
import statistics
from pathlib import Path

import torch
import transformers
from report import FORGET_COLUMNS, front_lines, matched_rows, plot_fronts, spread
from sweep import by_method, load, teachers

from asu_plugin.workflows.builders.targets import GENERATED, Setup, prepare
from asu_plugin.workflows.builders.tofu_format import tofu_subset
from asu_plugin.workflows.run.entry import stops
from asu_plugin.workflows.run.host import host_commit, teacher_overrides
from asu_plugin.workflows.run.runs import Recipe, Runs, scores
from asu_plugin.workflows.run.tables import markdown_table

EPOCHS, BATCH = 10, 4  # unless a point says
SWEEPS = by_method(
    load("mini_tofu").points
)  # method -> its points, in the file's order
FORGET, UTILITY = "forget_Q_A_Prob", "retain_Q_A_Prob"
THRESHOLDS = (0.95, 0.9, 0.85, 0.8, 0.6)  # of UTILITY, for the matched-utility table
COLUMNS = (
    *FORGET_COLUMNS,
    "retain_Q_A_Prob",
    "retain_Q_A_ROUGE",
    "model_utility",
    "forget_repetition",
)


def sweep_teachers(methods):
    """The forget-teachers of the sweep's ASU points, by τ: label -> (run name, overrides)."""
    found = teachers(p for m in methods for p in SWEEPS[m])
    return {
        f"τ={tau}" + ("" if layers is None else f" layers={layers}"): (
            name,
            teacher_overrides(tau, layers),
        )
        for tau, layers, name in sorted(found, key=lambda t: (t[0], str(t[1])))
    }


def run_sweeps(runs, target, retain_logs, methods, seeds):
    """Every point of ``methods`` at every seed; ``(point, metrics)`` of each run."""
    results = []
    for point in (p for m in methods for p in SWEEPS[m]):
        recipe = Recipe(point.epochs or EPOCHS, point.lr, BATCH)
        for seed in seeds:
            run = f"{point.name}_s{seed}"
            if not runs.evaluated(run):
                model = runs.ensure_model(
                    run,
                    target,
                    [*point.overrides(), f"trainer.args.seed={seed}"],
                    recipe,
                    stage=f"{point.method} {point.label} seed {seed}",
                )
                runs.evaluate(run, model, retain_logs)
            results.append((point, scores(runs.eval_dir(run))["metrics"]))
    return results


def aggregate(results):
    """method -> [(point, column -> its values over seeds)]."""
    seeds = {}
    for point, metrics in results:
        seeds.setdefault(point.name, (point, []))[1].append(metrics)
    methods = {}
    for point, runs in seeds.values():
        values = {c: [m.get(c) for m in runs] for c in COLUMNS}
        methods.setdefault(point.method, []).append((point, values))
    return methods


def seeds_text(seeds):
    seeds = list(seeds)
    return (
        f"One run, seed {seeds}"
        if len(seeds) == 1
        else f"Mean ± std over seeds {seeds}"
    )


def single(metrics):
    """One run's metrics as columns of values."""
    return {c: [metrics.get(c)] for c in COLUMNS}


def mean(values):
    return statistics.mean(v for v in values if v is not None)


def forget(item):
    return mean(item[1][FORGET])


def utility(item):
    return mean(item[1][UTILITY])


def label(item):
    return item[0].label


def write_results(out, methods, teachers, references, seeds, command, setup):
    everything = [
        [name, "–", *(spread(s) for s in single(m).values())]
        for name, m in references.items()
    ]
    everything += [
        [point.method, point.label, *(spread(stats[c]) for c in COLUMNS)]
        for items in methods.values()
        for point, stats in items
    ]
    teacher_rows = [
        [tau, *(spread(s) for s in single(metrics).values())]
        for tau, metrics in teachers.items()
    ]
    lines = [
        "# Mini-TOFU: ASU against the host's baselines\n",
        f"Command: `{command}`\n",
        f"torch {torch.__version__}, transformers {transformers.__version__}. {setup} "
        f"Unlearning: batch {BATCH} and {EPOCHS} epochs unless the knob says, "
        "the baselines' method_args at the host's defaults unless swept (GradDiff / NPO / "
        "SimNPO: α = retain weight; UNDIAL's default α is 0, no retain term; ASU: γ = "
        f"forget weight). {seeds_text(seeds)} (the unlearning run's seed; "
        "one target and retain model). forget_repetition: share of repeated words in the "
        "generated forget answers (fluency check).\n",
        "## Every setting\n",
        markdown_table(["method", "knob", *COLUMNS], everything),
        "\n## Forget-teacher at each τ / layer set of the ASU sweep (the target, smoothed)\n",
        markdown_table(["τ", *COLUMNS], teacher_rows),
        "\n## Pareto fronts (forget answer prob ↓ vs retain answer prob ↑)\n",
        *front_lines(methods, forget, utility, label),
        "\n## Matched utility: lowest forget prob with retain prob ≥ threshold\n",
        markdown_table(
            ["method", *(f"≥ {t}" for t in THRESHOLDS)],
            matched_rows(methods, forget, utility, label, THRESHOLDS),
        ),
    ]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    plot_fronts(
        out / "results.png",
        methods,
        forget,
        utility,
        ("forget answer prob (↓)", "retain answer prob (utility, ↑)"),
        [
            (
                "forget-teacher (τ)",
                "k^",
                [(None, single(m)) for m in teachers.values()],
            ),
            ("retain model (goal)", "k*", [(None, single(references["retain model"]))]),
        ],
        title="Mini-TOFU: forget vs utility, Pareto fronts",
    )


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
    with stops("mini_tofu"):
        run(args)


def run(args):
    """The references, the forget-teachers and every sweep point; then the results."""
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
        for label, (name, overrides) in sweep_teachers(args.methods).items()
    }
    sweeps = run_sweeps(runs, models["target"], retain_logs, args.methods, args.seeds)
    command = "OPEN_UNLEARNING_DIR=~/open-unlearning python benchmarks/mini_tofu.py"
    command += f" --data {args.data} --seeds {' '.join(map(str, args.seeds))}"
    if set(args.methods) != set(SWEEPS):
        command += f" --methods {' '.join(args.methods)}"
    if args.device == "cuda":
        command += " --device cuda"
    methods = aggregate(sweeps)
    write_results(
        results, methods, teacher_scores, references, args.seeds, command, description
    )
    runs.stage(f"wrote {results / 'results.md'} and {results / 'results.png'}")


if __name__ == "__main__":
    main()
