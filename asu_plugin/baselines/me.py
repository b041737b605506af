"""ME (maximum entropy): the next-token distribution pulled toward uniform on forget text."""

import math

import torch.nn.functional as F

from asu_plugin.baselines.base import PaperBaseline
from asu_plugin.losses import lm_inputs


def uniform_kl(logits, positions):
    """KL(uniform ‖ softmax(logits)) averaged over the ``positions`` (a bool mask) of the
    whole batch: ``-log V - mean_v log p_v`` at each counted position."""
    log_probs = F.log_softmax(logits[positions].float(), dim=-1)
    if log_probs.shape[0] == 0:
        raise ValueError("ME: the forget batch has no token to score")
    return (-math.log(log_probs.shape[-1]) - log_probs.mean(-1)).mean()


class ME_GD(PaperBaseline):
    """Maximum-entropy unlearning (the ASU paper's ME baseline, retain NLL).

    Forget: KL(uniform ‖ model) of the next-token distribution at every position of the
    forget text, averaged over the batch's tokens; with ``include_question`` (the release's
    ``mask: false``) the question's tokens count too, else only the labelled answer.
    ``loss = gamma * forget + alpha * retain``.
    """

    def __init__(self, gamma=0.1, alpha=1.0, include_question=True, *args, **kwargs):
        super().__init__(*args, gamma=gamma, alpha=alpha, **kwargs)
        self.include_question = bool(include_question)

    def compute_forget_loss(self, model, inputs):
        forget = lm_inputs(inputs, "forget")
        outputs = model(
            input_ids=forget["input_ids"], attention_mask=forget["attention_mask"]
        )
        if self.include_question:  # position t predicts token t + 1; both real tokens
            attended = forget["attention_mask"].bool()
            positions = attended[:, :-1] & attended[:, 1:]
        else:
            positions = forget["labels"][:, 1:] != -100
        return uniform_kl(outputs.logits[:, :-1], positions), outputs


class ME_KL(ME_GD):
    """ME with the retain term KL(original ‖ model), the host's."""

    def __init__(self, retain_loss_type="KL", *args, **kwargs):
        super().__init__(*args, retain_loss_type=retain_loss_type, **kwargs)
