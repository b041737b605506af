"""DareU trainer. Imports open-unlearning's ``trainer`` package: load via ``register()``."""

import math

import torch
from trainer.unlearn.grad_diff import GradDiff
from transformers.integrations import is_deepspeed_zero3_enabled

from asu_plugin.dareu.classifier import OwnerClassifier
from asu_plugin.dareu.rollout import (
    clipped_surrogate,
    cut_at_stop,
    group_advantages,
    left_pad,
    pack,
    prompt_ids,
    stop_ids,
    token_logprobs,
)
from asu_plugin.losses import check_weight, lm_inputs
from asu_plugin.reference import Reference, _eval_mode, add_adapter

LOGGED = ("reward", "kl", "retain_loss", "clip_share")
CHECKED_ROWS = 16  # forget rows whose text the classifier's tokenizer must read


def check_count(name, value, least) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    return value


class DareU(GradDiff):
    """De-attribution unlearning: PPO against a frozen owner classifier.

    Each step samples ``num_samples`` responses per forget prompt from the current model,
    rewards each with minus the classifier's probability that a forget owner wrote
    question + response, and maximises PPO's clipped surrogate on the rewards normalised
    within each prompt's samples (no value model). ``loss = -gamma * surrogate + beta *
    KL_forget + alpha * KL_retain``: both KLs are KL(start ‖ model) per label token, on
    the sampled responses and on the retain answers, to the frozen starting model (the
    adapter-disabled base with ``peft``).
    """

    def __init__(
        self,
        classifier=None,
        owners=None,
        num_samples=4,
        max_new_tokens=64,
        beta=0.05,
        clip=0.2,
        steps_per_rollout=1,
        gamma=1.0,
        alpha=1.0,
        peft=None,
        *args,
        **kwargs,
    ):
        self.num_samples = check_count(
            "num_samples (responses per prompt)", num_samples, 2
        )
        self.max_new_tokens = check_count("max_new_tokens", max_new_tokens, 1)
        self.steps_per_rollout = check_count("steps_per_rollout", steps_per_rollout, 1)
        if (
            isinstance(clip, bool)
            or not isinstance(clip, (int, float))
            or not (math.isfinite(clip) and clip > 0)
        ):
            raise ValueError(f"clip must be a finite number > 0, got {clip!r}")
        self.clip = float(clip)
        self.beta = check_weight("beta", beta)
        gamma, alpha = check_weight("gamma", gamma), check_weight("alpha", alpha)
        tokenizer = kwargs.get("processing_class") or kwargs.get("tokenizer")
        if tokenizer is None:
            raise ValueError("DareU needs the policy's tokenizer to read its responses")
        if classifier is None:
            raise ValueError(
                "DareU needs classifier=<owner classifier folder> (made by "
                "`python -m asu_plugin.workflows.attribution`)"
            )
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
        if kwargs.get("model") is not None and peft is not None:
            kwargs["model"] = add_adapter(kwargs["model"], peft)
        self.uses_adapter = peft is not None
        super().__init__(
            *args, gamma=gamma, alpha=alpha, retain_loss_type="KL", **kwargs
        )
        self.reference = Reference(self.ref_model, 1.0, adapter_base=self.uses_adapter)
        if self.uses_adapter and self.args.gradient_checkpointing:
            self.model.enable_input_require_grads()  # frozen embeddings: grads via inputs
        self.classifier.load(self.accelerator.device)
        self.stop_ids = stop_ids(self.model, tokenizer)
        self._rollouts, self._micro_step = {}, 0
        self._term_sums, self._term_count = 0.0, 0

    def _prepare_ref_model(self, model):
        return model if self.uses_adapter else super()._prepare_ref_model(model)

    @torch.no_grad()
    def sample(self, model, prompts) -> list[torch.Tensor]:
        """``num_samples`` responses per prompt (consecutive), sampled from the model
        itself (temperature 1, no top-k / top-p), each cut after its first stop token."""
        policy = self.accelerator.unwrap_model(model)
        input_ids, mask = left_pad(prompts, self.pad_id)
        with _eval_mode(policy):
            output = policy.generate(
                input_ids=input_ids,
                attention_mask=mask,
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
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
        texts = self.policy_tokenizer.batch_decode(
            [
                torch.cat([p, r]).tolist()
                for p, r in zip(prompts, responses, strict=True)
            ],
            skip_special_tokens=True,
        )
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
        kl, outputs = self.reference.kl(model, samples, smoothed=False)
        logprobs = token_logprobs(outputs.logits, samples["labels"])
        if rollout["old_logprobs"] is None:
            rollout["old_logprobs"] = logprobs.detach()
        surrogate, clip_share = clipped_surrogate(
            logprobs,
            rollout["old_logprobs"],
            rollout["advantages"],
            samples["labels"],
            self.clip,
        )
        retain_loss = self.reference.kl(model, retain_inputs, smoothed=False)[0]
        loss = -self.gamma * surrogate + self.beta * kl + self.alpha * retain_loss
        terms = [rollout["rewards"].mean(), kl, retain_loss, clip_share]
        self._term_sums = self._term_sums + torch.stack(terms).detach().float()
        self._term_count += 1
        return (loss, outputs) if return_outputs else loss

    def log(self, logs, *args, **kwargs):
        """Adds the mean reward, forget KL, retain KL and clipped-token share since the
        last log to the loss log (means over the processes too, as the host's loss is)."""
        if "loss" in logs and self._term_count:
            means = self.accelerator.reduce(self._term_sums / self._term_count, "mean")
            logs = {**logs, **dict(zip(LOGGED, means.tolist(), strict=True))}
            self._term_sums, self._term_count = 0.0, 0
        super().log(logs, *args, **kwargs)

    if not hasattr(GradDiff, "compute_unlearn_loss"):
        # Host before its transformers-4.51 port trains through compute_loss.
        compute_loss = compute_unlearn_loss


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
