"""ME (maximum entropy): the next-token distribution pulled toward uniform on forget text."""

from asu_plugin.baselines.base import PaperBaseline
from asu_plugin.core.inputs import label_positions, lm_inputs
from asu_plugin.core.logits import forward, uniform_kl


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
        model_positions = forward(model, forget, self.logits_chunk_size)
        if self.include_question:  # position t predicts token t + 1; both real tokens
            attended = forget["attention_mask"].bool()
            positions = attended[:, :-1] & attended[:, 1:]
        else:
            positions = label_positions(forget["labels"])
        loss = uniform_kl(model_positions, positions, self.logits_chunk_size)
        return loss, model_positions.outputs


class ME_KL(ME_GD):
    """ME with the retain term KL(original ‖ model), the host's."""

    def __init__(self, retain_loss_type="KL", *args, **kwargs):
        super().__init__(*args, retain_loss_type=retain_loss_type, **kwargs)
