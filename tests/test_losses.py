import math
import re

import pytest
import torch

from asu_plugin import sequence_kl
from asu_plugin.core.checks import check_weight


def hand_kl(student, teacher, labels):
    """Loops over sequences and tokens: Σ_v p_T (log p_T − log p_S)."""
    per_sequence = []
    for s_row, t_row, l_row in zip(
        student.tolist(), teacher.tolist(), labels.tolist(), strict=True
    ):
        token_kls = []
        for t in range(len(l_row) - 1):
            if l_row[t + 1] == -100:
                continue
            zs = math.log(sum(math.exp(x) for x in s_row[t]))
            zt = math.log(sum(math.exp(x) for x in t_row[t]))
            token_kls.append(
                sum(
                    math.exp(b - zt) * ((b - zt) - (a - zs))
                    for a, b in zip(s_row[t], t_row[t], strict=True)
                )
            )
        if token_kls:
            per_sequence.append(sum(token_kls) / len(token_kls))
    return sum(per_sequence) / len(per_sequence)


def test_sequence_kl_matches_hand_computation():
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(2, 3, 5, 7, generator=g)
    labels = torch.tensor(
        [
            [-100, -100, 4, 1, 2],  # 3 answer tokens
            [-100, 3, -100, -100, -100],  # 1 answer token: weighs as much as row 0
            [-100, -100, -100, -100, -100],  # no answer token: left out
        ]
    )
    expected = hand_kl(student, teacher, labels)
    assert sequence_kl(student, teacher, labels).item() == pytest.approx(
        expected, rel=1e-6
    )
    # per-sequence averaging differs from pooling all tokens
    pooled = sequence_kl(student[:1], teacher[:1], labels[:1]) * 3
    pooled = (pooled + sequence_kl(student[1:2], teacher[1:2], labels[1:2])) / 4
    assert not math.isclose(pooled.item(), expected, rel_tol=1e-3)


def test_sequence_kl_is_zero_at_the_teacher_and_positive_elsewhere():
    logits = torch.randn(2, 6, 11)
    labels = torch.randint(0, 11, (2, 6))
    assert sequence_kl(logits, logits.clone(), labels).item() == pytest.approx(
        0, abs=1e-6
    )
    assert sequence_kl(torch.randn(2, 6, 11), logits, labels).item() > 0


def test_sequence_kl_refuses_a_batch_without_labels():
    logits = torch.randn(2, 4, 5)
    with pytest.raises(ValueError, match="no label tokens"):
        sequence_kl(logits, logits, torch.full((2, 4), -100))


@pytest.mark.parametrize("alpha", [0, 0.1, 5])
def test_weight_accepts_finite_non_negative_numbers(alpha):
    assert check_weight("alpha", alpha) == alpha


@pytest.mark.parametrize("alpha", [-0.1, float("nan"), float("inf"), True, "1"])
def test_weight_refuses_the_rest_naming_it(alpha):
    with pytest.raises(
        ValueError,
        match=rf"alpha, a loss term.s weight, must be a finite number >= 0 .*got {re.escape(repr(alpha))}",
    ):
        check_weight("alpha", alpha)
