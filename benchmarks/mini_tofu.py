"""Mini-TOFU: ASU against the host's baselines along each method's strength knob, with seeds.

    OPEN_UNLEARNING_DIR=~/open-unlearning python benchmarks/mini_tofu.py [--seeds 0 1] [--out DIR]

TOFU's protocol scaled down, on the demo's generated authors (20 authors, forget10 = 2): a tiny
Llama target finetuned on all authors plus general QA, a retain model without the forget authors
(forget quality), then each method's sweep through the host's ``src/train.py`` and ``src/eval.py``.
The forget-teacher is evaluated at every τ (``AttentionSmoothedForCausalLM``): it is the ceiling of
what ASU's student can forget. Utility is read on the retain authors (answer prob, ROUGE): the host's
``model_utility`` also averages real-author / world-fact knowledge that a tiny model lacks.
Writes ``results.md`` (mean ± std over seeds, Pareto fronts, matched-utility points) and
``results.png`` (forget vs utility with each method's front).
"""

import argparse
import json
import statistics
from pathlib import Path

import torch
import transformers

from asu_plugin import continual
from asu_plugin.demo import Demo
from asu_plugin.host import host_dir

EPOCHS, BATCH = 10, 4
ASU = "unlearn/tofu/asu"
BASE = "unlearn/tofu/default"
TAUS = (2, 4, 6, 10)


def tau_knobs(taus):  # lr 1e-3, α 1 (ASU's forget weight)
    alpha = "trainer.method_args.alpha=1"
    return {
        f"τ={t}": ("1e-3", [f"trainer.method_args.temperature={t}", alpha])
        for t in taus
    }


def lr_knobs(lrs):  # the host's method_args
    return {f"lr={lr}": (lr, []) for lr in lrs}


# name -> (trainer, experiment, {knob label: (learning rate, overrides)})
SWEEPS = {
    "ASU_KL": ("ASU_KL", ASU, tau_knobs(TAUS)),
    "ASU_GD": ("ASU_GD", ASU, tau_knobs(TAUS[1:])),
    "GradDiff": ("GradDiff", BASE, lr_knobs(("1e-4", "3e-4", "1e-3"))),
    "NPO": ("NPO", BASE, lr_knobs(("1e-4", "3e-4", "1e-3"))),
    "SimNPO": ("SimNPO", BASE, lr_knobs(("3e-4", "1e-3"))),
    "UNDIAL": ("UNDIAL", BASE, lr_knobs(("3e-4", "1e-3"))),
}
FORGET, UTILITY = "forget_Q_A_Prob", "retain_Q_A_Prob"
COLUMNS = (
    "forget_Q_A_Prob",
    "forget_Q_A_ROUGE",
    "forget_truth_ratio",
    "forget_quality",
    "retain_Q_A_Prob",
    "retain_Q_A_ROUGE",
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


def run_sweeps(demo, target, retain_logs, seeds):
    runs = []  # (method, knob, seed, metrics)
    for method, (trainer, experiment, knobs) in SWEEPS.items():
        for knob, (lr, overrides) in knobs.items():
            for seed in seeds:
                name = f"{method}_{knob}_s{seed}".replace("τ=", "t").replace("=", "")
                if not (demo.out / "evals" / name / "TOFU_EVAL.json").is_file():
                    demo.stage(f"{method} {knob} seed {seed}")
                    model = demo.train(
                        name,
                        target,
                        [
                            "--config-name=unlearn.yaml",
                            f"experiment={experiment}",
                            f"trainer={trainer}",
                            f"trainer.args.seed={seed}",
                            *overrides,
                        ],
                        EPOCHS,
                        lr,
                        BATCH,
                    )
                    demo.evaluate(name, model, retain_logs)
                runs.append((method, knob, seed, scores(demo.out / "evals" / name)))
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


def write_results(out, agg, teachers, references, seeds, command):
    lines = [
        "# Mini-TOFU: ASU against the host's baselines\n",
        f"Command: `{command}`\n",
        f"torch {torch.__version__}, transformers {transformers.__version__}, CPU. Tiny 4-layer "
        f"Llama on the demo's 20 generated authors, forget10 (2 authors). {EPOCHS} epochs, batch "
        f"{BATCH}, lr 1e-3 unless swept, ASU α 1 (forget weight), the baselines' "
        f"method_args at the host's defaults. Mean ± std over seeds {list(seeds)} (the unlearning "
        "run's seed; one target and retain model). forget_repetition: share of repeated words "
        "in the generated forget answers (fluency check).\n",
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
        "\n## Forget-teacher at each τ (the target with attention temperature τ)\n",
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
    lines += ["| method | " + " | ".join(f"≥ {t}" for t in (0.9, 0.8, 0.6)) + " |"]
    lines += ["|---" * 4 + "|"]
    for method in methods:
        cells = []
        for threshold in (0.9, 0.8, 0.6):
            ok = [
                (p[FORGET][0], k)
                for (m, k), p in agg.items()
                if m == method and p[UTILITY][0] >= threshold
            ]
            cells.append(f"{min(ok)[0]:.3f} ({min(ok)[1]})" if ok else "–")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    plot(out, agg, teachers, methods)


def plot(out, agg, teachers, methods):
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
    ax.set(
        xlabel="retain answer prob (utility, ↑)",
        ylabel="forget answer prob (↓)",
        title="Mini-TOFU: forget vs utility, Pareto fronts",
    )
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out / "results.png", dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(".mini_tofu"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    demo = Demo(host_dir(), out, temperature=None, alpha=None)
    target = out / "target"
    if not (target / "config.json").is_file():
        target = demo.prepare()
    retain = out / "retain"
    if not (retain / "config.json").is_file():
        demo.stage("finetuning the retain model (forget authors held out)")
        retain = demo.finetune("retain", "retain_finetune")
    retain_logs = out / "evals" / "retain" / "TOFU_EVAL.json"
    if not retain_logs.is_file():
        demo.evaluate("retain", retain)
    if not (out / "evals" / "target" / "TOFU_EVAL.json").is_file():
        demo.evaluate("target", target, retain_logs)
    teachers = {}
    for tau in TAUS:
        name = f"teacher_t{tau}"
        if not (out / "evals" / name / "TOFU_EVAL.json").is_file():
            demo.stage(f"evaluating the forget-teacher at τ {tau}")
            demo.evaluate(
                name,
                target,
                retain_logs,
                [
                    "+model.model_handler=AttentionSmoothedForCausalLM",
                    f"+model.model_args.attention_temperature={tau}",
                ],
            )
        teachers[tau] = scores(out / "evals" / name)
    runs = run_sweeps(demo, target, retain_logs, args.seeds)
    command = "OPEN_UNLEARNING_DIR=~/open-unlearning python benchmarks/mini_tofu.py"
    command += f" --seeds {' '.join(map(str, args.seeds))}"
    references = {  # the retain model never saw the forget authors: the goal
        "target (before)": scores(out / "evals" / "target"),
        "retain model": scores(out / "evals" / "retain"),
    }
    write_results(out, aggregate(runs), teachers, references, args.seeds, command)
    demo.stage(f"wrote {out / 'results.md'} and {out / 'results.png'}")


if __name__ == "__main__":
    main()
