"""ASU: attention smoothing (the forget-teacher), its model handler and its trainers.

``trainers`` imports open-unlearning's ``trainer`` package: it is loaded by registration.
"""

from asu_plugin.asu.reference import Reference
from asu_plugin.asu.smoothing import (
    AttentionSmoothing,
    SmoothingSpec,
    check_temperature,
    smooth_attention,
)

__all__ = [
    "AttentionSmoothing",
    "Reference",
    "SmoothingSpec",
    "check_temperature",
    "smooth_attention",
]
