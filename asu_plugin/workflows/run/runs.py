"""One work folder of host runs: train and evaluate through open-unlearning, read the scores.

Every run gets a folder of its own under ``out`` that appears only once the run is complete
(it is written as ``<name>.partial`` and renamed), so "done" is "the folder exists", and an
interrupted run is redone from scratch. Each host run's full output goes to ``logs/<name>.log``.
A JSON record (``claim``, ``same_record``) keeps a folder to the configuration that made it.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

from asu_plugin.workflows.run.entry import WorkflowError
from asu_plugin.workflows.run.fluency import empty_share, repetition
from asu_plugin.workflows.run.host import (
    NO_EVAL,
    device_overrides,
    model_overrides,
    require_host,
    resolve_device,
    run_host,
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


class HostRunError(WorkflowError, RuntimeError):
    """A host script exited non-zero; the message names its log."""


class RecordMismatch(WorkflowError, ValueError):
    """A folder holds the results of another configuration; the message names the fields."""


def same_record(path, record, advice, within=False):
    """Whether ``path`` holds ``record`` (False: no record there yet).

    A record of another configuration raises ``RecordMismatch`` naming each differing
    field, recorded and now, followed by ``advice``. ``within``: the file holds more than
    the record (e.g. its results too); only ``record``'s fields are compared.
    """
    path = Path(path)
    if not path.is_file():
        return False
    old = json.loads(path.read_text())
    if within:
        old = {key: old.get(key) for key in record}
    new = json.loads(json.dumps(record, default=str))
    changed = [key for key in {**old, **new} if old.get(key) != new.get(key)]
    if changed:
        fields = "; ".join(
            f"{key}: {old.get(key)!r} recorded, {new.get(key)!r} now" for key in changed
        )
        raise RecordMismatch(
            f"{path} belongs to another configuration ({fields}); {advice}"
        )
    return True


def write_record(path, record, indent=2):
    """``record`` as JSON at ``path``, written whole or not at all."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=indent, default=str))
    tmp.replace(path)


class Runs:
    """Host runs in ``out``: models in ``out/<name>``, evaluations in ``out/evals/<name>``.

    ``device``: ``auto`` (the GPU when torch sees one), ``cpu`` or ``cuda``; ``model``: the
    host model config (``configs/model/<model>.yaml``) every run loads with; ``work_dir``:
    where the host scripts run (their relative data paths start there; default ``out``).
    """

    def __init__(
        self, out, host=None, device="auto", model="phi-1_5", quiet=True, work_dir=None
    ):
        self.out, self.model = Path(out).resolve(), model
        self.device = resolve_device(device)
        self.work_dir = Path(work_dir).resolve() if work_dir else self.out
        self.host = require_host(host)
        self.quiet, self.start = quiet, time.time()
        self.out.mkdir(parents=True, exist_ok=True)

    def stage(self, message):
        print(f"[{time.time() - self.start:6.0f}s] {message}", flush=True)

    def claim(self, setup):
        """Keep ``out`` to ``setup`` (a JSON-able dict), recorded in ``out/setup.json``.

        What every run here starts from (data, base models) is defined by ``setup``, so
        another ``setup`` in the same folder raises ``RecordMismatch`` naming the fields.
        """
        path = self.out / "setup.json"
        if not same_record(path, setup, "use another work folder or delete this one"):
            write_record(path, setup)

    def model_dir(self, name):
        return self.out / name

    def eval_dir(self, name):
        return self.out / "evals" / name

    def eval_logs(self, name):
        """The host's TOFU logs in ``evals/<name>``: what ``retain_logs`` takes."""
        return self.eval_dir(name) / "TOFU_EVAL.json"

    def run(self, script, name, overrides):
        """``src/<script>`` with ``overrides``; its output goes to ``logs/<name>.log``."""
        log = self.out / "logs" / f"{name}.log"
        log.parent.mkdir(exist_ok=True)
        with open(log, "w") as f:
            output = {"stdout": f, "stderr": f} if self.quiet else {}
            result = run_host(
                self.host, script, overrides, self.work_dir, self.device, **output
            )
        if result.returncode != 0:
            raise HostRunError(
                f"open-unlearning src/{script} failed for {name} "
                f"(exit {result.returncode}); its log: {log}"
            )

    def workflow(self, workflow, name, overrides):
        """``out/<name>``: ``python -m asu_plugin.workflows.<workflow> overrides`` with its
        ``out_dir`` there, unless it is complete already; its output goes to
        ``logs/<name>.log``."""
        path, log = self.out / name, self.out / "logs" / f"{name}.log"

        def make(partial):
            command = [sys.executable, "-m", f"asu_plugin.workflows.{workflow}"]
            command += [*overrides, f"device={self.device}", f"out_dir={partial}"]
            env = {**os.environ, "OPEN_UNLEARNING_DIR": str(self.host)}
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "w") as f:
                result = subprocess.run(command, stdout=f, stderr=f, env=env)
            if result.returncode:
                raise WorkflowError(
                    f"{workflow} failed for {name} (exit {result.returncode}); its log: {log}"
                )

        return path if path.is_dir() else self.complete(path, make)

    def complete(self, path, make):
        """``make(partial)`` writes into a fresh ``<path>.partial``, renamed to ``path``
        (``path`` appears only once complete)."""
        partial = path.with_name(f"{path.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        make(partial)
        shutil.rmtree(path, ignore_errors=True)
        partial.rename(path)
        return path

    def train(
        self,
        name,
        start,
        overrides,
        recipe=None,
        tokenizer=None,
        logging_steps=50,
        extra=(),
        to=None,
    ):
        """``src/train.py`` from model ``start`` without evaluation into ``to`` (default
        ``out/<name>``); the saved model's folder.

        ``overrides`` first, then the model, device and recipe ones (``None``: the
        experiment's own), then ``extra`` (the user's, which win)."""

        def make(partial):
            self.run(
                "train.py",
                name,
                [
                    *overrides,
                    f"task_name={name}",
                    *model_overrides(start, self.model, tokenizer),
                    *device_overrides(self.device),
                    *NO_EVAL,
                    *(recipe.overrides() if recipe else ()),
                    f"trainer.args.logging_steps={logging_steps}",
                    f"paths.output_dir={partial}",
                    *extra,
                ],
            )

        return self.complete(Path(to) if to else self.model_dir(name), make)

    def trained(self, name):
        return self.model_dir(name).is_dir()

    def ensure_model(self, name, start, overrides, recipe, stage=None, **train):
        """``train(...)`` unless ``out/<name>`` exists already; ``stage`` is printed first."""
        if self.trained(name):
            return self.model_dir(name)
        if stage:
            self.stage(stage)
        return self.train(name, start, overrides, recipe, **train)

    def evaluate(
        self,
        name,
        model,
        retain_logs=None,
        extra=(),
        tokenizer=None,
        experiment="eval/tofu/default",
        to=None,
    ):
        """``src/eval.py`` (``experiment``) of ``model`` into ``to`` (default
        ``evals/<name>``); ``extra``: overrides that come last.

        The host writes its results after every metric and reuses those already in its
        output folder, so a fresh folder is what keeps runs from mixing.
        """

        def make(partial):
            self.run(
                "eval.py",
                f"eval_{name}",
                [
                    f"experiment={experiment}",
                    f"task_name={name}",
                    *model_overrides(model, self.model, tokenizer),
                    f"model.model_args.device_map={self.device}",
                    f"retain_logs_path={retain_logs or 'null'}",
                    f"paths.output_dir={partial}",
                    *extra,
                ],
            )

        return self.complete(Path(to) if to else self.eval_dir(name), make)

    def evaluated(self, name):
        return self.eval_dir(name).is_dir()

    def ensure_eval(
        self, name, model, retain_logs=None, extra=(), tokenizer=None, stage=None
    ):
        """``evaluate(...)`` unless ``evals/<name>`` exists already (``stage`` is printed
        first); its metrics."""
        if not self.evaluated(name):
            if stage:
                self.stage(stage)
            self.evaluate(name, model, retain_logs, extra, tokenizer)
        return scores(self.eval_dir(name))["metrics"]


def scores(eval_dir):
    """``{"metrics": ..., "summary": [...]}``: every ``agg_value`` of the host's
    ``*_EVAL.json`` (retain metrics included) and, for TOFU, the repetition rate and the
    empty share of the generated forget answers (``forget_repetition``, ``forget_empty``);
    the names in its ``*_SUMMARY.json``."""
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
            answers = [a["generation"] for a in rouge.values()]
            metrics["forget_repetition"] = repetition(answers)
            metrics["forget_empty"] = empty_share(answers)
    for path in sorted(Path(eval_dir).glob("*_SUMMARY.json")):
        names = json.loads(path.read_text())
        metrics.update(names)
        summary += list(names)
    return {"metrics": metrics, "summary": summary}
