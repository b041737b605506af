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

``python -m asu_plugin.workflows.attribution model=<host model config> data_dir=...``
(config: ``configs/attribution/default.yaml``).
"""

import json
import random
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from transformers import AutoModelForSequenceClassification

from asu_plugin.core.checks import check_count
from asu_plugin.core.inputs import IGNORE_INDEX, responses
from asu_plugin.dareu import OTHER, READS, OwnerClassifier, read_texts
from asu_plugin.workflows.calibrate import split_files
from asu_plugin.workflows.calibration.measure import host_encoder
from asu_plugin.workflows.entry import workflow
from asu_plugin.workflows.host import (
    describe_device,
    host_module,
    require_host,
    resolve_device,
)
from asu_plugin.workflows.tables import markdown_table
from asu_plugin.workflows.tofu_format import read_jsonl


def owner_names(rows, rows_per_owner, owner_key) -> list[str]:
    """Each owner row's owner: its ``owner_key`` field, else ``author_<row // rows_per_owner>``."""
    if owner_key is not None:
        for i, row in enumerate(rows):
            if owner_key not in row:
                raise ValueError(
                    f"owner_key={owner_key!r}: owner row {i} has no such field "
                    f"(fields: {sorted(row)})"
                )
        names = [str(row[owner_key]) for row in rows]
        if OTHER in names:
            raise ValueError(
                f"{OTHER!r} is the label of text no owner wrote, not an owner"
            )
        return names
    if (
        isinstance(rows_per_owner, bool)
        or not isinstance(rows_per_owner, int)
        or rows_per_owner < 1
        or len(rows) % rows_per_owner
    ):
        raise ValueError(
            f"rows_per_owner must be an integer >= 1 dividing the {len(rows)} owner "
            f"rows, got {rows_per_owner!r} (TOFU: 20; or set owner_key)"
        )
    return [f"author_{i // rows_per_owner}" for i in range(len(rows))]


def forget_owners(owner_rows, names, forget_rows, forget_split) -> list[str]:
    """The owners of ``forget_rows`` (matched on question and answer), in order."""
    owner_of = {
        (r["question"], r["answer"]): n for r, n in zip(owner_rows, names, strict=True)
    }
    missing = [
        r["question"]
        for r in forget_rows
        if (r["question"], r["answer"]) not in owner_of
    ]
    if missing:
        raise ValueError(
            f"{len(missing)} {forget_split} row(s) are not owner rows, e.g. {missing[0]!r}: "
            "the forget split must be part of the owner split"
        )
    return list(
        dict.fromkeys(owner_of[(r["question"], r["answer"])] for r in forget_rows)
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


def examples(cfg, rows, names, own_answers=()):
    """``(train, held_out)`` lists of ``(question, answer, label)``; ``own_answers``:
    the target's ``(question, answer, owner)`` samples, trained as their owner's."""
    rng = random.Random(cfg.seed)
    owner_rows = rows[cfg.owner_split]
    train = [
        (r["question"], r["answer"], n) for r, n in zip(owner_rows, names, strict=True)
    ]
    train += list(own_answers)
    other = [
        (r["question"], r["answer"], OTHER) for s in cfg.other_splits for r in rows[s]
    ]
    rng.shuffle(other)
    held = round(len(other) * cfg.other_holdout)
    held_out, train = other[:held], train + other[held:]
    if cfg.swap_questions and cfg.reads != "response":
        questions = [(q, label) for q, _, label in train]
        swapped = []
        for _, answer, label in train:
            question, owner = rng.choice(questions)
            while owner == label:
                question, owner = rng.choice(questions)
            swapped.append((question, answer, label))
        train += swapped
    held_out = [(*x, "other") for x in held_out]
    owner_of = {r["question"]: n for r, n in zip(owner_rows, names, strict=True)}
    for split in cfg.contrast_splits:
        pairs = contrast_pairs(cfg, rows[split], owner_of, count=cfg.wrong_answers)
        train += [x[:3] for x in pairs]
    for split in cfg.eval_splits:
        trained = cfg.wrong_answers if cfg.forget_contrast else 0
        if trained:  # the first wrong-facts answers train, the next one is held out
            pairs = contrast_pairs(cfg, rows[split], owner_of, count=trained)
            train += [x[:3] for x in pairs if x[3] == "wrong_facts"]
        held_out += contrast_pairs(cfg, rows[split], owner_of, trained)
    if not any(kind == "paraphrase" for *_, kind in held_out):
        raise ValueError(
            f"no row of {list(cfg.eval_splits)} has an owner question and a "
            f"{cfg.eval_answer_key!r}: nothing to measure held-out accuracy on"
        )
    return train, held_out


def contrast_pairs(cfg, rows, owner_of, first=0, count=1):
    """Per owner row: its paraphrased answer (the owner's) and its wrong-facts answers
    ``first`` to ``first + count`` (``other``), as ``(question, answer, label, kind)``."""
    pairs = []
    for row in rows:
        question = row["question"]
        if question not in owner_of:
            continue
        if cfg.eval_answer_key in row:
            answer = row[cfg.eval_answer_key]
            pairs.append((question, answer, owner_of[question], "paraphrase"))
        answers = row.get(cfg.wrong_answer_key) if cfg.wrong_answer_key else None
        answers = [answers] if isinstance(answers, str) else list(answers or [])
        chosen = answers[first : first + count]
        pairs += [(question, a, OTHER, "wrong_facts") for a in chosen]
    return pairs


def render(encode, tokenizer, question, answer, reads) -> str:
    """The text the reward reads of a QA pair: the templated pair (or its answer alone,
    as ``reads`` says) without special tokens."""
    item = encode(question, answer)
    start = int((item["labels"] != IGNORE_INDEX).int().argmax())
    ids = item["input_ids"]
    return read_texts(tokenizer, [ids[:start]], [ids[start:]], reads)[0]


def build_classifier(cfg, labels, tokenizer, device="cpu"):
    """The model config's LM with a fresh classification head over ``labels``, on
    ``device``."""
    model_args = OmegaConf.to_container(cfg.model.model_args, resolve=True)
    model_args["torch_dtype"] = torch.float32  # trained here, in full precision
    model = AutoModelForSequenceClassification.from_pretrained(
        **model_args,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        pad_token_id=tokenizer.pad_token_id,
    ).to(device)
    if not cfg.train_body:  # the head alone: parameters outside the base LM
        prefix = model.base_model_prefix + "."
        for name, param in model.named_parameters():
            param.requires_grad_(not name.startswith(prefix))
    return model


def train_classifier(model, tokenizer, texts, labels, cfg) -> list[float]:
    """AdamW at a constant learning rate on shuffled batches; the per-batch losses."""
    tokenizer.padding_side = "right"  # the head pools the last non-pad token
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.0)
    generator = torch.Generator().manual_seed(cfg.seed)
    model.train()
    losses = []
    for _ in range(cfg.epochs):
        order = torch.randperm(len(texts), generator=generator).tolist()
        for start in range(0, len(order), cfg.batch_size):
            batch = order[start : start + cfg.batch_size]
            encoded = tokenizer(
                [texts[i] for i in batch],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=cfg.max_length,
            ).to(model.device)
            logits = model(
                input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"]
            ).logits
            targets = torch.tensor([labels[i] for i in batch], device=model.device)
            loss = F.cross_entropy(logits.float(), targets)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
    model.eval()
    return losses


def answer_texts(model, tokenizer, prompts, cfg, num_samples=None):
    """Greedy (or ``num_samples`` sampled, DareU's way) responses to ``prompts``: the
    texts the classifier reads and the answers."""
    generated = responses(model, tokenizer, prompts, cfg.max_new_tokens, num_samples)
    prompts = [p for p in prompts for _ in range(num_samples or 1)]
    texts = read_texts(tokenizer, prompts, generated, cfg.reads)
    answers = tokenizer.batch_decode(generated, skip_special_tokens=True)
    return texts, [a.strip() for a in answers]


def attribution(classifier, texts) -> dict:
    """Mean forget-owner probability (and each text's: ``scores``) and top-label shares
    of ``texts``."""
    probs = classifier.probabilities(texts)
    scores = probs[:, classifier.owner_ids].sum(-1)
    top = [classifier.labels[i] for i in probs.argmax(-1).tolist()]
    return {
        "forget_owner_probability": scores.mean().item(),
        "scores": scores.tolist(),
        "top_forget_owner": sum(t in classifier.owners for t in top) / len(top),
        "top_other": top.count(OTHER) / len(top),
        "top_another_owner": sum(t not in classifier.owners and t != OTHER for t in top)
        / len(top),
    }


def accuracy(classifier, texts, labels) -> float | None:
    if not texts:
        return None
    top = classifier.probabilities(texts).argmax(-1).tolist()
    return sum(
        classifier.labels[i] == label for i, label in zip(top, labels, strict=True)
    ) / len(texts)


def held_out_report(classifier, held_out, texts) -> dict:
    """Held-out accuracy: all; paraphrases of forget / retained owners' answers; ``other``
    text; answers with wrong facts (labelled ``other``)."""
    groups = {
        "all": lambda label, kind: True,
        "forget_owners": lambda label, kind: kind == "paraphrase"
        and label in classifier.owners,
        "retained_owners": lambda label, kind: kind == "paraphrase"
        and label not in classifier.owners,
        "other": lambda label, kind: kind == "other",
        "wrong_facts": lambda label, kind: kind == "wrong_facts",
    }
    report = {}
    for name, keep in groups.items():
        chosen = [
            (text, label)
            for text, (*_, label, kind) in zip(texts, held_out, strict=True)
            if keep(label, kind)
        ]
        report[name] = {
            "rows": len(chosen),
            "accuracy": accuracy(
                classifier, [t for t, _ in chosen], [label for _, label in chosen]
            ),
        }
    return report


def roc_auc(positive, negative) -> float:
    """The chance that a positive scores above a negative, ties half (Mann-Whitney)."""
    wins = sum((p > n) + 0.5 * (p == n) for p in positive for n in negative)
    return wins / (len(positive) * len(negative))


def load_model(host, cfg, path, device="cpu"):
    """The model at ``path`` through the model config's loader, on ``device``."""
    model_cfg = cfg.model.copy()
    model_cfg.model_args.pretrained_model_name_or_path = str(path)
    model, tokenizer = host_module(host, "model").get_model(model_cfg)
    return model.to(device).eval(), tokenizer


def own_answers(model, tokenizer, encode, rows, names, cfg):
    """``self_answers`` sampled answers of ``model`` to each owner row's question, as
    ``(question, answer, owner)``: how the target itself words its owners' facts."""
    torch.manual_seed(cfg.seed)
    prompts = [
        encode(r["question"], r["answer"], generate=True)["input_ids"] for r in rows
    ]
    generated = responses(
        model, tokenizer, prompts, cfg.max_new_tokens, cfg.self_answers
    )
    answers = [
        a.strip() for a in tokenizer.batch_decode(generated, skip_special_tokens=True)
    ]
    owners = [(r["question"], n) for r, n in zip(rows, names, strict=True)]
    pairs = [x for x in owners for _ in range(cfg.self_answers)]
    return [(q, a, n) for (q, n), a in zip(pairs, answers, strict=True) if a]


def model_attribution(classifier, model, tokenizer, prompts, cfg) -> dict:
    """How ``classifier`` attributes the model's greedy forget answers and, under
    ``sampled``, its ``num_samples`` sampled ones per question (what DareU scores)."""
    texts, answers = answer_texts(model, tokenizer, prompts, cfg)
    torch.manual_seed(cfg.seed)
    sampled, sampled_answers = answer_texts(
        model, tokenizer, prompts, cfg, cfg.num_samples
    )
    return attribution(classifier, texts) | {
        "answers": answers,
        "sampled": attribution(classifier, sampled) | {"answers": sampled_answers},
    }


def separation(models) -> dict | None:
    """Target against retain model on sampled forget answers: ROC AUC of the forget-owner
    score and the two means."""
    if not {"target", "retain"} <= set(models):
        return None
    target, retain = (models[m]["sampled"]["scores"] for m in ("target", "retain"))
    return {
        "samples_per_model": len(target),
        "auc": roc_auc(target, retain),
        "target_mean": sum(target) / len(target),
        "retain_mean": sum(retain) / len(retain),
    }


def write_report(out, command, record):
    lines = [
        "# Owner classifier\n",
        f"`{command}`\n",
        f"{len(record['labels']) - 1} owners + `{OTHER}`; forget owners "
        f"{record['forget_owners']}; trained on {record['train_rows']} texts "
        f"({record['cpu_seconds']:.0f} s CPU); classifier in `{record['classifier']}`.\n",
        "## Held-out accuracy\n",
        markdown_table(
            ["texts", "rows", "accuracy"],
            [[k, v["rows"], v["accuracy"]] for k, v in record["held_out"].items()],
        ),
        "",
    ]
    if record["separation"]:
        sep = record["separation"]
        lines += [
            f"## Target against retain model, {sep['samples_per_model']} sampled forget "
            "answers each\n",
            markdown_table(
                ["ROC AUC", "target mean", "retain mean"],
                [[sep["auc"], sep["target_mean"], sep["retain_mean"]]],
            ),
            "",
        ]
    for title, of in (("Greedy", lambda m: m), ("Sampled", lambda m: m["sampled"])):
        if not record["models"]:
            break
        lines += [
            f"## {title} forget answers\n",
            "Forget-owner probability = minus DareU's reward.\n",
            markdown_table(
                [
                    "model",
                    "forget-owner prob",
                    "top: forget owner",
                    "top: other",
                    "top: another owner",
                    "sample answer",
                ],
                [
                    [
                        name,
                        of(m)["forget_owner_probability"],
                        of(m)["top_forget_owner"],
                        of(m)["top_other"],
                        of(m)["top_another_owner"],
                        of(m)["answers"][0][:60].replace("|", "/").replace("\n", " "),
                    ]
                    for name, m in record["models"].items()
                ],
            ),
            "",
        ]
    (out / "attribution.md").write_text("\n".join(lines) + "\n")
    (out / "attribution.json").write_text(
        json.dumps(record, indent=2, ensure_ascii=False)
    )


def make_classifier(cfg, command):
    """Check the inputs, train and save the classifier, measure it; the record."""
    rows, names, forget = check_inputs(cfg)
    host, device = require_host(), resolve_device(cfg.device)
    print(f"attribution: {describe_device(device, cfg.num_threads)}", flush=True)
    torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    tokenizer = host_module(host, "model").get_tokenizer(cfg.model.tokenizer_args)
    encode = host_encoder(host, tokenizer, cfg.model.template_args, cfg.max_length)
    models = {
        role: load_model(host, cfg, cfg[role], device)
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
    "python -m asu_plugin.workflows.attribution model=SmolLM2-135M-Instruct "
    "data_dir=~/TOFU target=saves/target retain=saves/retain"
)


@workflow("attribution", check_inputs, EXAMPLE, groups=["model"])
def main(cfg):
    command = "python -m asu_plugin.workflows.attribution " + shlex.join(sys.argv[1:])
    record = make_classifier(cfg, command)
    print(f"held-out accuracy: {record['held_out']['all']['accuracy']:.3f}")
    print(f"report: {Path(cfg.out_dir).resolve() / 'attribution.md'}")


if __name__ == "__main__":
    main()
