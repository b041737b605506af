"""How the classifier attributes: held-out accuracy, and the forget answers of the target and
the retain model (greedy, and sampled the way DareU samples), as ROC AUC and means."""

import functools

import torch

from asu_plugin.core.inputs import responses
from asu_plugin.dareu import OTHER, read_texts


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


def own_answers(model, tokenizer, encode, rows, names, cfg):
    """``self_answers`` sampled answers of ``model`` to each owner row's question, as
    ``(question, answer, label)``: how the target itself words its owners' facts, labelled
    by ``own_label``."""
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
    owners = zip(rows, names, strict=True)
    pairs = [x for x in owners for _ in range(cfg.self_answers)]
    return [
        (r["question"], a, own_label(cfg, r["answer"], a, n))
        for (r, n), a in zip(pairs, answers, strict=True)
        if a
    ]


def own_label(cfg, answer, own, owner) -> str:
    """The label of the target's answer ``own`` to a question whose owner's answer is
    ``answer``: ``other`` when its ROUGE-L recall of ``answer`` is below
    ``cfg.self_answer_recall`` (its facts are not the owner's, as a model that never saw
    the owner would answer), else ``owner``."""
    if cfg.self_answer_recall is None:
        return owner
    recall = rouge_l().score(answer, own)["rougeL"].recall
    return OTHER if recall < cfg.self_answer_recall else owner


@functools.cache
def rouge_l():
    """The host's ROUGE-L scorer (``rouge_score``, its dependency: imported when used)."""
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


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
