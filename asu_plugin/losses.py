import math

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


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
