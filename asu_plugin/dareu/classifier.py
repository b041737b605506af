"""The frozen owner classifier DareU's reward reads: a Hugging Face sequence-classification
folder whose ``config.id2label`` names the data owners and ``OTHER``.

Everything but the weights is read and checked first (``OwnerClassifier(...)``), so that a
bad folder, bad owners or a tokenizer that cannot read the policy's text fail before any
model loads; ``load`` then loads the weights.
"""

from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

OTHER = "other"  # the label of text no owner wrote
MAX_UNKNOWN = (
    0.05  # most unknown-token share of the policy's text the tokenizer may give
)
# What text a classifier reads (its config's ``reads``; folders without one read both):
# the templated question + response, or the response alone, so that the question (which
# names the author) cannot carry the attribution
READS = ("question_and_response", "response")


def read_texts(tokenizer, prompts, responses, reads) -> list[str]:
    """The texts a classifier that ``reads`` gets for prompt / response token rows, as
    ``tokenizer`` decodes them without special tokens."""
    if reads not in READS:
        raise ValueError(f"reads={reads!r}: a classifier reads one of {READS}")
    if reads == "response":
        texts = tokenizer.batch_decode(
            [r.tolist() for r in responses], skip_special_tokens=True
        )
        return [t.strip() for t in texts]
    return tokenizer.batch_decode(
        [torch.cat([p, r]).tolist() for p, r in zip(prompts, responses, strict=True)],
        skip_special_tokens=True,
    )


def classifier_folder(path) -> Path:
    """``path`` as a folder holding an owner classifier's ``config.json``."""
    if path is None:
        raise ValueError(
            "DareU needs classifier=<owner classifier folder> (made by "
            "`python -m asu_plugin.workflows.owner_classifier`)"
        )
    folder = Path(str(path)).expanduser()
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"no owner classifier at {folder} (no config.json): make one with "
            "`python -m asu_plugin.workflows.owner_classifier`"
        )
    return folder


class OwnerClassifier:
    """Owner classifier at ``path``; ``owners`` are the labels whose probability mass the
    reward removes (``None``: the forget owners recorded in the folder's config)."""

    def __init__(self, path, owners=None, max_length=512):
        self.path = classifier_folder(path)
        self.config = AutoConfig.from_pretrained(self.path)
        self.labels = [self.config.id2label[i] for i in range(self.config.num_labels)]
        self.owners = self._resolve_owners(owners)
        self.reads = getattr(self.config, "reads", READS[0])
        if self.reads not in READS:
            raise ValueError(
                f"the classifier at {self.path} reads {self.reads!r}; known: {READS}"
            )
        self.owner_ids = [self.labels.index(o) for o in self.owners]
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.tokenizer.padding_side = "right"  # causal-LM heads pool the last non-pad
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.max_length = max_length
        self.model = None

    def _resolve_owners(self, owners):
        recorded = getattr(self.config, "forget_owners", None)
        if owners is None:
            if not recorded:
                raise ValueError(
                    f"the classifier at {self.path} records no forget_owners: name "
                    f"them with owners=[...] (its labels: {self.labels})"
                )
            owners, where = list(recorded), f"its recorded forget_owners {recorded}"
        else:
            owners, where = [str(o) for o in owners], f"owners={list(owners)}"
        if not owners:
            raise ValueError(f"owners is empty; name forget owners from {self.labels}")
        unknown = [o for o in owners if o not in self.labels or o == OTHER]
        if unknown:
            raise ValueError(
                f"unknown owners {unknown} in {where}: the classifier at {self.path} "
                f"has owner labels {[x for x in self.labels if x != OTHER]}"
            )
        return owners

    def texts(self, tokenizer, prompts, responses) -> list[str]:
        """What this classifier reads of prompt / response token rows."""
        return read_texts(tokenizer, prompts, responses, self.reads)

    def check_reads(self, texts):
        """Refuse a tokenizer that turns more than ``MAX_UNKNOWN`` of ``texts``' tokens
        into its unknown token (or reads a text as nothing)."""
        unk = self.tokenizer.unk_token_id
        total = unknown = 0
        for text in texts:
            ids = self.tokenizer(text, add_special_tokens=False).input_ids
            if text.strip() and not ids:
                raise ValueError(
                    f"the classifier's tokenizer ({self.path}) reads {text!r} as no tokens"
                )
            total += len(ids)
            unknown += sum(i == unk for i in ids) if unk is not None else 0
        if total and unknown / total > MAX_UNKNOWN:
            raise ValueError(
                f"the classifier's tokenizer ({self.path}) cannot read the policy's "
                f"text: {unknown / total:.0%} of its tokens are unknown (at most "
                f"{MAX_UNKNOWN:.0%} allowed), e.g. in {texts[0]!r}; train the "
                "classifier on the policy's tokenizer's text"
            )

    def load(self, device=None):
        model = AutoModelForSequenceClassification.from_pretrained(
            self.path, torch_dtype=torch.float32
        )
        if model.config.pad_token_id is None:
            model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model = model.to(device).eval().requires_grad_(False)
        return self

    @torch.no_grad()
    def probabilities(self, texts, batch_size=32):
        """``[len(texts), labels]`` label probabilities."""
        probs = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(
                texts[start : start + batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.max_length,
            )
            batch.pop("token_type_ids", None)
            logits = self.model(**batch.to(self.model.device)).logits
            probs.append(logits.float().softmax(-1))
        return torch.cat(probs)

    def rewards(self, texts):
        """Minus the probability mass on the forget owners: in [-1, 0]."""
        return -self.probabilities(texts)[:, self.owner_ids].sum(-1)
