"""Offline end-to-end demo through open-unlearning: a model learns fictitious authors, ASU_KL
unlearns two of them.

``--model smollm2`` (default): SmolLM2-135M-Instruct (``make smollm2``) finetuned on 6 generated
authors. ``--model tiny``: a 4-layer word-level Llama built locally (a few minutes; for quick
checks and the tests). The target learns every author and the retain model all but the forget
authors (host ``src/train.py``); the demo checks the target really learnt the forget authors,
ASU_KL unlearns them (``src/train.py``, ``experiment=unlearn/tofu/asu``), and the host's TOFU
evaluator (``src/eval.py``) scores the retain model, the target before and after, and the
forget-teacher itself. A GPU is used when torch sees one.

``python -m asu_plugin.workflows.demo [--model M] [--out DIR] [--temperature T] [--gamma G]
[--alpha A] [--epochs E]``

Runs are kept and reused in ``DIR/<model>``: the target and retain models (``target``,
``retain``) depend only on the set, the model and their finetuning (``setup.json``), the
unlearned model and its scores are named by τ, γ, α and epochs (``asu_kl_t2_g1_a1_e5``,
``evals/after_t2_g1_a1_e5``), the teacher by τ.
"""

import argparse
import json
import logging
import os
import time
import warnings
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import NamedTuple

import torch
import transformers

from asu_plugin.asu import check_temperature
from asu_plugin.core.checks import check_count, check_weight
from asu_plugin.workflows.build import smollm2
from asu_plugin.workflows.build.authors import generate_biographies
from asu_plugin.workflows.build.targets import (
    GENERATED,
    Setup,
    base,
    finetune,
    split_rows,
)
from asu_plugin.workflows.run.entry import WorkflowError, checked, stops
from asu_plugin.workflows.run.host import (
    describe_device,
    host_commit,
    resolve_device,
    teacher_overrides,
)
from asu_plugin.workflows.run.runs import Recipe, Runs
from asu_plugin.workflows.run.tables import markdown_table

# TOFU_EVAL.json keys: the host's summary metrics, the retain-set ones and the general
# knowledge (real authors, world facts) its model_utility also averages in (harmonically:
# one zero makes it zero; a tiny model never knew these)
METRICS = {
    "forget_Q_A_Prob": "forget answer prob",
    "forget_Q_A_ROUGE": "forget ROUGE",
    "forget_truth_ratio": "forget truth ratio",
    "forget_quality": "forget quality",
    "retain_Q_A_Prob": "retain answer prob",
    "retain_Q_A_ROUGE": "retain ROUGE",
    "ra_Q_A_ROUGE": "real authors ROUGE",
    "wf_Q_A_ROUGE": "world facts ROUGE",
    "model_utility": "model utility",
}
# the generated answers are at most ~40 tokens; the host generates 200 by default
MAX_NEW_TOKENS = 48
EVAL = [
    f"eval.tofu.metrics.{metric}.generation_args.max_new_tokens={MAX_NEW_TOKENS}"
    for metric in (
        "forget_Q_A_ROUGE",
        *(f"model_utility.pre_compute.{s}_Q_A_ROUGE" for s in ("retain", "ra", "wf")),
    )
]
# the target's forget answer probability must exceed the retain model's by this much
LEARNT_MARGIN = 0.2


def check_epochs(epochs) -> int:
    return check_count("epochs", epochs)


class Knobs(NamedTuple):
    """What defines the unlearned model: ASU_KL's τ, forget weight γ, retain weight α and
    its epochs."""

    temperature: float
    gamma: float
    alpha: float
    epochs: int

    @property
    def tag(self):
        return f"t{self.temperature:g}_g{self.gamma:g}_a{self.alpha:g}_e{self.epochs}"


class Model(NamedTuple):
    """What ``--model`` picks: the target's setup, the host model config it runs with,
    ASU_KL's defaults and its learning rate and batch size, and where τ comes from."""

    setup: Setup
    host_model: str
    knobs: Knobs
    unlearn_lr: float
    unlearn_batch: int
    temperature_source: str


MODELS = {
    "smollm2": Model(
        Setup(
            write_data=generate_biographies,
            data_args={
                "num_authors": 6,  # forget 2, retain 4
                "num_forget": 2,
                "num_requests": 1,
                "num_eval_retain": 2,  # the evaluator's cost is mostly retain QA
                "mix_general": False,  # it knows real authors and world facts already
            },
            recipe=Recipe(8, 2e-4, 8),  # the forget facts memorised, not just likely
            pretrained=smollm2.DEFAULT_DIR,
        ),
        "SmolLM2-135M-Instruct",
        Knobs(temperature=2.0, gamma=1.0, alpha=1.0, epochs=5),
        1e-4,
        4,
        "the committed calibration of SmolLM2-135M-Instruct, "
        "benchmarks/results/calibrate/smollm2_target (python -m "
        "asu_plugin.workflows.calibrate; recommended τ 2 on all layers)",
    ),
    # see benchmarks/results/mini_tofu: a 4-layer model needs more smoothing than the
    # paper's 7B models to forget; the teacher forgets from τ ≈ 10 at this depth, and the
    # bounded KL needs epochs (τ 32: forget prob 0.215 after 10 epochs, 0.085 after 30)
    "tiny": Model(
        GENERATED,
        "phi-1_5",  # the host's plain "Question: ... Answer: ..." template
        Knobs(temperature=32.0, gamma=1.0, alpha=1.0, epochs=30),
        1e-3,
        4,
        "the tiny model's default, from benchmarks/results/mini_tofu",
    ),
}


class NotLearnt(WorkflowError):
    """The target does not know the forget authors better than the retain model."""


def run_demo(runs, model, knobs, temperature_source="--temperature"):
    """Every stage of the demo in ``runs``; prints the table, sample answers and stage
    times."""
    times = {}

    def timed(label, make):
        start = time.time()
        result = make()
        times[label] = time.time() - start
        return result

    recipe = model.setup.recipe
    start = timed("data and base model", lambda: base(runs, model.setup))
    target = timed("finetune target", lambda: finetune(runs, "target", recipe, start))
    retain = timed("finetune retain", lambda: finetune(runs, "retain", recipe, start))
    retain_logs = runs.eval_logs("retain")
    held_out = timed(
        "evaluate retain",
        lambda: runs.ensure_eval(
            "retain", retain, None, EVAL, stage="evaluating the retain model"
        ),
    )
    before = timed(
        "evaluate before",
        lambda: runs.ensure_eval(
            "before", target, retain_logs, EVAL, stage="evaluating the target model"
        ),
    )
    check_learnt(before, held_out, runs.out / "logs" / "target.log")
    runs.stage(
        "the target learnt the forget authors: forget answer prob "
        f"{before['forget_Q_A_Prob']:.3f}, the retain model's "
        f"{held_out['forget_Q_A_Prob']:.3f}"
    )
    runs.stage(f"τ {knobs.temperature:g}: {temperature_source}")
    unlearned = timed(
        "unlearn (ASU_KL)",
        lambda: runs.ensure_model(
            f"asu_kl_{knobs.tag}",
            target,
            [
                "--config-name=unlearn.yaml",
                "experiment=unlearn/tofu/asu",
                f"trainer.method_args.temperature={knobs.temperature}",
                f"trainer.method_args.gamma={knobs.gamma}",
                f"trainer.method_args.alpha={knobs.alpha}",
            ],
            Recipe(knobs.epochs, model.unlearn_lr, model.unlearn_batch),
            stage=f"unlearning with ASU_KL (τ {knobs.temperature:g}, γ {knobs.gamma:g}, "
            f"α {knobs.alpha:g}, {knobs.epochs} epochs, lr {model.unlearn_lr:g})",
        ),
    )
    after = timed(
        "evaluate after",
        lambda: runs.ensure_eval(
            f"after_{knobs.tag}",
            unlearned,
            retain_logs,
            EVAL,
            stage="evaluating the unlearned model",
        ),
    )
    teacher = timed(
        "evaluate teacher",
        lambda: runs.ensure_eval(
            f"teacher_t{knobs.temperature:g}",
            target,
            retain_logs,
            [*EVAL, *teacher_overrides(knobs.temperature)],
            stage="evaluating the forget-teacher (AttentionSmoothedForCausalLM)",
        ),
    )
    report(
        {
            "before": before,
            "ASU_KL": after,
            "teacher": teacher,
            "retain model": held_out,
        }
    )
    samples(runs, {"before": "before", "after": f"after_{knobs.tag}"})
    print("\nstage times (s; 0 = reused from an earlier run):")
    print("  " + ", ".join(f"{label} {t:.0f}" for label, t in times.items()))
    runs.stage(
        f"done in {sum(times.values()) / 60:.1f} min; everything is under {runs.out}"
    )


def check_learnt(before, retain, log):
    """Raise ``NotLearnt`` unless the target's forget answer probability exceeds the
    retain model's by ``LEARNT_MARGIN``."""
    target, held_out = before["forget_Q_A_Prob"], retain["forget_Q_A_Prob"]
    if target < held_out + LEARNT_MARGIN:
        raise NotLearnt(
            "the target has not learnt the forget authors: its forget answer prob is "
            f"{target:.3f}, the retain model's {held_out:.3f} (needs {LEARNT_MARGIN} "
            f"more); unlearning would show nothing. Its finetuning log: {log}"
        )


def report(columns):
    """The METRICS of each column's scores, as a table."""
    rows = [
        [label, *(metrics.get(key) for metrics in columns.values())]
        for key, label in METRICS.items()
    ]
    print("\n" + markdown_table(["metric", *columns], rows))
    print(
        "\nforget quality: KS-test p-value of forget truth ratios against the retain"
        " model's (higher = closer to never trained on the forget authors)."
    )


def samples(runs, evals, picks=(("forget", 2), ("retain", 1))):
    """The host evaluator's greedy answers to the first questions of each split in
    ``picks``, from each of ``evals`` (label -> evaluation name)."""
    for split, count in picks:
        rows = split_rows(runs.out, f"{split}{'10' * (split == 'forget')}_perturbed")
        answers = {
            label: json.loads(runs.eval_logs(name).read_text())[f"{split}_Q_A_ROUGE"][
                "value_by_index"
            ]
            for label, name in evals.items()
        }
        first = next(iter(answers.values()))
        for index in sorted(first, key=int)[:count]:
            row = rows[int(index)]
            print(f"\n{split} Q: {row['question']}\n   truth : {row['answer']}")
            for label, by_index in answers.items():
                print(f"   {label:<6}: {by_index[index]['generation']}")


@contextmanager
def quiet():
    """No library warnings or log lines in this process (each host run logs its own)."""
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m asu_plugin.workflows.demo", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model", choices=MODELS, default="smollm2")
    parser.add_argument("--out", type=Path, default=Path(".demo"))
    parser.add_argument(
        "--temperature", help="ASU's τ (default: the model's calibrated one)"
    )
    parser.add_argument("--gamma", help="the forget term's weight")
    parser.add_argument("--alpha", help="the retain term's weight")
    parser.add_argument("--epochs")
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (the GPU when torch sees one), cpu or cuda",
    )
    args = parser.parse_args(argv)
    parse = {
        "temperature": lambda text: check_temperature(float(text)),
        "gamma": lambda text: check_weight("gamma", float(text)),
        "alpha": lambda text: check_weight("alpha", float(text)),
        "epochs": lambda text: check_epochs(int(text)),
        "device": resolve_device,
    }
    given, problems = checked(
        {
            f"--{knob}": partial(parse[knob], getattr(args, knob))
            for knob in (*Knobs._fields, "device")
            if getattr(args, knob) is not None
        }
    )
    if problems:  # every bad one, as argparse words its own errors (exit 2)
        parser.error("\n".join(f"argument {k}: {v}" for k, v in problems.items()))
    model = MODELS[args.model]
    device = given.pop("--device")
    knobs = model.knobs._replace(**{k[2:]: v for k, v in given.items()})
    source = "--temperature" if args.temperature else model.temperature_source
    os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))
    with quiet(), stops("demo"):
        if model.setup.pretrained:
            smollm2.prepare(model.setup.pretrained)
        runs = Runs(args.out / args.model, device=device, model=model.host_model)
        runs.stage(
            f"{args.model} on {describe_device(device)}; open-unlearning "
            f"{host_commit(runs.host) or runs.host}; transformers "
            f"{transformers.__version__}, torch {torch.__version__}"
        )
        run_demo(runs, model, knobs, source)


if __name__ == "__main__":
    main()
