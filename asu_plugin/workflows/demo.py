"""Offline end-to-end demo through open-unlearning, on an embedded default.

A tiny Llama memorises a generated fictitious-author set (host ``src/train.py``), ASU_KL unlearns
the forget authors (host ``src/train.py``, ``experiment=unlearn/tofu/asu``), and the host's TOFU
evaluator (``src/eval.py``) scores the model before and after, and the forget-teacher itself.

``python -m asu_plugin.workflows.demo [--out DIR] [--temperature T] [--alpha A] [--epochs E]``
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils.logging import disable_progress_bar

from asu_plugin.workflows.demo_data import generate, read_jsonl
from asu_plugin.workflows.host import (
    host_dir,
    is_host,
    link_tofu,
    run_host,
    train_overrides,
)
from asu_plugin.workflows.tiny import PROMPT, build_tiny_llama, qa_texts

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


def model_args(path):
    return [
        "model=phi-1_5",  # the plain "Question: ... Answer: ..." template
        f"model.model_args.pretrained_model_name_or_path={path}",
        f"model.tokenizer_args.pretrained_model_name_or_path={path}",
    ]


class Demo:
    # finetuning of the target and retain models: epochs, learning rate, batch size
    FINETUNE = (60, 3e-3, 16)

    def __init__(
        self,
        host,
        out,
        temperature,
        alpha,
        epochs=30,
        device="cpu",
        finetune_recipe=FINETUNE,
    ):
        self.host, self.out, self.device = host, out, device
        self.temperature, self.alpha, self.epochs = temperature, alpha, epochs
        self.finetune_recipe = finetune_recipe
        self.start = time.time()

    def stage(self, message):
        print(f"[{time.time() - self.start:6.0f}s] {message}", flush=True)

    def run(self, script, overrides):
        result = run_host(self.host, script, overrides, self.out, self.device)
        if result.returncode != 0:
            sys.exit(f"open-unlearning {script} failed (exit {result.returncode})")

    def train(self, name, model, overrides, epochs, lr, batch_size):
        """src/train.py without evaluation; returns the saved model's folder."""
        self.run(
            "train.py",
            [
                *overrides,
                f"task_name={name}",
                *model_args(model),
                *train_overrides(self.device),
                "trainer.args.do_eval=false",
                "trainer.args.eval_on_start=false",
                "trainer.args.eval_strategy=no",
                f"trainer.args.num_train_epochs={epochs}",
                f"trainer.args.learning_rate={lr}",
                f"trainer.args.per_device_train_batch_size={batch_size}",
                "trainer.args.gradient_accumulation_steps=1",
                "trainer.args.logging_steps=50",
                f"paths.output_dir={self.out / name}",
            ],
        )
        return self.out / name

    def finetune(self, name, data_config):
        overrides = [
            "experiment=finetune/tofu/default",
            f"data.train.TOFU_QA_full.args.hf_args.name={data_config}",
            "trainer.args.weight_decay=0.0",
        ]
        return self.train(name, self.out / "tiny", overrides, *self.finetune_recipe)

    def unlearn(self, target):
        overrides = [
            "--config-name=unlearn.yaml",
            "experiment=unlearn/tofu/asu",
            f"trainer.method_args.temperature={self.temperature}",
            f"trainer.method_args.alpha={self.alpha}",
        ]
        return self.train("asu_kl", target, overrides, self.epochs, 1e-3, 4)

    def evaluate(self, name, path, retain_logs=None, extra=()):
        """src/eval.py into ``evals/<name>``, which appears only once it is complete.

        The host writes its results after every metric and reuses those already in its
        output folder, so it writes into a fresh ``.partial`` folder, renamed at the end.
        """
        out = self.out / "evals" / name
        partial = out.with_name(f"{name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        self.run(
            "eval.py",
            [
                "experiment=eval/tofu/default",
                f"task_name={name}",
                *model_args(path),
                f"model.model_args.device_map={self.device}",
                f"retain_logs_path={retain_logs or 'null'}",
                f"paths.output_dir={partial}",
                *extra,
            ],
        )
        shutil.rmtree(out, ignore_errors=True)
        partial.rename(out)
        return out

    def evaluated(self, name):
        return (self.out / "evals" / name / "TOFU_EVAL.json").is_file()

    def prepare(self, write_data=generate, **model_config):
        """The author set (``write_data(folder)``, as locuslab/TOFU in ``out``) and the target.

        ``model_config``: ``build_tiny_llama`` arguments (default 4 layers, 128 wide).
        """
        self.stage("writing the fictitious-author set and a tiny Llama")
        sizes = write_data(self.out / "data")
        link_tofu(self.out, self.out / "data")
        rows = read_jsonl(self.out / "data" / "finetune.jsonl")
        model_config = {"hidden_size": 128, "num_layers": 4, **model_config}
        build_tiny_llama(self.out / "tiny", qa_texts(rows), **model_config)
        print(
            f"        {sizes['full']} author QA, forget {sizes['forget10']}", flush=True
        )
        self.stage("finetuning the target model (all authors) with src/train.py")
        return self.finetune("target", "finetune")

    def main(self):
        target = self.prepare()
        self.stage("finetuning the retain model (forget authors held out)")
        retain = self.finetune("retain", "retain_finetune")
        self.stage("evaluating the retain model with src/eval.py")
        retain_logs = self.evaluate("retain", retain) / "TOFU_EVAL.json"
        self.stage("evaluating the target model")
        before = self.evaluate("before", target, retain_logs)
        self.stage(
            f"unlearning with ASU_KL (τ {self.temperature}, α {self.alpha}, "
            f"{self.epochs} epochs)"
        )
        after = self.evaluate("after", self.unlearn(target), retain_logs)
        self.stage(
            "evaluating the forget-teacher itself (AttentionSmoothedForCausalLM)"
        )
        teacher = self.evaluate(
            "teacher",
            target,
            retain_logs,
            [
                "+model.model_handler=AttentionSmoothedForCausalLM",
                f"+model.model_args.attention_temperature={self.temperature}",
            ],
        )
        self.report({"before": before, "ASU_KL": after, "teacher": teacher})
        self.samples(target, self.out / "asu_kl")
        self.stage(f"done; everything is under {self.out}")

    def report(self, runs):
        evals = {
            name: json.loads((path / "TOFU_EVAL.json").read_text())
            for name, path in runs.items()
        }
        print(f"\n{'metric':<20}" + "".join(f"{name:>10}" for name in runs))
        for key, label in METRICS.items():
            values = (evals[name].get(key, {}).get("agg_value") for name in runs)
            print(f"{label:<20}" + "".join(f"{_fmt(v):>10}" for v in values))
        print(
            "\nforget quality: KS-test p-value of forget truth ratios against the retain"
            " model's (higher = closer to never trained on the forget authors)."
        )

    def samples(self, before_path, after_path, count=2):
        disable_progress_bar()
        tokenizer = AutoTokenizer.from_pretrained(before_path)
        models = {
            label: AutoModelForCausalLM.from_pretrained(path).eval()
            for label, path in (("before", before_path), ("after", after_path))
        }
        print()
        for row in read_jsonl(self.out / "data" / "forget10.jsonl")[:count]:
            print(f"Q: {row['question']}\n   truth : {row['answer']}")
            for label, model in models.items():
                print(f"   {label:<6}: {_answer(model, tokenizer, row['question'])}")


def _answer(model, tokenizer, question):
    prompt = tokenizer(PROMPT.format(question), return_tensors="pt")
    with torch.no_grad():
        ids = model.generate(**prompt, max_new_tokens=20, do_sample=False)
    return tokenizer.decode(
        ids[0, prompt.input_ids.shape[1] :], skip_special_tokens=True
    )


def _fmt(value):
    if isinstance(value, (int, float)):
        return f"{value:.3g}"
    return "n/a"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(".demo").resolve())
    # the paper's 2.3 is for 7B models; a 4-layer model needs more smoothing to forget
    # see benchmarks/mini_tofu/results: the teacher forgets from τ ≈ 10 at this depth, and the
    # bounded KL needs epochs (τ 32: forget prob 0.215 after 10 epochs, 0.085 after 30)
    parser.add_argument("--temperature", type=float, default=32.0)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args(argv)
    host = host_dir()
    if not is_host(host):
        sys.exit(
            f"No open-unlearning checkout at {host}. Clone it there "
            "(git clone https://github.com/locuslab/open-unlearning ~/open-unlearning) "
            "or set OPEN_UNLEARNING_DIR, then run `make demo` again."
        )
    args.out.mkdir(parents=True, exist_ok=True)
    Demo(host, args.out.resolve(), args.temperature, args.alpha, args.epochs).main()


if __name__ == "__main__":
    main()
