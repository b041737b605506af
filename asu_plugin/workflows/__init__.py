"""Workflows around the method that run open-unlearning's scripts: the demo, continual
unlearning, τ calibration, model preparation and the host-run library they share.

Not part of what moves upstream (that is the rest of ``asu_plugin``)."""
