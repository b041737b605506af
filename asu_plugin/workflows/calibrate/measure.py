"""The forget-teacher's numbers for one model as it is (smoothed or not), and the sweep.

Scoring items are tokenised by the host's own ``preprocess_chat_instance``; answer
probability is the host's Q_A_Prob, computed in-process.
"""

import torch

from asu_plugin.asu import AttentionSmoothing
from asu_plugin.core import logits
from asu_plugin.core.inputs import IGNORE_INDEX, label_positions, responses
from asu_plugin.workflows.calibrate.tokens import token_classes
from asu_plugin.workflows.run.fluency import fluency


def encode_split(encode, tokenizer, rows, classify=False):
    """Items of ``rows`` for scoring: ``input_ids``, ``labels`` (and token ``classes``)."""
    items = []
    for row in rows:
        item = encode(row["question"], row["answer"])
        if classify:
            label_ids = item["labels"][item["labels"] != IGNORE_INDEX].tolist()
            item["classes"] = token_classes(tokenizer, label_ids)
        items.append(item)
    return items


def right_pad(tensors, value):
    return torch.nn.utils.rnn.pad_sequence(
        list(tensors), batch_first=True, padding_value=value
    )


@torch.no_grad()
def label_logprobs(model, items, pad_id, batch_size=8) -> list[torch.Tensor]:
    """Per item, the log-probabilities of its label tokens (as the host shifts them)."""
    logprobs = []
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        input_ids = right_pad((b["input_ids"] for b in batch), pad_id)
        labels = right_pad((b["labels"] for b in batch), IGNORE_INDEX)
        mask = right_pad((torch.ones_like(b["input_ids"]) for b in batch), 0)
        inputs = {"input_ids": input_ids, "attention_mask": mask}
        inputs = {k: v.to(model.device) for k, v in inputs.items()}
        positions = logits.forward(model, inputs)
        values = logits.label_logprobs(positions, labels.to(model.device)).cpu()
        logprobs += values.split(label_positions(labels).sum(-1).tolist())
    return logprobs


def answer_probability(logprobs) -> float:
    """The host's Q_A_Prob: mean over rows of exp(mean label-token log-probability)."""
    return torch.stack([lp.mean().exp() for lp in logprobs]).mean().item()


def class_probability(logprobs, items, kind) -> float | None:
    """Mean probability of the label tokens of class ``kind`` over all items."""
    probs = [
        p
        for lp, item in zip(logprobs, items, strict=True)
        for p, c in zip(lp.exp().tolist(), item["classes"], strict=True)
        if c == kind
    ]
    return sum(probs) / len(probs) if probs else None


def greedy_answers(model, tokenizer, prompts, max_new_tokens, batch_size=8):
    """Greedy answers (special tokens dropped, stripped) to ``prompts``."""
    generated = responses(
        model, tokenizer, prompts, max_new_tokens, batch_size=batch_size
    )
    texts = tokenizer.batch_decode(generated, skip_special_tokens=True)
    return [text.strip() for text in texts]


def prepare(encode, tokenizer, rows, splits):
    """Scoring items per split (forget ones with token classes) and the forget prompts.

    ``rows``: split -> QA rows; ``splits``: the ``forget``, ``retain`` and ``general``
    (a list) split names."""
    forget = splits["forget"]
    items = {
        split: encode_split(encode, tokenizer, split_rows, split == forget)
        for split, split_rows in rows.items()
    }
    if "content" not in {c for item in items[forget] for c in item["classes"]}:
        raise ValueError(f"the {forget} answers have no content tokens to measure")
    prompts = [
        encode(row["question"], row["answer"], generate=True)["input_ids"]
        for row in rows[forget]
    ]
    return {"items": items, "prompts": prompts, **splits}


def measure(model, tokenizer, data, max_new_tokens, batch_size):
    """The teacher's numbers for the model as it is now (smoothed or not)."""
    pad_id = tokenizer.pad_token_id
    logprobs = {
        split: label_logprobs(model, items, pad_id, batch_size)
        for split, items in data["items"].items()
    }
    probs = {split: answer_probability(lp) for split, lp in logprobs.items()}
    forget_items, forget_lp = data["items"][data["forget"]], logprobs[data["forget"]]
    answers = greedy_answers(
        model, tokenizer, data["prompts"], max_new_tokens, batch_size
    )
    return {
        "probability": probs,
        "forget_prob": probs[data["forget"]],
        "retain_prob": probs[data["retain"]],
        "general_prob": sum(probs[s] for s in data["general"]) / len(data["general"]),
        "content_prob": class_probability(forget_lp, forget_items, "content"),
        "function_prob": class_probability(forget_lp, forget_items, "function"),
        **fluency(answers),
        "answers": answers,
    }


def sweep(model, tokenizer, data, temperatures, layer_sets, **settings):
    """τ = 1 once (``layer_set`` "model"), then every (layer set, τ > 1)."""
    results = [
        {"layer_set": "model", "layers": None, "temperature": 1.0}
        | measure(model, tokenizer, data, **settings)
    ]
    for name, layers in layer_sets.items():
        for temperature in (t for t in temperatures if t != 1.0):
            print(f"layer set {name}, τ {temperature:g}", flush=True)
            with AttentionSmoothing(model, temperature, layers):
                row = measure(model, tokenizer, data, **settings)
            results.append(
                {"layer_set": name, "layers": layers, "temperature": temperature} | row
            )
    return results
