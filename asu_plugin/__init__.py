"""Attention Smoothing Unlearning (ASU) for open-unlearning."""

from asu_plugin.asu.reference import Reference
from asu_plugin.asu.smoothing import AttentionSmoothing, smooth_attention
from asu_plugin.core.logits import sequence_kl
from asu_plugin.core.start import StartingModel, add_adapter
from asu_plugin.registration import register

__all__ = [
    "AttentionSmoothing",
    "Reference",
    "StartingModel",
    "add_adapter",
    "register",
    "sequence_kl",
    "smooth_attention",
]
