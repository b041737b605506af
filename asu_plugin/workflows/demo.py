"""Offline end-to-end demo through open-unlearning: a model learns fictitious authors, ASU_KL
unlearns two of them, a host baseline beside it.

``preset=smollm2`` (default): SmolLM2-135M-Instruct (``make smollm2``) finetuned on 6 generated
authors whose answers are invented facts (``builders.authors.generate(biographies=True)``: a model that
never read them cannot guess them). ``preset=tiny``: a 4-layer word-level Llama on the short
one-fact authors, built locally (a few minutes; for quick checks and the tests). The target
learns every author and the retain model all but the forget authors (host ``src/train.py``);
the demo checks the target really learnt the forget authors, takes τ from the calibration
workflow on that target (``python -m asu_plugin.workflows.calibrate``; smollm2) unless
``temperature`` is given and the paper's TOFU forget weight γ 0.1 (smollm2) unless ``gamma``
is, unlearns the forget authors with ASU_KL and with the ``baseline``
(``src/train.py``), and scores every model with the host's TOFU evaluator (``src/eval.py``):
forget and retain metrics beside the fluency of the forget answers, and the answers. A GPU is
used when torch sees one.

``python -m asu_plugin.workflows.demo [preset=P] [out_dir=DIR] [temperature=T] [gamma=G]
[alpha=A] [epochs=E] [baseline=B] [device=D]`` (configs/demo/default.yaml)

Runs are kept and reused in ``DIR/<preset>``: the target and retain models (``target``,
``retain``) depend only on the set, the model and their finetuning (``setup.json``), the
calibration on the target (``calibrate``), each unlearned model and its scores are named by
what defines it (``asu_kl_t1.75_g1_a1_e5``, ``evals/asu_kl_t1.75_g1_a1_e5``; ``npo_e5``).
"""

import json
import logging
import os
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import torch
import transformers

from asu_plugin.asu import check_temperature
from asu_plugin.core.checks import check_count, check_weight
from asu_plugin.workflows.builders import smollm2
from asu_plugin.workflows.builders.targets import (
    GENERATED,
    Setup,
    base,
    finetune,
    split_rows,
)
from asu_plugin.workflows.run.entry import BadSettings, WorkflowError, checked, workflow
from asu_plugin.workflows.run.host import (
    describe_device,
    host_commit,
    resolve_device,
)
from asu_plugin.workflows.run.runs import Recipe, Runs
from asu_plugin.workflows.run.tables import markdown_table

# TOFU_EVAL.json keys: the host's summary metrics, the fluency of the forget answers, the
# retain-set metrics and the general knowledge (real authors, world facts) its model_utility
# also averages in (harmonically: one zero makes it zero)
METRICS = {
    "forget_Q_A_Prob": "forget answer prob",
    "forget_Q_A_ROUGE": "forget ROUGE",
    "forget_truth_ratio": "forget truth ratio",
    "forget_quality": "forget quality",
    "forget_repetition": "forget repetition",
    "forget_empty": "forget empty share",
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
BASELINES = (
    "NPO",
    "GradDiff",
    "SimNPO",
)  # host trainers of the default TOFU experiment


class Knobs(NamedTuple):
    """What defines the unlearned models: ASU_KL's τ, forget weight γ and retain weight α,
    the epochs (the baseline's too) and the layers the teacher smooths (``None``: all)."""

    temperature: float
    gamma: float
    alpha: float
    epochs: int
    layers: tuple | None = None

    @property
    def tag(self):
        layers = (
            "" if self.layers is None else f"_l{min(self.layers)}-{max(self.layers)}"
        )
        knobs = f"g{self.gamma:g}_a{self.alpha:g}_e{self.epochs}"
        return f"t{self.temperature:g}{layers}_{knobs}"


class Model(NamedTuple):
    """What ``preset`` picks: the target's setup, the host model config it runs with,
    ASU_KL's default knobs (τ ``None``: calibrated), the unlearning learning rate and batch
    size, and the τ values the calibration sweeps (or where the fixed τ comes from)."""

    setup: Setup
    host_model: str
    knobs: Knobs
    unlearn_lr: float
    unlearn_batch: int
    temperatures: tuple = ()
    layer_sets: tuple = ()
    temperature_source: str = ""
    gamma_source: str = ""


MODELS = {
    "smollm2": Model(
        Setup(
            data_args={
                "biographies": True,  # invented facts: the retain model cannot guess them
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
        # γ 0.1 against 0.3 and 1 on this target: docs/demo.md (γ 1 costs the real authors)
        Knobs(temperature=None, gamma=0.1, alpha=1.0, epochs=5),
        1e-4,
        4,
        # all layers forget only once answers are gone (τ 2: all empty); a third of the
        # layers keeps them sentences at a larger τ (docs/demo.md)
        temperatures=(2.0, 3.0, 4.0, 6.0),
        layer_sets=("all", "middle_third", "last_third"),
        gamma_source="the paper's TOFU forget weight",
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
        temperature_source="the tiny model's default, from benchmarks/results/mini_tofu",
        gamma_source="the tiny model's default",
    ),
}


class NotLearnt(WorkflowError):
    """The target does not know the forget authors better than the retain model."""


def run_demo(runs, model, knobs, baseline="NPO", given=()):
    """Every stage of the demo in ``runs``; prints the τ and γ chosen (and where from:
    ``given`` names the settings the user gave; τ ``None``: calibrated), the table, sample
    answers and stage times."""
    times = {}

    def timed(label, make):
        start = time.time()
        result = make()
        times[label] = time.time() - start
        return result

    def evaluate(name, folder, retain_logs, stage):
        return runs.ensure_eval(name, folder, retain_logs, EVAL, stage=stage)

    recipe = model.setup.recipe
    start = timed("data and base model", lambda: base(runs, model.setup))
    target = timed("finetune target", lambda: finetune(runs, "target", recipe, start))
    retain = timed("finetune retain", lambda: finetune(runs, "retain", recipe, start))
    held_out = timed(
        "evaluate retain",
        lambda: evaluate("retain", retain, None, "evaluating the retain model"),
    )
    retain_logs = runs.eval_logs("retain")
    before = timed(
        "evaluate before",
        lambda: evaluate("before", target, retain_logs, "evaluating the target model"),
    )
    check_learnt(before, held_out, runs.out / "logs" / "target.log")
    runs.stage(
        "the target learnt the forget authors: forget answer prob "
        f"{before['forget_Q_A_Prob']:.3f}, the retain model's "
        f"{held_out['forget_Q_A_Prob']:.3f}"
    )
    if knobs.temperature is None:
        tau, layers, source = timed(
            "calibrate τ", lambda: calibrate(runs, model, target)
        )
        knobs = knobs._replace(temperature=tau, layers=layers)
    else:
        source = "temperature=" if "temperature" in given else model.temperature_source
    where = "all layers" if knobs.layers is None else f"layers {list(knobs.layers)}"
    runs.stage(f"τ {knobs.temperature:g} on {where}: {source}")
    source = "gamma=" if "gamma" in given else model.gamma_source
    runs.stage(f"γ {knobs.gamma:g}: {source}")
    unlearn = Recipe(knobs.epochs, model.unlearn_lr, model.unlearn_batch)
    asu_name = f"asu_kl_{knobs.tag}"
    asu = timed(
        "unlearn (ASU_KL)",
        lambda: runs.ensure_model(
            asu_name,
            target,
            [
                "--config-name=unlearn.yaml",
                "experiment=unlearn/tofu/asu",
                f"trainer.method_args.temperature={knobs.temperature}",
                *layer_overrides(knobs.layers),
                f"trainer.method_args.gamma={knobs.gamma}",
                f"trainer.method_args.alpha={knobs.alpha}",
            ],
            unlearn,
            stage=f"unlearning with ASU_KL (τ {knobs.temperature:g} on {where}, "
            f"γ {knobs.gamma:g}, α {knobs.alpha:g}, {knobs.epochs} epochs, "
            f"lr {model.unlearn_lr:g})",
        ),
    )
    after = {
        "ASU_KL": timed(
            "evaluate ASU_KL",
            lambda: evaluate(asu_name, asu, retain_logs, "evaluating ASU_KL's model"),
        )
    }
    names = {"before": "before", "ASU_KL": asu_name}
    if baseline is not None:
        name = f"{baseline.lower()}_e{knobs.epochs}"
        unlearned = timed(
            f"unlearn ({baseline})",
            lambda: runs.ensure_model(
                name,
                target,
                [
                    "--config-name=unlearn.yaml",
                    "experiment=unlearn/tofu/default",
                    f"trainer={baseline}",
                ],
                unlearn,
                stage=f"unlearning with {baseline} (the host's defaults, "
                f"{knobs.epochs} epochs, lr {model.unlearn_lr:g})",
            ),
        )
        after[baseline] = timed(
            f"evaluate {baseline}",
            lambda: evaluate(
                name, unlearned, retain_logs, f"evaluating {baseline}'s model"
            ),
        )
        names[baseline] = name
    report({"before": before, **after, "retain model": held_out})
    samples(runs, names)
    print("\nstage times (s; 0 = reused from an earlier run):")
    print("  " + ", ".join(f"{label} {t:.0f}" for label, t in times.items()))
    runs.stage(
        f"done in {sum(times.values()) / 60:.1f} min; everything is under {runs.out}"
    )


def layer_overrides(layers):
    return (
        []
        if layers is None
        else [f"trainer.method_args.layers=[{','.join(map(str, layers))}]"]
    )


def calibrate(runs, model, target):
    """τ and the layers (``None``: all) the calibration workflow recommends for ``target``
    (made in ``out/calibrate`` unless there), and a line saying so."""
    temperatures = ",".join(f"{t:g}" for t in model.temperatures)
    layer_sets = ",".join(model.layer_sets)
    if not (runs.out / "calibrate").is_dir():
        runs.stage(
            "calibrating τ on the target (python -m asu_plugin.workflows.calibrate: "
            f"τ {temperatures} on layer sets {layer_sets})"
        )
    folder = runs.workflow(
        "calibrate",
        "calibrate",
        [
            f"model={model.host_model}",
            f"model.model_args.pretrained_model_name_or_path={target}",
            f"model.tokenizer_args.pretrained_model_name_or_path={target}",
            f"data_dir={runs.out / 'data'}",
            f"temperatures=[{temperatures}]",
            f"layer_sets=[{layer_sets}]",
            f"max_new_tokens={MAX_NEW_TOKENS}",
            f"num_threads={os.environ.get('OMP_NUM_THREADS', 1)}",
        ],
    )
    record = json.loads((folder / "calibration.json").read_text())
    chosen = record["recommendation"]
    if chosen is None:
        raise WorkflowError(
            f"the calibration recommends no τ for this target (τ {temperatures} on "
            f"{layer_sets}): see {folder / 'calibration.md'}, or set temperature="
        )
    tau, name = chosen["temperature"], chosen["layer_set"]
    teacher = next(
        r
        for r in record["results"]
        if r["layer_set"] == name and r["temperature"] == tau
    )
    layers = None if chosen["layers"] is None else tuple(chosen["layers"])
    return (
        tau,
        layers,
        (
            f"the calibration's choice on this target ({folder / 'calibration.md'}): its "
            f"teacher (layer set {name}) forget prob {teacher['forget_prob']:.3f}, "
            f"empty {teacher['empty_rate']:.2f}, repetition {teacher['repetition']:.2f}"
        ),
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


def samples(runs, evals, picks=(("forget", 3), ("retain", 1))):
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
                answer = " / ".join(by_index[index]["generation"].split("\n"))
                print(f"   {label:<7}: {answer.strip()}")


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


def check_config(cfg):
    """``BadSettings`` naming every bad value, before anything runs; the ``Model`` and the
    ``Knobs`` the settings pick."""
    if cfg.preset not in MODELS:
        raise BadSettings({"preset": f"{cfg.preset!r}; allowed: {', '.join(MODELS)}"})
    model = MODELS[cfg.preset]
    parse = {
        "temperature": lambda v: check_temperature(float(v)),
        "gamma": lambda v: check_weight("gamma", float(v)),
        "alpha": lambda v: check_weight("alpha", float(v)),
        "epochs": lambda v: check_count("epochs", v),
    }
    given, problems = checked(
        {k: lambda k=k: parse[k](cfg[k]) for k in parse if cfg[k] is not None}
        | {"device": lambda: resolve_device(cfg.device)}
    )
    if cfg.baseline is not None and cfg.baseline not in BASELINES:
        problems["baseline"] = (
            f"{cfg.baseline!r}; allowed: {', '.join(BASELINES)} or null"
        )
    if problems:
        raise BadSettings(problems)
    given.pop("device")
    return model, model.knobs._replace(**given)


EXAMPLE = "python -m asu_plugin.workflows.demo preset=tiny epochs=10"


@workflow("demo", check_config, EXAMPLE)
def main(cfg):
    model, knobs = check_config(cfg)
    os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))
    with quiet():
        if model.setup.pretrained:
            smollm2.prepare(model.setup.pretrained)
        runs = Runs(
            Path(cfg.out_dir).resolve() / cfg.preset,
            device=cfg.device,
            model=model.host_model,
        )
        runs.stage(
            f"{cfg.preset} on {describe_device(runs.device)}; open-unlearning "
            f"{host_commit(runs.host) or runs.host}; transformers "
            f"{transformers.__version__}, torch {torch.__version__}"
        )
        given = {name for name in ("temperature", "gamma") if cfg[name] is not None}
        run_demo(runs, model, knobs, cfg.baseline, given)


if __name__ == "__main__":
    main()
