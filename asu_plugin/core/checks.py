"""The settings' checks: each names the setting, the value and what is allowed."""

import math

RETAIN_LOSS_TYPES = ("NLL", "KL")  # GradDiff's retain terms


def is_number(value) -> bool:
    """An int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_weight(name, value) -> float:
    """A loss term's weight (``gamma`` forget, ``alpha`` retain): a finite number >= 0."""
    if not is_number(value) or not math.isfinite(value) or value < 0:
        raise ValueError(
            f"{name}, a loss term's weight, must be a finite number >= 0 "
            f"(0 turns the term off), got {value!r}"
        )
    return float(value)


def check_positive(name, value, hint="") -> float:
    """A finite number > 0; ``hint`` follows the rule in the message."""
    if not is_number(value) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0{hint}, got {value!r}")
    return float(value)


def check_count(name, value, least=1) -> int:
    """An integer >= ``least``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    return value


def check_retain_loss_type(retain_loss_type) -> str:
    if retain_loss_type not in RETAIN_LOSS_TYPES:
        raise ValueError(
            f"retain_loss_type must be one of {RETAIN_LOSS_TYPES}, got {retain_loss_type!r}"
        )
    return retain_loss_type


def check_chunk_size(value):
    """``logits_chunk_size``: label positions projected to the vocabulary at once, an
    integer >= 1, or None for the model's full logits."""
    if value is None:
        return None
    return check_count("logits_chunk_size (null: the full logits)", value, 1)
