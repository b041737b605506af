"""One work folder of host runs: train and evaluate through open-unlearning, read the scores.

Every run gets a folder of its own under ``out`` that appears only once the run is complete
(it is written as ``<name>.partial`` and renamed), so "done" is "the folder exists", and an
interrupted run is redone from scratch. Each host run's full output goes to ``logs/<name>.log``.
"""

import json
import shutil
import statistics
import time
from pathlib import Path
from typing import NamedTuple

from asu_plugin.workflows.host import (
    NO_EVAL,
    model_overrides,
    require_host,
    run_host,
    train_overrides,
)


class Recipe(NamedTuple):
    """How long and how fast ``src/train.py`` trains."""

    epochs: float
    lr: float
    batch_size: int

    def overrides(self):
        return [
            f"trainer.args.num_train_epochs={self.epochs}",
            f"trainer.args.learning_rate={self.lr}",
            f"trainer.args.per_device_train_batch_size={self.batch_size}",
            "trainer.args.gradient_accumulation_steps=1",
        ]


class HostRunError(RuntimeError):
    """A host script exited non-zero; the message names its log."""


class Runs:
    """Host runs in ``out``: models in ``out/<name>``, evaluations in ``out/evals/<name>``.

    ``model``: the host model config (``configs/model/<model>.yaml``) every run loads with.
    """

    def __init__(self, out, host=None, device="cpu", model="phi-1_5", quiet=True):
        self.out, self.device, self.model = Path(out).resolve(), device, model
        self.host = require_host(host)
        self.quiet, self.start = quiet, time.time()
        self.out.mkdir(parents=True, exist_ok=True)

    def stage(self, message):
        print(f"[{time.time() - self.start:6.0f}s] {message}", flush=True)

    def run(self, script, name, overrides):
        """``src/<script>`` with ``overrides``; its output goes to ``logs/<name>.log``."""
        log = self.out / "logs" / f"{name}.log"
        log.parent.mkdir(exist_ok=True)
        with open(log, "w") as f:
            output = {"stdout": f, "stderr": f} if self.quiet else {}
            result = run_host(
                self.host, script, overrides, self.out, self.device, **output
            )
        if result.returncode != 0:
            raise HostRunError(
                f"open-unlearning src/{script} failed for {name} "
                f"(exit {result.returncode}); its log: {log}"
            )

    def _complete(self, path, make):
        """``make(partial)`` writes into a fresh ``<path>.partial``, renamed to ``path``."""
        partial = path.with_name(f"{path.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        make(partial)
        shutil.rmtree(path, ignore_errors=True)
        partial.rename(path)
        return path

    def train(self, name, start, overrides, recipe, tokenizer=None):
        """``src/train.py`` from model ``start`` without evaluation; the saved model's folder."""

        def make(partial):
            self.run(
                "train.py",
                name,
                [
                    *overrides,
                    f"task_name={name}",
                    *model_overrides(start, self.model, tokenizer),
                    *train_overrides(self.device),
                    *NO_EVAL,
                    *recipe.overrides(),
                    "trainer.args.logging_steps=50",
                    f"paths.output_dir={partial}",
                ],
            )

        return self._complete(self.out / name, make)

    def trained(self, name):
        return (self.out / name).is_dir()

    def ensure_model(self, name, start, overrides, recipe, tokenizer=None):
        """``train(...)`` unless ``out/<name>`` exists already."""
        if self.trained(name):
            return self.out / name
        return self.train(name, start, overrides, recipe, tokenizer)

    def evaluate(self, name, model, retain_logs=None, extra=(), tokenizer=None):
        """``src/eval.py`` (TOFU) of ``model`` into ``evals/<name>``.

        The host writes its results after every metric and reuses those already in its
        output folder, so a fresh folder is what keeps runs from mixing.
        """

        def make(partial):
            self.run(
                "eval.py",
                f"eval_{name}",
                [
                    "experiment=eval/tofu/default",
                    f"task_name={name}",
                    *model_overrides(model, self.model, tokenizer),
                    f"model.model_args.device_map={self.device}",
                    f"retain_logs_path={retain_logs or 'null'}",
                    f"paths.output_dir={partial}",
                    *extra,
                ],
            )

        return self._complete(self.out / "evals" / name, make)

    def evaluated(self, name):
        return (self.out / "evals" / name).is_dir()

    def ensure_eval(self, name, model, retain_logs=None, extra=(), tokenizer=None):
        """``evaluate(...)`` unless ``evals/<name>`` exists already; its metrics."""
        if not self.evaluated(name):
            self.evaluate(name, model, retain_logs, extra, tokenizer)
        return scores(self.out / "evals" / name)["metrics"]


def scores(eval_dir):
    """``{"metrics": ..., "summary": [...]}``: every ``agg_value`` of the host's
    ``*_EVAL.json`` (retain metrics included) and, for TOFU, the repetition rate of the
    generated forget answers (``forget_repetition``); the names in its ``*_SUMMARY.json``."""
    metrics, summary = {}, []
    for path in sorted(Path(eval_dir).glob("*_EVAL.json")):
        logs = json.loads(path.read_text())
        metrics.update(
            (name, log["agg_value"])
            for name, log in logs.items()
            if isinstance(log, dict) and "agg_value" in log
        )
        rouge = logs.get("forget_Q_A_ROUGE", {}).get("value_by_index")
        if rouge:
            metrics["forget_repetition"] = repetition(
                a["generation"] for a in rouge.values()
            )
    for path in sorted(Path(eval_dir).glob("*_SUMMARY.json")):
        names = json.loads(path.read_text())
        metrics.update(names)
        summary += list(names)
    return {"metrics": metrics, "summary": summary}


def repetition(texts):
    """Mean share of repeated words: 0 when no word repeats; "born born born" approaches 1."""
    words = [text.split() for text in texts]
    return statistics.mean(1 - len(set(w)) / len(w) if w else 1.0 for w in words)
