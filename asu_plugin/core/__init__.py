"""The layer under the methods: what ``asu``, ``dareu``, ``baselines`` and ``metrics`` share.

``checks`` validates settings, ``inputs`` shapes batches (the host's QA items, padding,
packing, generation), ``logits`` computes next-token losses at the positions they read,
``start`` is the model as unlearning started, ``trainer`` the base every trainer extends.
Imports the host, transformers and peft only; no method.
"""
