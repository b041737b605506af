"""Workflows around the methods, run through open-unlearning's scripts. Not part of what
moves upstream (that is the rest of ``asu_plugin``).

Each workflow is one thing a user runs, ``python -m asu_plugin.workflows.<name>``:
``demo`` (a model learns fictitious authors, ASU_KL unlearns two), ``calibrate`` (ASU's τ
for a model), ``owner_classifier`` (DareU's classifier, measured), ``relearn`` (the
relearning attack), ``continual`` (forget requests one after another). Under them:

- ``run``: the run layer every workflow shares: how one starts and stops (``entry``), the
  host's scripts and loaders (``host``), a work folder of host runs (``runs``), tables and
  the fluency of answers.
- ``builders``: what the workflows build: TOFU-format folders (``tofu_format``), the generated
  authors (``authors``), the tiny Llama (``tiny``), SmolLM2 from its wheel (``smollm2``),
  target and retain models (``targets``).

A workflow imports ``run``, ``builders`` and its own module or folder, never another workflow.
"""
