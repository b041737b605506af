"""DareU: unlearning by de-attribution (PPO against a frozen owner classifier).

``trainer`` imports open-unlearning's ``trainer`` package: it is loaded by registration.
"""

from asu_plugin.dareu.classifier import OTHER, READS, OwnerClassifier, read_texts

__all__ = ["OTHER", "READS", "OwnerClassifier", "read_texts"]
