"""DareU trainer. Imports open-unlearning's ``trainer`` package: load via ``register()``."""

from functools import partial

import torch
from transformers.integrations import is_deepspeed_zero3_enabled

from asu_plugin.core.checks import (
    check_count,
    check_positive,
    check_settings,
    check_weight,
)
from asu_plugin.core.inputs import (
    SAMPLING,
    cut_at_stop,
    left_pad,
    lm_inputs,
    pack,
    prompt_ids,
    stop_ids,
)
from asu_plugin.core.start import StartingModel, eval_mode
from asu_plugin.core.trainer import Unlearner
from asu_plugin.dareu.classifier import OwnerClassifier, classifier_folder
from asu_plugin.dareu.rollout import clipped_surrogate, group_advantages

CHECKED_ROWS = 16  # forget rows whose text the classifier's tokenizer must read


class DareU(Unlearner):
    """De-attribution unlearning: PPO against a frozen owner classifier.

    Each step samples ``num_samples`` responses per forget prompt from the current model,
    rewards each with minus the classifier's probability that a forget owner wrote
    question + response, and maximises PPO's clipped surrogate on the rewards normalised
    within each prompt's samples (no value model). ``loss = -gamma * surrogate + beta *
    KL_forget + alpha * KL_retain``: both KLs are KL(start ‖ model) per label token, on
    the sampled responses and on the retain answers, to the frozen starting model (the
    adapter-disabled base with ``peft``).
    """

    LOGGED = ("reward", "kl", "retain_loss", "clip_share")
    SETTINGS = {
        "classifier": classifier_folder,
        "num_samples": partial(
            check_count, "num_samples (responses per prompt)", least=2
        ),
        "max_new_tokens": partial(check_count, "max_new_tokens"),
        "steps_per_rollout": partial(check_count, "steps_per_rollout"),
        "clip": partial(check_positive, "clip"),
        "beta": partial(check_weight, "beta"),
    }

    def __init__(
        self,
        classifier=None,
        owners=None,
        num_samples=4,
        max_new_tokens=64,
        beta=0.05,
        clip=0.2,
        steps_per_rollout=1,
        *args,
        **kwargs,
    ):
        checked = check_settings(
            DareU,
            num_samples=num_samples,
            max_new_tokens=max_new_tokens,
            steps_per_rollout=steps_per_rollout,
            clip=clip,
            beta=beta,
        )  # the classifier folder: by OwnerClassifier below, with the same check
        for name, value in checked.items():
            setattr(self, name, value)
        tokenizer = kwargs.get("processing_class") or kwargs.get("tokenizer")
        if tokenizer is None:
            raise ValueError("DareU needs the policy's tokenizer to read its responses")
        self.classifier = OwnerClassifier(classifier, owners)
        self.classifier.check_reads(
            _forget_texts(kwargs.get("train_dataset"), tokenizer)
        )
        self.policy_tokenizer = tokenizer
        self.pad_id = (
            tokenizer.pad_token_id
            if tokenizer.pad_token_id is not None
            else tokenizer.eos_token_id
        )
        super().__init__(*args, retain_loss_type="KL", **kwargs)
        self.start = StartingModel(
            self.ref_model, self.uses_adapter, self.logits_chunk_size
        )
        self.classifier.load(self.accelerator.device)
        self.stop_ids = stop_ids(self.model, tokenizer)
        self._rollouts, self._micro_step = {}, 0

    @torch.no_grad()
    def sample(self, model, prompts) -> list[torch.Tensor]:
        """``num_samples`` responses per prompt (consecutive), sampled from the model
        itself (``SAMPLING``), each cut after its first stop token."""
        policy = self.accelerator.unwrap_model(model)
        input_ids, mask = left_pad(prompts, self.pad_id)
        with eval_mode(policy):
            output = policy.generate(
                input_ids=input_ids,
                attention_mask=mask,
                **SAMPLING,
                num_return_sequences=self.num_samples,
                max_new_tokens=self.max_new_tokens,
                pad_token_id=self.pad_id,
                synced_gpus=is_deepspeed_zero3_enabled(),
            )
        return cut_at_stop(output[:, input_ids.shape[1] :], self.stop_ids)

    def rewards(self, texts) -> torch.Tensor:
        """Minus the classifier's probability mass on the forget owners."""
        return self.classifier.rewards(texts)

    def rollout(self, model, forget_inputs):
        """Responses to the forget prompts, packed for scoring, with their rewards and
        group-normalised advantages."""
        prompts = prompt_ids(forget_inputs)
        responses = self.sample(model, prompts)
        prompts = [p for p in prompts for _ in range(self.num_samples)]
        texts = self.classifier.texts(self.policy_tokenizer, prompts, responses)
        rewards = self.rewards(texts).to(prompts[0].device)
        return {
            "inputs": pack(prompts, responses, self.pad_id),
            "rewards": rewards,
            "advantages": group_advantages(rewards, self.num_samples),
            "old_logprobs": None,  # the policy's, set at the rollout's first use
        }

    def _current_rollout(self, model, forget_inputs):
        """This micro-batch's rollout: a fresh one, or the one its slot of the
        accumulation cycle used fewer than ``steps_per_rollout`` optimiser steps ago."""
        slot = self._micro_step % self.args.gradient_accumulation_steps
        self._micro_step += 1
        rollout = self._rollouts.get(slot)
        step = self.state.global_step
        if rollout is None or step - rollout["step"] >= self.steps_per_rollout:
            rollout = {**self.rollout(model, forget_inputs), "step": step}
            self._rollouts[slot] = rollout
        return rollout

    def compute_unlearn_loss(
        self, model, inputs, return_outputs=False, num_items_in_batch=None
    ):
        forget_inputs, retain_inputs = (
            lm_inputs(inputs, "forget"),
            lm_inputs(inputs, "retain"),
        )
        rollout = self._current_rollout(model, forget_inputs)
        samples = rollout["inputs"]
        kl, logprobs, outputs = self.start.kl_and_logprobs(model, samples)
        if rollout["old_logprobs"] is None:
            rollout["old_logprobs"] = logprobs.detach()
        surrogate, clip_share = clipped_surrogate(
            logprobs,
            rollout["old_logprobs"],
            rollout["advantages"],
            samples["labels"],
            self.clip,
        )
        retain_loss = self.start.kl(model, retain_inputs)[0]
        loss = -self.gamma * surrogate + self.beta * kl + self.alpha * retain_loss
        self.log_terms(rollout["rewards"].mean(), kl, retain_loss, clip_share)
        return (loss, outputs) if return_outputs else loss


def _forget_texts(dataset, tokenizer) -> list[str]:
    """The text of the first forget rows of the host's unlearn ``dataset``, as the policy's
    tokenizer decodes it (what the classifier will read)."""
    if dataset is None:
        return []
    rows = [dataset[i] for i in range(min(len(dataset), CHECKED_ROWS))]
    return [
        tokenizer.decode(row["forget"]["input_ids"], skip_special_tokens=True)
        for row in rows
        if isinstance(row, dict) and "forget" in row
    ]
