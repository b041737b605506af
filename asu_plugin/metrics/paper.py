"""The ASU paper's Forget Efficacy (FE) and Model Utility (MU) pieces as open-unlearning
metrics: token entropy, cosine similarity and entailment rate of greedy answers, and FE.
MU is the host's ``hm_aggregate`` over these and the host's own ROUGE, probability and
truth ratio (configs/eval/tofu_metrics/paper_model_utility.yaml).

Each answer-level metric reads a ROUGE pre-compute (access key ``text``): its generations,
ground truths and ROUGE-L recalls, so the answers are generated once.
Imports open-unlearning's ``evals`` package: load via the plugin's registration.
"""

import functools
import math
from collections import Counter

import numpy as np
import scipy.stats
import torch
from evals.metrics.base import unlearning_metric
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

ENTAILMENT = "entailment"
MIN_ROUGE_FOR_ENTAILMENT = 0.1  # the release: below, the answer counts as not entailed
PREMISES = ("generation", "ground_truth")
FE_TERMS = ("rouge", "probability", "truth_ratio", "token_entropy", "entailment")


def normalised_token_entropy(tokens) -> float:
    """Entropy (bits) of the tokens' unigram frequencies over log2 of their count; 0 for
    fewer than two tokens."""
    if len(tokens) <= 1:
        return 0.0
    freqs = np.array(list(Counter(tokens).values()), dtype=float) / len(tokens)
    return float(-(freqs * np.log2(freqs)).sum() / math.log2(len(tokens)))


def _answers(kwargs):
    """``{index: answer record}`` of the ROUGE pre-compute, in index order."""
    text = kwargs.get("pre_compute", {}).get("text")
    if text is None:
        raise ValueError("needs a ROUGE pre-compute with access_key: text")
    return dict(text["value_by_index"])


def _result(scores):
    return {
        "agg_value": float(np.mean(list(scores.values()))),
        "value_by_index": {index: {"score": s} for index, s in scores.items()},
    }


@functools.lru_cache(maxsize=2)
def load_model(name, kind, device):
    """Tokenizer and eval-mode model ``name`` for ``kind`` ("NLI" or "embedding")."""
    model_class = AutoModelForSequenceClassification if kind == "NLI" else AutoModel
    key = "nli_model" if kind == "NLI" else "embedding_model"
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = model_class.from_pretrained(name)
    except (OSError, ValueError) as e:
        hint = (
            " (or eval=tofu_paper_no_nli: FE and MU without it)"
            if kind == "NLI"
            else ""
        )
        raise OSError(
            f"cannot load the {kind} model {name!r} for the ASU paper's metrics: set "
            f"eval.tofu.{key} to a model you have{hint}. {type(e).__name__}: {e}"
        ) from e
    return tokenizer, model.to(device).eval()


def _batches(items, size):
    for start in range(0, len(items), size):
        yield items[start : start + size]


@unlearning_metric(name="token_entropy")
def token_entropy(model, **kwargs):
    """Normalised unigram entropy of each greedy answer under the model's tokenizer."""
    tokenize = kwargs["tokenizer"].tokenize
    return _result(
        {
            index: normalised_token_entropy(tokenize(answer["generation"]))
            for index, answer in _answers(kwargs).items()
        }
    )


@unlearning_metric(name="cosine_similarity")
def cosine_similarity(model, **kwargs):
    """Cosine similarity, floored at 0, of the mean-pooled sentence embeddings of each
    greedy answer and its ground truth (``embedding_model``)."""
    tokenizer, encoder = load_model(
        kwargs["embedding_model"], "embedding", model.device
    )
    answers = _answers(kwargs)
    scores = {}
    for indices in _batches(list(answers), kwargs.get("batch_size", 32)):
        pairs = [answers[i][key] for i in indices for key in PREMISES]
        inputs = tokenizer(pairs, padding=True, truncation=True, return_tensors="pt")
        inputs = inputs.to(encoder.device)
        with torch.no_grad():
            hidden = encoder(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        embeddings = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        generated, truth = embeddings[0::2], embeddings[1::2]
        similarity = torch.nn.functional.cosine_similarity(generated, truth, dim=-1)
        scores.update(zip(indices, similarity.clamp(min=0).tolist(), strict=True))
    return _result(scores)


@unlearning_metric(name="entailment_rate")
def entailment_rate(model, **kwargs):
    """Share of greedy answers the NLI model (``nli_model``) labels entailment, premise
    ``premise`` ("generation": does the truth follow from the answer, the release's forget
    direction; "ground_truth": does the answer follow from the truth). An answer with
    ROUGE-L recall under 0.1 counts as not entailed."""
    premise = kwargs["premise"]
    if premise not in PREMISES:
        raise ValueError(f"premise must be one of {PREMISES}, got {premise!r}")
    hypothesis = PREMISES[1 - PREMISES.index(premise)]
    tokenizer, nli = load_model(kwargs["nli_model"], "NLI", model.device)
    labels = {str(label).lower(): i for i, label in nli.config.id2label.items()}
    if ENTAILMENT not in labels:
        raise ValueError(
            f"NLI model {kwargs['nli_model']!r} has no 'entailment' label "
            f"(its labels: {sorted(labels)})"
        )
    answers = _answers(kwargs)
    scores = {}
    for indices in _batches(list(answers), kwargs.get("batch_size", 32)):
        inputs = tokenizer(
            [answers[i][premise] for i in indices],
            [answers[i][hypothesis] for i in indices],
            padding=True,
            truncation=True,
            return_tensors="pt",
        ).to(nli.device)
        with torch.no_grad():
            predicted = nli(**inputs).logits.argmax(-1).tolist()
        for index, label in zip(indices, predicted, strict=True):
            close_enough = answers[index]["rougeL_recall"] >= MIN_ROUGE_FOR_ENTAILMENT
            scores[index] = float(close_enough and label == labels[ENTAILMENT])
    return _result(scores)


def _forget_efficacy(pre_compute, terms):
    """Harmonic mean of the forget-set terms, each turned so that higher = more forgotten:
    1 - ROUGE-L recall, 1 - probability, the host's forget truth ratio (mean of
    min(r, 1/r): 1 - the release's forget truth-ratio score), token entropy,
    1 - entailment rate."""
    if set(pre_compute) != set(terms):
        raise ValueError(
            f"needs pre-computes with access keys {sorted(terms)}, got {sorted(pre_compute)}"
        )
    value = {name: float(result["agg_value"]) for name, result in pre_compute.items()}
    flipped = {"rouge", "probability", "entailment"}
    values = {n: 1.0 - v if n in flipped else v for n, v in value.items()}
    return {"agg_value": float(scipy.stats.hmean(list(values.values()))), **values}


@unlearning_metric(name="forget_efficacy")
def forget_efficacy(model, **kwargs):
    """The paper's FE: over ROUGE, probability, truth ratio, token entropy and entailment."""
    return _forget_efficacy(kwargs.get("pre_compute", {}), FE_TERMS)


@unlearning_metric(name="forget_efficacy_no_nli")
def forget_efficacy_no_nli(model, **kwargs):
    """FE without its entailment term (no NLI model): not the paper's FE."""
    return _forget_efficacy(kwargs.get("pre_compute", {}), FE_TERMS[:-1])
