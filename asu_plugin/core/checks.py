"""The settings' checks: each names the setting, the value and what is allowed."""

import math
from difflib import get_close_matches
from inspect import Parameter, signature

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


def setting_checks(trainer_class) -> dict:
    """``setting -> check`` of ``trainer_class``: the ``SETTINGS`` of it and its bases."""
    checks = {}
    for cls in reversed(trainer_class.__mro__):
        checks.update(vars(cls).get("SETTINGS", {}))
    return checks


def accepted_settings(trainer_class) -> set:
    """The names the ``__init__`` of ``trainer_class`` and of its bases take by keyword."""
    kinds = (Parameter.POSITIONAL_OR_KEYWORD, Parameter.KEYWORD_ONLY)
    return {
        name
        for cls in trainer_class.__mro__
        if "__init__" in vars(cls)
        for name, parameter in signature(cls.__init__).parameters.items()
        if parameter.kind in kinds and name != "self"
    }


def setting_problems(trainer_class, settings) -> dict:
    """``setting -> what is wrong`` for each of ``settings`` (a trainer's ``method_args``)
    that ``trainer_class`` would refuse: a name it takes no setting by, or a value its
    check refuses. Nothing loads: what needs the model is checked when it is built."""
    checks, accepted = setting_checks(trainer_class), accepted_settings(trainer_class)
    problems = {}
    for name, value in settings.items():
        if name not in accepted:
            close = get_close_matches(name, accepted, n=1)
            problems[name] = f"{trainer_class.__name__} takes no setting {name!r}" + (
                f" (did you mean {close[0]!r}?)" if close else ""
            )
        elif name in checks:
            try:
                checks[name](value)
            except (ValueError, TypeError, OSError) as error:
                problems[name] = str(error)
    return problems


def check_settings(trainer_class, **settings) -> dict:
    """``settings`` through ``trainer_class``'s checks (``SETTINGS``): the checked values;
    a ``ValueError`` naming every bad one."""
    checks = setting_checks(trainer_class)
    values, problems = {}, []
    for name, value in settings.items():
        try:
            values[name] = checks[name](value) if name in checks else value
        except ValueError as error:
            problems.append(str(error))
    if problems:
        raise ValueError("; ".join(problems))
    return values
