"""The classifier's labelled texts: owners from the owner split, the texts each label trains
on (the owners' answers, ``other`` text, contrast pairs, the target's own answers) and what
is held out, rendered as the reward reads them."""

import random

from asu_plugin.core.inputs import IGNORE_INDEX
from asu_plugin.dareu import OTHER, read_texts


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


def examples(cfg, rows, names, own_answers=()):
    """``(train, held_out)`` lists of ``(question, answer, label)``; ``own_answers``:
    the target's ``(question, answer, label)`` samples, trained as labelled."""
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
