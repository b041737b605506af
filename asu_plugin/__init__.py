"""Attention Smoothing Unlearning (ASU) for open-unlearning."""

from asu_plugin.asu.smoothing import AttentionSmoothing, smooth_attention
from asu_plugin.losses import sequence_kl
from asu_plugin.reference import Reference, add_adapter
from asu_plugin.registration import register

__all__ = [
    "AttentionSmoothing",
    "Reference",
    "add_adapter",
    "register",
    "sequence_kl",
    "smooth_attention",
]
