"""DareU's owner classifier, ``python -m asu_plugin.workflows.owner_classifier``: one job a
module.

``examples``: the owners and the labelled texts (trained and held out). ``training``: the
classifier and its training. ``measure``: held-out accuracy and how the target's and the
retain model's forget answers are attributed. ``report``: ``attribution.md`` / ``.json``.
``workflow``: the settings' checks and the run.
"""
