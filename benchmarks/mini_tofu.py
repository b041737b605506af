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
import functools
import json
import re
import statistics
import subprocess
from pathlib import Path
from typing import NamedTuple

import torch
import transformers

from asu_plugin import continual
from asu_plugin.workflows.demo import Demo
from asu_plugin.workflows.demo_data import generate, tofu_subset
from asu_plugin.workflows.host import host_dir

EPOCHS, BATCH = 10, 4
ASU = "unlearn/tofu/asu"
BASE = "unlearn/tofu/default"
SYMBOLS = {"temperature": "τ", "alpha": "α", "beta": "β"}


class Point(NamedTuple):
    label: str
    name: str  # of the run's folder
    lr: str
    epochs: int
    method_args: dict


def knob(lr="1e-3", epochs=EPOCHS, **method_args):
    """One sweep point; the label names what differs from lr 1e-3 and EPOCHS epochs."""
    items = [("lr", lr)] if lr != "1e-3" or not method_args else []
    items += method_args.items()
    items += [("epochs", epochs)] if epochs != EPOCHS else []
    label = " ".join(f"{SYMBOLS.get(k, k)}={v}" for k, v in items)
    name = "_".join(f"{k}{v}" for k, v in items).replace(".", "p")
    return Point(label, re.sub(r"\W+", "", name), lr, epochs, method_args)


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


def scores(eval_dir):
    """Aggregate metrics of a host TOFU eval, plus the repetition rate of forget answers."""
    metrics = continual.scores(eval_dir)["metrics"]
    logs = json.loads((eval_dir / "TOFU_EVAL.json").read_text())
    answers = logs["forget_Q_A_ROUGE"]["value_by_index"].values()
    words = [a["generation"].split() for a in answers]
    metrics["forget_repetition"] = statistics.mean(
        1 - len(set(w)) / len(w) if w else 1.0 for w in words
    )  # 0: no word repeated; degenerate "born born born" answers approach 1
    return metrics


def teachers(methods):
    """The forget-teachers of the ASU sweep points: label -> (run name, eval overrides)."""
    points = {}
    for method in methods:
        for point in SWEEPS[method][1]:
            args = point.method_args
            smoothed = {k: args[k] for k in ("temperature", "layers") if k in args}
            if smoothed:
                label, name, *_ = knob(**smoothed)
                overrides = [
                    f"+model.model_args.attention_{k}={v}" for k, v in smoothed.items()
                ]
                points[label] = (args["temperature"], f"teacher_{name}", overrides)
    return {
        label: point[1:]
        for label, point in sorted(points.items(), key=lambda kv: (kv[1][0], kv[0]))
    }


def run_sweeps(demo, target, retain_logs, methods, seeds):
    runs = []  # (method, label, seed, metrics)
    for method in methods:
        experiment, points = SWEEPS[method]
        for label, name, lr, epochs, method_args in points:
            for seed in seeds:
                run = f"{method}_{name}_s{seed}"
                if not demo.evaluated(run):
                    demo.stage(f"{method} {label} seed {seed}")
                    model = demo.train(
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
                        epochs,
                        lr,
                        BATCH,
                    )
                    demo.evaluate(run, model, retain_logs)
                runs.append((method, label, seed, scores(demo.out / "evals" / run)))
    return runs


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


def pareto(points):
    """Points not dominated in (lower forget prob, higher utility)."""
    front = []
    for key, p in points:
        dominated = any(
            q[FORGET][0] <= p[FORGET][0]
            and q[UTILITY][0] >= p[UTILITY][0]
            and (q[FORGET][0], q[UTILITY][0]) != (p[FORGET][0], p[UTILITY][0])
            for _, q in points
        )
        if not dominated:
            front.append((key, p))
    return sorted(front, key=lambda kp: kp[1][UTILITY][0])


def fmt(mean_and_std):
    mean, std = mean_and_std
    return "n/a" if mean is None else f"{mean:.3f} ± {std:.3f}"


def write_results(out, agg, teachers, references, seeds, command, setup):
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
        "| method | knob | " + " | ".join(COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 2) + "|",
    ]
    lines += [
        f"| {name} | – | " + " | ".join(fmt((m.get(c), 0.0)) for c in COLUMNS) + " |"
        for name, m in references.items()
    ]
    for (method, knob), p in agg.items():
        lines.append(
            f"| {method} | {knob} | " + " | ".join(fmt(p[c]) for c in COLUMNS) + " |"
        )
    lines += [
        "\n## Forget-teacher at each τ / layer set of the ASU sweep (the target, smoothed)\n",
        "| τ | " + " | ".join(COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for tau, metrics in teachers.items():
        lines.append(
            f"| {tau} | "
            + " | ".join(fmt((metrics.get(c), 0.0)) for c in COLUMNS)
            + " |"
        )
    lines += ["\n## Pareto fronts (forget answer prob ↓ vs retain answer prob ↑)\n"]
    methods = dict.fromkeys(m for m, _ in agg)
    for method in methods:
        front = pareto([(k, p) for (m, k), p in agg.items() if m == method])
        lines.append(
            f"- {method}: "
            + ", ".join(
                f"{k} ({p[FORGET][0]:.3f}, {p[UTILITY][0]:.3f})" for k, p in front
            )
        )
    lines += ["\n## Matched utility: lowest forget prob with retain prob ≥ threshold\n"]
    lines += ["| method | " + " | ".join(f"≥ {t}" for t in THRESHOLDS) + " |"]
    lines += ["|---" * (len(THRESHOLDS) + 1) + "|"]
    for method in methods:
        cells = []
        for threshold in THRESHOLDS:
            ok = [
                (p[FORGET][0], k)
                for (m, k), p in agg.items()
                if m == method and p[UTILITY][0] >= threshold
            ]
            cells.append(f"{min(ok)[0]:.3f} ({min(ok)[1]})" if ok else "–")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    plot(out, agg, teachers, methods, references["retain model"])


def plot(out, agg, teachers, methods, goal):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for method in methods:
        points = [(k, p) for (m, k), p in agg.items() if m == method]
        xs = [p[UTILITY][0] for _, p in points]
        ys = [p[FORGET][0] for _, p in points]
        (line,) = ax.plot(xs, ys, "o", alpha=0.5)
        front = pareto(points)
        ax.plot(
            [p[UTILITY][0] for _, p in front],
            [p[FORGET][0] for _, p in front],
            "-",
            color=line.get_color(),
            label=method,
        )
    ax.plot(
        [m[UTILITY] for m in teachers.values()],
        [m[FORGET] for m in teachers.values()],
        "k^",
        label="forget-teacher (τ)",
    )
    ax.plot(
        goal[UTILITY], goal[FORGET], "k*", markersize=12, label="retain model (goal)"
    )
    ax.set(
        xlabel="retain answer prob (utility, ↑)",
        ylabel="forget answer prob (↓)",
        title="Mini-TOFU: forget vs utility, Pareto fronts",
    )
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out / "results.png", dpi=120)


def preset(args, out):
    """The run's Demo, data writer, model config and description."""
    if args.device == "cuda":  # the recipe: memorises TOFU in ~150 s on an H100
        write_data = functools.partial(
            tofu_subset,
            args.tofu_dir.resolve(),
            forget="forget10",
            num_retain_authors=180,
            num_eval_retain=20,
            num_general=None,
        )
        return (
            Demo(
                host_dir(),
                out,
                None,
                None,
                device="cuda",
                finetune_recipe=(20, 1e-3, 32),
            ),
            write_data,
            {"hidden_size": 320, "num_layers": 8, "vocab_size": 16384},  # 16M
            "One GPU, bf16. 16M 8-layer Llama on all 200 TOFU authors, forget10 "
            "(20 authors).",
        )
    demo = Demo(host_dir(), out, None, None)  # the demo's 4-layer Llama
    if args.data == "generated":
        setup = "CPU. Tiny 4-layer Llama on the demo's 20 generated authors, forget 2."
        return demo, generate, {}, setup
    write_data = functools.partial(
        tofu_subset, args.tofu_dir.resolve(), num_retain_authors=args.retain_authors
    )
    setup = (
        "CPU. Tiny 4-layer Llama on real TOFU: forget01's 2 authors and the first "
        f"{args.retain_authors} authors of full (retain metrics on 4 of them)."
    )
    return demo, write_data, {}, setup


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", choices=("generated", "tofu"), help="default generated"
    )
    parser.add_argument("--tofu-dir", type=Path, default=Path("../shared/data/tofu"))
    parser.add_argument("--retain-authors", type=int, default=18)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--methods", nargs="+", choices=SWEEPS, default=list(SWEEPS))
    parser.add_argument(
        "--out", type=Path, help="work folder (default .mini_tofu/DATA)"
    )
    parser.add_argument(
        "--results", type=Path, help="default benchmarks/mini_tofu/results/DATA"
    )
    args = parser.parse_args()
    if args.device == "cuda" and args.data == "generated":
        parser.error("--device cuda runs on all 200 TOFU authors: --data tofu or none")
    args.data = args.data or ("tofu" if args.device == "cuda" else "generated")
    kind = args.data if args.device == "cpu" else "tofu_all_cuda"
    out = (args.out or Path(".mini_tofu") / kind).resolve()
    results = args.results or Path(__file__).parent / "mini_tofu" / "results" / kind
    out.mkdir(parents=True, exist_ok=True)
    results.mkdir(parents=True, exist_ok=True)
    demo, write_data, model, setup = preset(args, out)
    commit = subprocess.run(
        ["git", "-C", str(host_dir()), "log", "-1", "--format=%h %s"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    setup = f"Host: open-unlearning {commit or '(not a git checkout)'}. {setup}"
    target = out / "target"
    if not (target / "config.json").is_file():
        target = demo.prepare(write_data, **model)
    retain = out / "retain"
    if not (retain / "config.json").is_file():
        demo.stage("finetuning the retain model (forget authors held out)")
        retain = demo.finetune("retain", "retain_finetune")
    retain_logs = out / "evals" / "retain" / "TOFU_EVAL.json"
    if not demo.evaluated("retain"):
        demo.evaluate("retain", retain)
    if not demo.evaluated("target"):
        demo.evaluate("target", target, retain_logs)
    teacher_scores = {}
    for label, (name, overrides) in teachers(args.methods).items():
        if not demo.evaluated(name):
            demo.stage(f"evaluating the forget-teacher at {label}")
            demo.evaluate(
                name,
                target,
                retain_logs,
                ["+model.model_handler=AttentionSmoothedForCausalLM", *overrides],
            )
        teacher_scores[label] = scores(out / "evals" / name)
    runs = run_sweeps(demo, target, retain_logs, args.methods, args.seeds)
    command = "OPEN_UNLEARNING_DIR=~/open-unlearning python benchmarks/mini_tofu.py"
    command += f" --data {args.data} --seeds {' '.join(map(str, args.seeds))}"
    if set(args.methods) != set(SWEEPS):
        command += f" --methods {' '.join(args.methods)}"
    if args.device == "cuda":
        command += " --device cuda"
    references = {  # the retain model never saw the forget authors: the goal
        "target (before)": scores(out / "evals" / "target"),
        "retain model": scores(out / "evals" / "retain"),
    }
    agg = aggregate(runs)
    write_results(results, agg, teacher_scores, references, args.seeds, command, setup)
    demo.stage(f"wrote {results / 'results.md'} and {results / 'results.png'}")


if __name__ == "__main__":
    main()
