"""DareU's advantages and PPO objective, on token tensors (no host, no classifier).

A rollout packs each sampled response behind its prompt as the host packs a QA item
(``asu_plugin.core.inputs.pack``), so the label-token losses read the response tokens.
"""

import torch

from asu_plugin.core.inputs import label_positions
from asu_plugin.core.logits import sequence_mean

ADVANTAGE_EPS = 1e-4  # keeps a group of near-equal rewards from dividing by ~0


def group_advantages(rewards, group_size):
    """Rewards normalised within each prompt's ``group_size`` consecutive samples: minus
    the group mean, over the group's (population) standard deviation."""
    groups = rewards.view(-1, group_size)
    mean = groups.mean(-1, keepdim=True)
    std = groups.std(-1, unbiased=False, keepdim=True)
    return ((groups - mean) / (std + ADVANTAGE_EPS)).view(-1)


def clipped_surrogate(logprobs, old_logprobs, advantages, labels, clip):
    """PPO's clipped objective (to maximise) and the share of tokens whose ratio is
    clipped; per token ``min(ρ A, clip(ρ, 1 - clip, 1 + clip) A)``, ρ = π / π_old, averaged
    over each response's tokens, then over the responses."""
    positions = label_positions(labels)
    ratio = (logprobs - old_logprobs).exp()
    advantages = advantages[:, None].to(ratio.dtype)
    unclipped = ratio * advantages
    clipped = ratio.clamp(1 - clip, 1 + clip) * advantages
    objective = sequence_mean(torch.min(unclipped, clipped)[positions], positions)
    clip_share = sequence_mean(
        (clipped < unclipped).to(ratio.dtype)[positions], positions
    )
    return objective, clip_share.detach()
