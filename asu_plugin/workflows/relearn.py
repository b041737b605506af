"""Relearning attack: does what a model unlearned come back after a little finetuning?

The forget split's questions are split (deterministically, by question) into a relearn part
and a held-out part. Each model is finetuned with the host's ``src/train.py`` (``finetune``
trainer, constant learning rate) on the relearn part for each number of ``steps``, and the
held-out part is scored with the host's ``src/eval.py`` after each. Run it on the target and
on the retain model too: the retain model never saw the forget set, so its curve is how much
of the held-out part the relearn part alone teaches (the fair baseline).

Resumable: ``setup.json`` records all that defines the folder (another configuration is
refused naming the fields); an evaluation ``evals/<model>_steps<N>`` counts once its
``relearn.json`` (the model's folder and the steps) is written. After each one
``results.md`` and ``results.png`` cover all finished evaluations.

``python -m asu_plugin.workflows.relearn task_name=... data_dir=... models={target: ..., ...}``
(config: ``configs/relearn/default.yaml``).
"""

import hashlib
import json
import re
import shlex
import shutil
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from asu_plugin.core.checks import check_count, check_positive
from asu_plugin.workflows.builders.tofu_format import read_jsonl, write
from asu_plugin.workflows.run.entry import BadSettings, checked, workflow
from asu_plugin.workflows.run.host import (
    describe_device,
    host_commit,
    link_tofu,
    resolve_device,
)
from asu_plugin.workflows.run.runs import (
    Recipe,
    Runs,
    same_record,
    scores,
    write_record,
)
from asu_plugin.workflows.run.tables import markdown_table

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
PLOTTED = (  # held-out metrics, drawn when present
    "forget_Q_A_Prob",
    "forget_Q_A_ROUGE",
    "forget_truth_ratio",
    "forget_quality",
)


def split_names(forget_split):
    """The data configs written for ``forget_split``: relearned, held out and its perturbed."""
    return {
        "relearn": f"{forget_split}_relearn",
        "heldout": f"{forget_split}_heldout",
        "heldout_perturbed": f"{forget_split}_heldout_perturbed",
    }


def split_questions(questions, fraction, seed=0):
    """``(relearn, heldout)``: disjoint sets of the distinct ``questions``, ``relearn``
    holding ``round(fraction * n)`` of them, chosen by a seeded hash of each question (the
    same for any order of the rows)."""
    distinct = sorted(
        set(questions),
        key=lambda q: hashlib.sha256(f"{seed}\0{q}".encode()).hexdigest(),
    )
    count = round(fraction * len(distinct)) if 0 < fraction < 1 else 0
    if not 0 < count < len(distinct):
        raise ValueError(
            f"relearn_fraction must leave both parts of the {len(distinct)} forget "
            f"questions non-empty (a number in (0, 1)), got {fraction}"
        )
    return set(distinct[:count]), set(distinct[count:])


def write_split_data(data_dir, out_dir, forget_split, fraction, seed=0):
    """Copy the TOFU-format folder ``data_dir`` to ``out_dir`` with ``split_names``' three
    configs added; their rows and a digest of them."""
    data_dir = Path(data_dir)
    files = {p.stem: read_jsonl(p) for p in sorted(data_dir.glob("*.jsonl"))}
    needed = (forget_split, f"{forget_split}_perturbed")
    missing = [f"{name}.jsonl" for name in needed if name not in files]
    if missing:
        raise ValueError(
            f"data_dir {data_dir} lacks {missing}: it must be a TOFU-format folder "
            "(locuslab/TOFU's jsonl files) holding the forget split and its _perturbed file"
        )
    forget, perturbed = files[forget_split], files[f"{forget_split}_perturbed"]
    relearn, heldout = split_questions([r["question"] for r in forget], fraction, seed)
    unscored = sorted(heldout - {r["question"] for r in perturbed})
    if unscored:
        raise ValueError(
            f"{forget_split}_perturbed.jsonl lacks {len(unscored)} forget questions "
            f"(first: {unscored[0]!r}): the truth ratio needs every held-out one"
        )
    names = split_names(forget_split)
    parts = {
        names["relearn"]: [r for r in forget if r["question"] in relearn],
        names["heldout"]: [r for r in forget if r["question"] in heldout],
        names["heldout_perturbed"]: [r for r in perturbed if r["question"] in heldout],
    }
    write(out_dir, {**files, **parts})
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return {"questions": {k: len(v) for k, v in parts.items()}, "digest": digest[:16]}


def check_config(cfg):
    """``BadSettings`` naming every bad value, before anything runs."""
    _, problems = checked(
        {
            "steps": lambda: _check_steps(list(cfg.steps)),
            "models": lambda: _check_models(cfg.models),
            "retain_model": lambda: _check_retain_model(cfg.retain_model, cfg.models),
            "learning_rate": lambda: check_positive("learning_rate", cfg.learning_rate),
            "batch_size": lambda: check_count("batch_size", cfg.batch_size),
            "device": lambda: resolve_device(cfg.device),
        }
    )
    if problems:
        raise BadSettings(problems)


def _check_steps(steps):
    if not steps or not all(isinstance(s, int) and s >= 0 for s in steps):
        raise ValueError(f"steps must be a list of integers >= 0, got {steps}")


def _check_models(models):
    if not models:
        raise ValueError("models must name at least one model: {name: folder, ...}")
    for name in models:
        if not NAME.fullmatch(str(name)):
            raise ValueError(
                f"model name {name!r} must be letters, digits, '_', '.' or '-' "
                "(it names folders)"
            )


def _check_retain_model(retain_model, models):
    if retain_model is not None and retain_model not in models:
        raise ValueError(
            f"retain_model {retain_model!r} is not in models ({list(models)})"
        )


def model_paths(cfg):
    """Each model's folder made absolute (the host runs elsewhere); a hub id as it is."""
    paths = {}
    for name, path in cfg.models.items():
        folder = Path(str(path)).expanduser()
        paths[name] = str(folder.resolve()) if folder.is_dir() else str(path)
    return paths


def setup_record(cfg, data, host_version, device):
    """All that defines an output folder but the models: ``setup.json``."""
    fields = (
        "forget_split", "relearn_fraction", "split_seed", "retain_model", "model_config",
        "tokenizer", "learning_rate", "batch_size", "drop_metrics", "train_overrides",
        "eval_overrides",
    )  # fmt: skip
    values = OmegaConf.to_container(cfg, resolve=True)
    return {
        **{key: values[key] for key in fields},
        "device": device,
        "data": data,
        "host": host_version,
    }


def relearn_overrides(cfg, steps):
    """``src/train.py``: the host's TOFU finetuning on the relearn part for ``steps``."""
    return [
        "experiment=finetune/tofu/default",
        f"data.train.TOFU_QA_full.args.hf_args.name={split_names(cfg.forget_split)['relearn']}",
        "++trainer.args.lr_scheduler_type=constant",
        f"++trainer.args.max_steps={steps}",  # overrides the epochs
    ]


def eval_overrides(cfg):
    """``src/eval.py``: the held-out part, without the metrics ``drop_metrics`` names."""
    drops = [*cfg.drop_metrics, *([] if cfg.retain_model else ["forget_quality"])]
    return [
        f"forget_split={split_names(cfg.forget_split)['heldout']}",
        *(f"~eval.tofu.metrics.{m}" for m in dict.fromkeys(drops)),
        *cfg.eval_overrides,
    ]


def point_name(model, steps):
    return f"{model}_steps{steps}"


def order(cfg):
    """``(model, steps)`` in run order: the retain model's step 0 first (the reference)."""
    points = [(m, s) for m in cfg.models for s in sorted(set(cfg.steps))]
    if cfg.retain_model is not None:
        first = (cfg.retain_model, 0)
        points = [first] + [p for p in points if p != first]
    return points


def run_relearn(cfg, runs, data, command=""):
    """Every ``order(cfg)`` point not finished yet in ``runs``; the finished rows.

    ``command`` (the command line) heads ``results.md``."""
    runs.claim(setup_record(cfg, data, host_commit(runs.host), runs.device))
    recipe = Recipe(epochs=1, lr=cfg.learning_rate, batch_size=cfg.batch_size)
    paths, rows = model_paths(cfg), []
    for model, steps in order(cfg):
        name = point_name(model, steps)
        folder = runs.eval_dir(name)
        record = {"model": model, "path": paths[model], "steps": steps}
        if not same_record(folder / "relearn.json", record, "use another out_dir"):
            start = paths[model]
            if steps:
                runs.stage(f"{model}: relearning for {steps} steps")
                start = runs.train(
                    name,
                    start,
                    relearn_overrides(cfg, steps),
                    recipe,
                    cfg.tokenizer,
                    extra=cfg.train_overrides,
                )
            runs.stage(f"{model}: scoring the held-out part after {steps} steps")
            reference = cfg.retain_model and point_name(cfg.retain_model, 0)
            retain_logs = reference not in (None, name) and runs.eval_logs(reference)
            runs.evaluate(name, start, retain_logs, eval_overrides(cfg), cfg.tokenizer)
            write_record(folder / "relearn.json", record)
            if steps and not cfg.keep_models:
                shutil.rmtree(start)
        rows.append({**record, **scores(folder)["metrics"]})
        write_results(runs.out, cfg, data, rows, command)
    return rows


def write_results(out, cfg, data, rows, command=""):
    """``results.md`` (a row per model and steps) and ``results.png`` (PLOTTED vs steps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(rows, key=lambda r: (list(cfg.models).index(r["model"]), r["steps"]))
    metrics = [m for m in PLOTTED if any(r.get(m) is not None for r in rows)]
    table = markdown_table(
        ["model", "steps", *metrics],
        [[r["model"], r["steps"], *(r.get(m) for m in metrics)] for r in rows],
    )
    sizes = data["questions"]
    names = split_names(cfg.forget_split)
    (out / "results.md").write_text(
        f"# Relearning attack: {cfg.task_name}\n\n"
        + (f"Command: `{command}`\n\n" if command else "")
        + f"Finetuned on {sizes[names['relearn']]} questions of {cfg.forget_split} "
        f"(learning rate {cfg.learning_rate:g}, constant; batch {cfg.batch_size}); "
        f"scored on the other {sizes[names['heldout']]}.\n\n{table}\n"
    )

    fig, axes = plt.subplots(
        1, len(metrics), figsize=(4 * len(metrics), 3.5), squeeze=False
    )
    for ax, metric in zip(axes[0], metrics, strict=True):
        for model in cfg.models:
            mine = [
                r for r in rows if r["model"] == model and r.get(metric) is not None
            ]
            if mine:
                ax.plot(
                    [r["steps"] for r in mine],
                    [r[metric] for r in mine],
                    marker="o",
                    label=model,
                )
        ax.set(xlabel="relearning steps", title=f"held-out {metric}")
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out / "results.png", dpi=120)
    plt.close(fig)


EXAMPLE = (
    "python -m asu_plugin.workflows.relearn task_name=smollm2 data_dir=~/TOFU "
    "'models={target: saves/target, retain: saves/retain, ASU_KL: saves/asu_kl}' "
    "retain_model=retain model_config=SmolLM2-135M-Instruct"
)


@workflow("relearn", check_config, EXAMPLE)
def main(cfg):
    out = Path(cfg.out_dir).resolve()
    runs = Runs(out, cfg.host_dir, cfg.device, cfg.model_config, quiet=True)
    print(f"relearn: {describe_device(runs.device)}", flush=True)
    data = write_split_data(
        cfg.data_dir,
        out / "data",
        cfg.forget_split,
        cfg.relearn_fraction,
        cfg.split_seed,
    )
    link_tofu(out, out / "data")
    overrides = HydraConfig.get().overrides.task
    command = shlex.join(["python", "-m", "asu_plugin.workflows.relearn", *overrides])
    run_relearn(cfg, runs, data, command)
    print(f"results: {out / 'results.md'}, {out / 'results.png'}")


if __name__ == "__main__":
    main()
