"""Batches as the losses read them: the host's QA items (``input_ids``, ``attention_mask``,
``labels`` -100 off the answer), prompts cut from them, padding, and prompt + response
packed back into that form."""

import torch

IGNORE_INDEX = -100
LM_KEYS = ("input_ids", "attention_mask", "labels")


def lm_inputs(
    inputs, split, part=None, data="open-unlearning's unlearn data (forget + retain)"
):
    """The model inputs of the host's ``inputs[split]`` (of its ``part``, e.g.
    ``"alternate"``); a clear error naming the ``data`` to train on when they are missing."""
    batch = inputs.get(split)
    if part is not None and isinstance(batch, dict):
        batch = batch.get(part)
    if not isinstance(batch, dict) or not all(key in batch for key in LM_KEYS):
        where = f"{split}.{part}" if part else split
        raise ValueError(
            f"this trainer needs a '{where}' batch, got keys {sorted(inputs)}: "
            f"train on {data}"
        )
    return {key: batch[key] for key in LM_KEYS}


def label_positions(labels):
    """``[batch, length - 1]``: True where position t predicts a label token t + 1."""
    return labels[:, 1:] != IGNORE_INDEX


def prompt_ids(inputs) -> list[torch.Tensor]:
    """Each row's prompt: its tokens before the first label token (the question with the
    host's template applied)."""
    has_label = inputs["labels"] != IGNORE_INDEX
    if not has_label.any(-1).all():
        raise ValueError("a row has no label tokens: its prompt is unknown")
    starts = has_label.int().argmax(-1).tolist()
    return [row[:start] for row, start in zip(inputs["input_ids"], starts, strict=True)]


def left_pad(sequences, pad_id):
    """``input_ids`` and ``attention_mask`` of ``sequences`` padded on the left."""
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        input_ids[row, width - len(seq) :] = seq
        mask[row, width - len(seq) :] = 1
    device = sequences[0].device
    return input_ids.to(device), mask.to(device)


def stop_ids(model, tokenizer) -> set[int]:
    """The tokens that end a response: the model's generation eos ids and the tokenizer's."""
    ids = model.generation_config.eos_token_id
    ids = ids if isinstance(ids, list) else [ids]
    return {i for i in [*ids, tokenizer.eos_token_id] if i is not None}


def cut_at_stop(generated, stop_ids) -> list[torch.Tensor]:
    """Each generated row up to and including its first stop token (all of it if none)."""
    stops = torch.isin(generated, torch.tensor(list(stop_ids), device=generated.device))
    ends = torch.where(stops.any(-1), stops.int().argmax(-1) + 1, generated.shape[1])
    return [row[:end] for row, end in zip(generated, ends.tolist(), strict=True)]


def pack(prompts, responses, pad_id):
    """Right-padded ``input_ids`` / ``attention_mask`` / ``labels`` of prompt + response,
    labels on the response tokens only."""
    rows = [torch.cat([p, r]) for p, r in zip(prompts, responses, strict=True)]
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row, prompt) in enumerate(zip(rows, prompts, strict=True)):
        input_ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
        labels[i, len(prompt) : len(row)] = row[len(prompt) :]
    device = rows[0].device
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": mask.to(device),
        "labels": labels.to(device),
    }


# DareU's rollouts: the model's own distribution, untruncated
SAMPLING = {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0}
GREEDY = {"do_sample": False, "top_p": None, "temperature": None}


@torch.no_grad()
def responses(
    model, tokenizer, prompts, max_new_tokens, num_samples=None, batch_size=8
):
    """Responses to ``prompts`` (token tensors), generated ``batch_size`` prompts at a time
    from left-padded batches, each cut after its first stop token: the greedy one per
    prompt, or ``num_samples`` consecutive ones sampled as ``SAMPLING`` says."""
    stops, pad = stop_ids(model, tokenizer), tokenizer.pad_token_id
    how = (
        GREEDY
        if num_samples is None
        else {**SAMPLING, "num_return_sequences": num_samples}
    )
    out = []
    for start in range(0, len(prompts), batch_size):
        input_ids, mask = left_pad(prompts[start : start + batch_size], pad)
        output = model.generate(
            input_ids=input_ids.to(model.device),
            attention_mask=mask.to(model.device),
            max_new_tokens=max_new_tokens,
            pad_token_id=pad,
            **how,
        )
        out += cut_at_stop(output[:, input_ids.shape[1] :].cpu(), stops)
    return out
