"""IDK: NLL toward "I don't know" answers to the forget questions; retain NLL, KL or AP."""

from functools import partial

import torch.nn.functional as F
from trainer.utils import compute_batch_nll

from asu_plugin.baselines.base import PaperBaseline
from asu_plugin.core.checks import check_positive, check_settings
from asu_plugin.core.inputs import lm_inputs

IDK_DATA = "experiment=unlearn/tofu/idk_ap (forget data TOFU_QA_forget_idk)"
AP_DATA = "experiment=unlearn/tofu/idk_ap (retain data TOFU_QA_retain_idk)"


class IDK_GD(PaperBaseline):
    """The ASU paper's IDK baseline, retain NLL.

    Forget: the mean NLL of refusals ("alternate": the host's ``QAwithIdkDataset``) to the
    forget questions. ``loss = gamma * forget + alpha * retain``.
    """

    def compute_forget_loss(self, model, inputs):
        outputs = model(**lm_inputs(inputs, "forget", "alternate", IDK_DATA))
        return outputs.loss, outputs


class IDK_KL(IDK_GD):
    """IDK with the retain term KL(original ‖ model), the host's."""

    def __init__(self, retain_loss_type="KL", *args, **kwargs):
        super().__init__(*args, retain_loss_type=retain_loss_type, **kwargs)


class IDK_AP(IDK_GD):
    """IDK with the AP retain term: keep the retain answers preferred over refusals to the
    same questions, ``-log σ(beta * (NLL(refusal) - NLL(answer))) / beta`` averaged over
    the batch, NLLs summed over each sequence's answer tokens."""

    SETTINGS = {"beta": partial(check_positive, "beta")}

    def __init__(self, beta=0.1, *args, **kwargs):
        self.beta = check_settings(IDK_AP, beta=beta)["beta"]
        super().__init__(*args, **kwargs)

    def compute_retain_term(self, model, inputs):
        answer = lm_inputs(inputs, "retain", "original", AP_DATA)
        refusal = lm_inputs(inputs, "retain", "alternate", AP_DATA)
        answer_nll, _ = compute_batch_nll(model, answer)
        refusal_nll, _ = compute_batch_nll(model, refusal)
        margin = self.beta * (refusal_nll - answer_nll)
        return -F.logsigmoid(margin).mean() / self.beta
