"""Attention Smoothing Unlearning (ASU) for open-unlearning."""

from asu_plugin.losses import sequence_kl
from asu_plugin.reference import Reference, add_adapter
from asu_plugin.registration import register
from asu_plugin.smoothing import AttentionSmoothing, smooth_attention

__all__ = [
    "AttentionSmoothing",
    "Reference",
    "add_adapter",
    "register",
    "sequence_kl",
    "smooth_attention",
]
