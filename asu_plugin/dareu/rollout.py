"""DareU's rollouts and PPO objective, on token tensors (no host, no classifier).

A rollout packs each sampled response behind its prompt as the host packs a QA item:
right-padded ``input_ids``, ``labels`` -100 on the prompt and padding, so that
``asu_plugin.losses.sequence_kl`` and ``token_logprobs`` read the response tokens.
"""

import torch

from asu_plugin.losses import IGNORE_INDEX

ADVANTAGE_EPS = 1e-4  # keeps a group of near-equal rewards from dividing by ~0


def prompt_ids(inputs) -> list[torch.Tensor]:
    """Each row's prompt: its tokens before the first label token (the question with the
    host's template applied)."""
    has_label = inputs["labels"] != IGNORE_INDEX
    if not has_label.any(-1).all():
        raise ValueError("a forget row has no label tokens: its prompt is unknown")
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


def group_advantages(rewards, group_size):
    """Rewards normalised within each prompt's ``group_size`` consecutive samples: minus
    the group mean, over the group's (population) standard deviation."""
    groups = rewards.view(-1, group_size)
    mean = groups.mean(-1, keepdim=True)
    std = groups.std(-1, unbiased=False, keepdim=True)
    return ((groups - mean) / (std + ADVANTAGE_EPS)).view(-1)


def token_logprobs(logits, labels):
    """Log-probability of each next label token, ``[batch, seq - 1]`` (0 where no label)."""
    targets = labels[:, 1:]
    logprobs = torch.gather(
        logits[:, :-1].float().log_softmax(-1), 2, targets.clamp(min=0).unsqueeze(-1)
    ).squeeze(-1)
    return logprobs * (targets != IGNORE_INDEX)


def sequence_mean(values, labels):
    """Mean over each sequence's label tokens, then over sequences (as ``sequence_kl``)."""
    mask = (labels[:, 1:] != IGNORE_INDEX).to(values.dtype)
    return ((values * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()


def clipped_surrogate(logprobs, old_logprobs, advantages, labels, clip):
    """PPO's clipped objective (to maximise) and the share of tokens whose ratio is
    clipped; per token ``min(ρ A, clip(ρ, 1 - clip, 1 + clip) A)``, ρ = π / π_old."""
    ratio = (logprobs - old_logprobs).exp()
    advantages = advantages[:, None].to(ratio.dtype)
    unclipped = ratio * advantages
    clipped = ratio.clamp(1 - clip, 1 + clip) * advantages
    objective = sequence_mean(torch.min(unclipped, clipped), labels)
    clip_share = sequence_mean((clipped < unclipped).to(ratio.dtype), labels)
    return objective, clip_share.detach()
