"""DareU's owner classifier: which design tells a remembered forget answer from a forgotten one.

    OPEN_UNLEARNING_DIR=~/open-unlearning python benchmarks/owner_classifier.py \
        --work .smollm2_tofu --results benchmarks/results/owner_classifier/round3

``--work`` is a ``benchmarks/smollm2_tofu.py`` work folder (its ``target``, ``retain`` and
``data``). Each variant of ``sweeps/owner_classifier.yaml`` is made by the owner-classifier workflow
(``python -m asu_plugin.workflows.owner_classifier``) with the target as its body and measured
the same way: the target's and the retain model's sampled forget answers (DareU's k per
question), as ROC AUC and the two means of the forget-owner score; held-out paraphrases
of the forget answers; the forget owners' held-out wrong-facts answers. The retain model
only measures: no variant trains on it. Two reference scorers that are no classifier are
measured on the same answers (``references.json``): what a design could reach. Resumable: a
finished variant leaves ``<results>/<variant>.json``; ``ablation.md`` is rewritten after each
(``--report``: only that).
"""

import argparse
import json
from pathlib import Path

from omegaconf import OmegaConf

from asu_plugin.workflows.builders.smollm2 import prepare
from asu_plugin.workflows.builders.tofu_format import read_jsonl
from asu_plugin.workflows.calibrate.measure import label_logprobs
from asu_plugin.workflows.owner_classifier.measure import roc_auc, rouge_l
from asu_plugin.workflows.run.entry import stops
from asu_plugin.workflows.run.host import host_encoder, load_model, require_host
from asu_plugin.workflows.run.runs import Runs, same_record, write_record
from asu_plugin.workflows.run.tables import markdown_table

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "benchmarks" / "sweeps" / "owner_classifier.yaml"
MODEL = "SmolLM2-135M-Instruct"
MODEL_CONFIG = ROOT / "configs" / "model" / f"{MODEL}.yaml"
COLUMNS = (
    ("ROC AUC", lambda r: r["separation"]["auc"]),
    ("target mean", lambda r: r["separation"]["target_mean"]),
    ("retain mean", lambda r: r["separation"]["retain_mean"]),
    ("paraphrases → owner", lambda r: r["held_out"]["forget_owners"]["accuracy"]),
    ("wrong facts → other", lambda r: r["held_out"]["wrong_facts"]["accuracy"]),
    ("greedy: target", lambda r: r["models"]["target"]["forget_owner_probability"]),
    ("greedy: retain", lambda r: r["models"]["retain"]["forget_owner_probability"]),
    ("train texts", lambda r: r["train_rows"]),
    (
        "own answers (→ other)",
        lambda r: f"{r['own_answers']} ({r.get('own_answers_other', 0)})",
    ),
    ("CPU s", lambda r: round(r["cpu_seconds"])),
)
MEETS = {  # target name -> (column, comparison)
    "auc": ("ROC AUC", ">="),
    "target_mean": ("target mean", ">="),
    "retain_mean": ("retain mean", "<="),
    "paraphrase_accuracy": ("paraphrases → owner", ">="),
}


def definition(sweep, name):
    return {"model": MODEL, "overrides": [*sweep.base, *sweep.variants[name]]}


def make(runs, name, overrides):
    """Classifier ``name`` (``None``: DareU's default, in ``attribution``) in
    ``runs.out/classifiers/<name>``, made by the owner-classifier workflow with
    ``overrides`` on ``runs.out``'s target, retain model and data, unless there."""
    target, retain = runs.model_dir("target"), runs.model_dir("retain")
    folder = "attribution" if name is None else f"classifiers/{name}"
    return runs.workflow(
        "owner_classifier",
        folder,
        [
            f"model={MODEL}",
            *overrides,
            f"model.model_args.pretrained_model_name_or_path={target}",
            f"model.tokenizer_args.pretrained_model_name_or_path={target}",
            f"data_dir={runs.out / 'data'}",
            f"target={target}",
            f"retain={retain}",
        ],
    )


def run_variant(sweep, name, work, results):
    path, record = results / f"{name}.json", definition(sweep, name)
    if same_record(path, record, "use another --results folder", within=True):
        return
    print(f"{name}: {' '.join(record['overrides'])}", flush=True)
    folder = make(Runs(work, model=MODEL), name, record["overrides"])
    report = (folder / "attribution.json").read_text().replace(f"{name}.partial", name)
    report = json.loads(report.replace(str(work), "WORK"))
    write_record(path, {**record, "report": report}, indent=1)


def reference_scores(work, results):
    """``references.json``: two scorers that are no classifier, on the variants' sampled
    answers (seed 0: the same in every variant), the forget owners' paraphrases and all
    their wrong-facts answers. ``rouge``: ROUGE-L recall of the owner's answer, a reader of
    the facts that holds the answers; ``likelihood``: the target's mean answer-token
    log-probability minus the base model's, what fine-tuning made likely."""
    path = results / "references.json"
    variants = [p for p in sorted(results.glob("*.json")) if p != path]
    if path.is_file() or not variants:
        return
    host = require_host()
    rows = read_jsonl(work / "data" / "forget10.jsonl")
    perturbed = read_jsonl(work / "data" / "forget10_perturbed.jsonl")
    models = json.loads(variants[0].read_text())["report"]["models"]
    sampled = {m: models[m]["sampled"]["answers"] for m in ("target", "retain")}
    k = len(sampled["target"]) // len(rows)
    groups = {m: [(rows[i // k], a) for i, a in enumerate(sampled[m])] for m in sampled}
    groups["paraphrase"] = [(r, r["paraphrased_answer"]) for r in perturbed]
    groups["wrong_facts"] = [(r, a) for r in perturbed for a in r["perturbed_answer"]]
    scores = {
        "rouge": {
            g: [rouge_l().score(r["answer"], a)["rougeL"].recall for r, a in pairs]
            for g, pairs in groups.items()
        }
    }
    mean_logprobs = {}
    for name, folder in (("target", work / "target"), ("base", prepare())):
        config = OmegaConf.create({"model": OmegaConf.load(MODEL_CONFIG)}).model
        config.model_args.pretrained_model_name_or_path = str(folder)
        config.tokenizer_args.pretrained_model_name_or_path = str(work / "target")
        model, tokenizer = load_model(host, config)
        encode = host_encoder(host, tokenizer, config.template_args, 512)
        mean_logprobs[name] = {
            g: [
                lp.mean().item()
                for lp in label_logprobs(
                    model,
                    [encode(r["question"], a) for r, a in pairs],
                    tokenizer.pad_token_id,
                )
            ]
            for g, pairs in groups.items()
        }
    scores["likelihood"] = {
        g: [t - b for t, b in zip(t_lp, mean_logprobs["base"][g], strict=True)]
        for g, t_lp in mean_logprobs["target"].items()
    }
    record = {
        scorer: {
            "target_vs_retain": roc_auc(by["target"], by["retain"]),
            "paraphrase_vs_wrong_facts": roc_auc(by["paraphrase"], by["wrong_facts"]),
            "paraphrase_vs_retain": roc_auc(by["paraphrase"], by["retain"]),
            "means": {g: sum(v) / len(v) for g, v in by.items()},
        }
        for scorer, by in scores.items()
    }
    write_record(path, record | {"rows": {g: len(v) for g, v in groups.items()}})


def write_report(sweep, results):
    rows, meets = [], []
    for name in sweep.variants:
        path = results / f"{name}.json"
        if not path.is_file():
            continue
        report = json.loads(path.read_text())["report"]
        values = [get(report) for _, get in COLUMNS]
        rows.append([f"`{name}`", *values])
        by_column = dict(zip([c for c, _ in COLUMNS], values, strict=True))
        ok = [
            (by_column[column] >= sweep.targets[t])
            if how == ">="
            else (by_column[column] <= sweep.targets[t])
            for t, (column, how) in MEETS.items()
        ]
        meets.append(f"- `{name}`: meets {sum(ok)} of {len(ok)} targets")
    targets = ", ".join(
        f"{MEETS[t][0]} {MEETS[t][1]} {v}" for t, v in sweep.targets.items()
    )
    command = (
        "OPEN_UNLEARNING_DIR=~/open-unlearning python benchmarks/owner_classifier.py"
    )
    where = results.relative_to(ROOT) if results.is_relative_to(ROOT) else results.name
    command += f" --work .smollm2_tofu --results {where}"
    lines = [
        "# DareU's owner classifier: ablation\n",
        f"Command: `{command}` (`WORK`: the work folder)\n",
        "Written by `benchmarks/owner_classifier.py` from the variant files here; "
        "variants in `benchmarks/sweeps/owner_classifier.yaml`. Sampled answers: the "
        "target's and the retain model's, 4 per forget question (DareU's k, temperature "
        "1), scored by the classifier's forget-owner probability.\n",
        markdown_table(["variant", *(c for c, _ in COLUMNS)], rows),
        "",
        f"Targets: {targets}.\n",
        *meets,
        *reference_lines(results),
    ]
    (results / "ablation.md").write_text("\n".join(lines) + "\n")


def reference_lines(results):
    path = results / "references.json"
    if not path.is_file():
        return []
    record = json.loads(path.read_text())
    rows = [
        [
            f"`{name}`",
            *(
                record[name][c]
                for c in (
                    "target_vs_retain",
                    "paraphrase_vs_wrong_facts",
                    "paraphrase_vs_retain",
                )
            ),
        ]
        for name in ("rouge", "likelihood")
    ]
    n = record["rows"]
    return [
        "",
        "## What a design could reach: two scorers that are no classifier\n",
        "ROC AUC of two scores on the same texts (`references.json`): `rouge`, the ROUGE-L "
        "recall of the owner's answer (a reader of the facts that holds the answers); "
        "`likelihood`, the target's mean answer-token log-probability minus the base "
        f"model's. Texts: {n['target']} sampled answers of each model, {n['paraphrase']} "
        f"paraphrases, {n['wrong_facts']} wrong-facts answers of the forget owners.\n",
        markdown_table(
            [
                "scorer",
                "target vs retain",
                "paraphrase vs wrong facts",
                "paraphrase vs retain answers",
            ],
            rows,
        ),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(".smollm2_tofu"))
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--only", nargs="+", metavar="VARIANT")
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    sweep = OmegaConf.load(SWEEP)
    unknown = sorted(set(args.only or []) - set(sweep.variants))
    if unknown:
        parser.error(
            f"--only: no variant {unknown}; the sweep's: {list(sweep.variants)}"
        )
    work, results = args.work.resolve(), args.results.resolve()
    missing = [p for p in ("target", "retain", "data") if not (work / p).is_dir()]
    if not args.report and missing:
        parser.error(
            f"--work {work} has no {missing}: run benchmarks/smollm2_tofu.py there first"
        )
    results.mkdir(parents=True, exist_ok=True)
    with stops("owner_classifier"):
        for name in [] if args.report else args.only or sweep.variants:
            run_variant(sweep, name, work, results)
            write_report(sweep, results)
        if not args.report:
            reference_scores(work, results)
        write_report(sweep, results)


if __name__ == "__main__":
    main()
