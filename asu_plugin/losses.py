import math

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
LM_KEYS = ("input_ids", "attention_mask", "labels")
RETAIN_LOSS_TYPES = ("NLL", "KL")  # GradDiff's retain terms


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


def check_retain_loss_type(retain_loss_type) -> str:
    if retain_loss_type not in RETAIN_LOSS_TYPES:
        raise ValueError(
            f"retain_loss_type must be one of {RETAIN_LOSS_TYPES}, got {retain_loss_type!r}"
        )
    return retain_loss_type


def sequence_kl(student_logits, teacher_logits, labels):
    """KL(teacher ‖ student) over the vocabulary at label tokens.

    Position t predicts label t+1; positions whose next label is -100 are skipped.
    Averaged over each sequence's tokens, then over the sequences that have any.
    """
    mask = labels[:, 1:] != IGNORE_INDEX
    counts = mask.sum(-1)
    if not counts.any():
        raise ValueError("batch has no label tokens (all labels are -100)")
    student = F.log_softmax(student_logits[:, :-1][mask].float(), dim=-1)
    teacher = F.log_softmax(teacher_logits[:, :-1][mask].float(), dim=-1)
    token_kl = F.kl_div(student, teacher, reduction="none", log_target=True).sum(-1)
    rows = mask.nonzero()[:, 0]
    per_sequence = torch.zeros_like(counts, dtype=token_kl.dtype).index_add(
        0, rows, token_kl
    )
    has_tokens = counts > 0
    return (per_sequence[has_tokens] / counts[has_tokens]).mean()


def check_weight(name, value) -> float:
    """A loss term's weight (``gamma`` forget, ``alpha`` retain): a finite number >= 0."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(
            f"{name}, a loss term's weight, must be a finite number >= 0 "
            f"(0 turns the term off), got {value!r}"
        )
    return float(value)
