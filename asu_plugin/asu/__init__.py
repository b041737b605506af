"""ASU: attention smoothing (the forget-teacher), its model handler and its trainers.

``trainers`` imports open-unlearning's ``trainer`` package: it is loaded by registration.
"""
