"""Metrics the plugin adds to open-unlearning's evaluation."""
