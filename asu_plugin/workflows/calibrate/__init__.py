"""ASU's attention temperature τ for a model, ``python -m asu_plugin.workflows.calibrate``:
one job a module.

``tokens``: function and content tokens of an answer. ``measure``: the teacher's numbers
(answer and token-class probabilities, greedy answers) for each (layer set, τ); its
``label_logprobs`` / ``answer_probability`` are the host's Q_A_Prob computed in-process.
``rule``: the recommendation. ``report``: ``calibration.md`` / ``.png`` / ``.json``.
``workflow``: the settings' checks and the run.
"""
