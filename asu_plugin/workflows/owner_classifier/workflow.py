"""DareU's owner classifier: train it on TOFU-format data, save it, report how it attributes.

Labels are the data owners (TOFU: ``rows_per_owner`` consecutive rows of the owner split
per author, named ``author_<k>``; or each row's ``owner_key`` field) and ``other``, text no
owner wrote (``other_splits``, e.g. TOFU's real_authors / world_facts), so that a generic
answer is not forced onto an owner. Each text is what DareU's reward reads: question +
answer rendered with the model config's template (the host's ``preprocess_chat_instance``)
and decoded without special tokens. With ``swap_questions`` every answer is also paired
with another owner's question under the answer's label: within a rollout group the question
is fixed, so only an attribution carried by the response gives the reward any signal.
With ``wrong_answer_key`` (TOFU: ``perturbed_answer``) each contrast row's paraphrase
trains as its owner's and its first wrong-facts answer as ``other``: it names the author, as
the retain model's answers do, so the classifier must read the facts, not the name. With
``forget_contrast`` the eval rows' (the forget owners') first wrong-facts answers train as
``other`` too, and their second ones are held out.

The classifier is the model config's causal LM with a sequence-classification head
(``AutoModelForSequenceClassification``: the last non-pad token's state, the one state of a
causal LM that has read the whole text); ``train_body`` false freezes the LM and trains the
head alone. Saved to ``<out_dir>/classifier`` (model, tokenizer, ``config.id2label`` and
``config.forget_owners``: the owners of ``forget_split``'s rows).

Reported (``attribution.md`` / ``.json``): accuracy on held-out text (the eval splits'
paraphrased answers, by owner; held-out ``other`` rows; the second wrong-facts answers)
and, for the ``target`` and ``retain`` models, the attribution of their greedy answers to
the forget questions: the mean forget-owner probability (minus DareU's reward) and the
top-label shares.

``python -m asu_plugin.workflows.owner_classifier model=<host model config> data_dir=...``
(config: ``configs/owner_classifier/default.yaml``).
"""

import shlex
import sys
import time
from pathlib import Path

import torch

from asu_plugin.core.checks import check_count
from asu_plugin.dareu import OTHER, READS, OwnerClassifier
from asu_plugin.workflows.builders.tofu_format import read_jsonl, split_files
from asu_plugin.workflows.owner_classifier.examples import (
    examples,
    forget_owners,
    owner_names,
    render,
)
from asu_plugin.workflows.owner_classifier.measure import (
    held_out_report,
    model_attribution,
    own_answers,
    separation,
)
from asu_plugin.workflows.owner_classifier.report import write_report
from asu_plugin.workflows.owner_classifier.training import (
    build_classifier,
    train_classifier,
)
from asu_plugin.workflows.run.entry import workflow
from asu_plugin.workflows.run.host import (
    describe_device,
    host_encoder,
    host_module,
    load_model,
    require_host,
    resolve_device,
)


def check_inputs(cfg):
    """Split files, owners and settings of ``cfg``, checked before any model loads."""
    if not 0 <= cfg.other_holdout < 1:
        raise ValueError(f"other_holdout must be in [0, 1), got {cfg.other_holdout!r}")
    if not cfg.other_splits:
        raise ValueError(
            "other_splits is empty: the 'other' class needs text no owner wrote"
        )
    for name in ("epochs", "batch_size", "max_length", "max_new_tokens"):
        check_count(name, cfg[name])
    check_count("wrong_answers", cfg.wrong_answers)
    check_count("num_samples", cfg.num_samples, least=2)
    check_count("self_answers", cfg.self_answers, least=0)
    recall = cfg.self_answer_recall
    if recall is not None and (
        isinstance(recall, bool)
        or not isinstance(recall, int | float)
        or not 0 < recall <= 1
    ):
        raise ValueError(
            f"self_answer_recall must be null or a number in (0, 1], got {recall!r}"
        )
    if cfg.reads not in READS:
        raise ValueError(f"reads must be one of {READS}, got {cfg.reads!r}")
    if cfg.self_answers and cfg.target is None:
        raise ValueError(
            f"self_answers={cfg.self_answers} samples the target's answers: set target="
        )
    resolve_device(cfg.device)
    splits = [
        cfg.owner_split,
        cfg.forget_split,
        *cfg.other_splits,
        *cfg.contrast_splits,
        *cfg.eval_splits,
    ]
    files = split_files(cfg.data_dir, list(dict.fromkeys(splits)))
    rows = {split: read_jsonl(path) for split, path in files.items()}
    names = owner_names(rows[cfg.owner_split], cfg.rows_per_owner, cfg.owner_key)
    forget = forget_owners(
        rows[cfg.owner_split], names, rows[cfg.forget_split], cfg.forget_split
    )
    for role in ("target", "retain"):
        path = cfg[role]
        if path is not None and not (Path(path).expanduser() / "config.json").is_file():
            raise FileNotFoundError(f"{role}={path}: no model folder (no config.json)")
    return rows, names, forget


def model_config(cfg, path):
    """The model config with ``path`` as the model to load."""
    model_cfg = cfg.model.copy()
    model_cfg.model_args.pretrained_model_name_or_path = str(path)
    return model_cfg


def make_classifier(cfg, command):
    """Check the inputs, train and save the classifier, measure it; the record."""
    rows, names, forget = check_inputs(cfg)
    host, device = require_host(), resolve_device(cfg.device)
    print(f"owner_classifier: {describe_device(device, cfg.num_threads)}", flush=True)
    torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    tokenizer = host_module(host, "model").get_tokenizer(cfg.model.tokenizer_args)
    encode = host_encoder(host, tokenizer, cfg.model.template_args, cfg.max_length)
    models = {
        role: load_model(host, model_config(cfg, cfg[role]), device)
        for role in ("target", "retain")
        if cfg[role] is not None
    }
    own = []
    if cfg.self_answers:
        own = own_answers(*models["target"], encode, rows[cfg.owner_split], names, cfg)
    train, held_out = examples(cfg, rows, names, own)
    labels = [*dict.fromkeys(names), OTHER]
    index = {label: i for i, label in enumerate(labels)}
    start_cpu = time.process_time()
    model = build_classifier(cfg, labels, tokenizer, device)
    train_texts = [render(encode, tokenizer, q, a, cfg.reads) for q, a, _ in train]
    losses = train_classifier(
        model, tokenizer, train_texts, [index[label] for *_, label in train], cfg
    )
    out = Path(cfg.out_dir)
    folder = out / "classifier"
    model.config.forget_owners, model.config.reads = forget, cfg.reads
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    classifier = OwnerClassifier(folder, max_length=cfg.max_length).load(device)
    held_texts = [render(encode, tokenizer, q, a, cfg.reads) for q, a, *_ in held_out]
    record = {
        "command": command,
        "classifier": str(folder),
        "model": str(cfg.model.model_args.pretrained_model_name_or_path),
        "reads": cfg.reads,
        "labels": labels,
        "forget_owners": forget,
        "train_rows": len(train),
        "own_answers": len(own),
        "own_answers_other": sum(label == OTHER for *_, label in own),
        "train_loss": {"first": losses[0], "last": losses[-1]},
        "cpu_seconds": time.process_time() - start_cpu,
        "held_out": held_out_report(classifier, held_out, held_texts),
    }
    prompts = [
        encode(r["question"], r["answer"], generate=True)["input_ids"]
        for r in rows[cfg.forget_split]
    ]
    record["models"] = {
        role: model_attribution(classifier, *models[role], prompts, cfg)
        for role in models
    }
    record["separation"] = separation(record["models"])
    write_report(out, command, record)
    return record


EXAMPLE = (
    "python -m asu_plugin.workflows.owner_classifier model=SmolLM2-135M-Instruct "
    "data_dir=~/TOFU target=saves/target retain=saves/retain"
)


@workflow("owner_classifier", check_inputs, EXAMPLE, groups=["model"])
def main(cfg):
    command = "python -m asu_plugin.workflows.owner_classifier " + shlex.join(
        sys.argv[1:]
    )
    record = make_classifier(cfg, command)
    print(f"held-out accuracy: {record['held_out']['all']['accuracy']:.3f}")
    print(f"report: {Path(cfg.out_dir).resolve() / 'attribution.md'}")
