"""Offline end-to-end demo through open-unlearning, on an embedded default.

A tiny Llama memorises a generated fictitious-author set (host ``src/train.py``), ASU_KL unlearns
the forget authors (host ``src/train.py``, ``experiment=unlearn/tofu/asu``), and the host's TOFU
evaluator (``src/eval.py``) scores the model before and after, and the forget-teacher itself.

``python -m asu_plugin.workflows.demo [--out DIR] [--temperature T] [--gamma G] [--epochs E]``

Runs are kept and reused: the target and retain models (``target``, ``retain``) depend only on
the set and their finetuning (``setup.json``), the unlearned model and its scores are named by
τ, γ and epochs (``asu_kl_t32_g1_e30``, ``evals/after_t32_g1_e30``), the teacher by τ.
"""

import argparse
import logging
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from asu_plugin.asu.smoothing import check_temperature
from asu_plugin.losses import check_weight
from asu_plugin.workflows.entry import checked, stops
from asu_plugin.workflows.host import teacher_overrides
from asu_plugin.workflows.runs import Recipe, Runs
from asu_plugin.workflows.tables import markdown_table
from asu_plugin.workflows.targets import prepare, split_rows
from asu_plugin.workflows.tiny import encode_qa

UNLEARN_LR, UNLEARN_BATCH = 1e-3, 4
# TOFU_EVAL.json keys: the host's summary metrics and, as utility, the retain-set ones
# (its model_utility also averages in real-author/world-fact knowledge a tiny model lacks)
METRICS = {
    "forget_Q_A_Prob": "forget answer prob",
    "forget_Q_A_ROUGE": "forget ROUGE",
    "forget_truth_ratio": "forget truth ratio",
    "forget_quality": "forget quality",
    "retain_Q_A_Prob": "retain answer prob",
    "retain_Q_A_ROUGE": "retain ROUGE",
    "model_utility": "model utility",
}


def check_epochs(epochs) -> int:
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    return epochs


class Knobs(NamedTuple):
    """What defines the unlearned model: ASU_KL's τ and forget weight γ, and its epochs."""

    temperature: float
    gamma: float
    epochs: int

    @property
    def tag(self):
        return f"t{self.temperature:g}_g{self.gamma:g}_e{self.epochs}"

    @property
    def unlearn(self):
        return Recipe(self.epochs, UNLEARN_LR, UNLEARN_BATCH)


def run_demo(runs, knobs):
    """Every stage of the demo in ``runs``; prints the table and two forget answers."""
    models = prepare(runs)
    retain_logs = runs.eval_logs("retain")
    runs.ensure_eval("retain", models["retain"], stage="evaluating the retain model")
    before = runs.ensure_eval(
        "before", models["target"], retain_logs, stage="evaluating the target model"
    )
    temperature, gamma = knobs.temperature, knobs.gamma
    unlearned = runs.ensure_model(
        f"asu_kl_{knobs.tag}",
        models["target"],
        [
            "--config-name=unlearn.yaml",
            "experiment=unlearn/tofu/asu",
            f"trainer.method_args.temperature={temperature}",
            f"trainer.method_args.gamma={gamma}",
        ],
        knobs.unlearn,
        stage=f"unlearning with ASU_KL (τ {temperature:g}, γ {gamma:g}, "
        f"{knobs.epochs} epochs)",
    )
    after = runs.ensure_eval(
        f"after_{knobs.tag}",
        unlearned,
        retain_logs,
        stage="evaluating the unlearned model",
    )
    teacher = runs.ensure_eval(
        f"teacher_t{temperature:g}",
        models["target"],
        retain_logs,
        teacher_overrides(temperature),
        stage="evaluating the forget-teacher (AttentionSmoothedForCausalLM)",
    )
    report({"before": before, "ASU_KL": after, "teacher": teacher})
    samples(runs.out, models["target"], unlearned)
    runs.stage(f"done; everything is under {runs.out}")


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


def samples(out, before, after, count=2):
    """The first ``count`` forget questions answered before and after unlearning."""
    tokenizer = AutoTokenizer.from_pretrained(before)
    models = {
        label: AutoModelForCausalLM.from_pretrained(path).eval()
        for label, path in (("before", before), ("after", after))
    }
    print()
    for row in split_rows(out, "forget10")[:count]:
        ids, start = encode_qa(tokenizer, row)
        prompt = torch.tensor([ids[:start]])
        print(f"Q: {row['question']}\n   truth : {row['answer']}")
        for label, model in models.items():
            with torch.no_grad():
                answer = model.generate(
                    prompt,
                    attention_mask=torch.ones_like(prompt),
                    max_new_tokens=20,
                    do_sample=False,
                )[0, start:]
            print(
                f"   {label:<6}: {tokenizer.decode(answer, skip_special_tokens=True)}"
            )


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
    parser.add_argument("--out", type=Path, default=Path(".demo"))
    # the paper's 2.3 is for 7B models; a 4-layer model needs more smoothing to forget
    # see benchmarks/results/mini_tofu: the teacher forgets from τ ≈ 10 at this depth, and
    # the bounded KL needs epochs (τ 32: forget prob 0.215 after 10 epochs, 0.085 after 30)
    parser.add_argument("--temperature", default="32")
    parser.add_argument("--gamma", default="1")
    parser.add_argument("--epochs", default="30")
    args = parser.parse_args(argv)
    knobs, problems = checked(
        {
            "--temperature": lambda: check_temperature(float(args.temperature)),
            "--gamma": lambda: check_weight("gamma", float(args.gamma)),
            "--epochs": lambda: check_epochs(int(args.epochs)),
        }
    )
    if problems:  # every bad one, as argparse words its own errors (exit 2)
        parser.error("\n".join(f"argument {k}: {v}" for k, v in problems.items()))
    with quiet(), stops("demo"):
        run_demo(Runs(args.out), Knobs(*knobs.values()))


if __name__ == "__main__":
    main()
