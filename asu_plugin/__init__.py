"""Attention Smoothing Unlearning (ASU) for open-unlearning."""

from asu_plugin.losses import sequence_kl, teacher_kl
from asu_plugin.registration import register
from asu_plugin.smoothing import AttentionSmoothing, smooth_attention

__all__ = [
    "AttentionSmoothing",
    "register",
    "sequence_kl",
    "smooth_attention",
    "teacher_kl",
]
