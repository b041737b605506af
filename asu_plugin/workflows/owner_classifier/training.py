"""The classifier: the model config's causal LM with a sequence-classification head, trained
on the labelled texts."""

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from transformers import AutoModelForSequenceClassification


def build_classifier(cfg, labels, tokenizer, device="cpu"):
    """The model config's LM with a fresh classification head over ``labels``, on
    ``device``."""
    model_args = OmegaConf.to_container(cfg.model.model_args, resolve=True)
    model_args["torch_dtype"] = torch.float32  # trained here, in full precision
    model = AutoModelForSequenceClassification.from_pretrained(
        **model_args,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        pad_token_id=tokenizer.pad_token_id,
    ).to(device)
    if not cfg.train_body:  # the head alone: parameters outside the base LM
        prefix = model.base_model_prefix + "."
        for name, param in model.named_parameters():
            param.requires_grad_(not name.startswith(prefix))
    return model


def train_classifier(model, tokenizer, texts, labels, cfg) -> list[float]:
    """AdamW at a constant learning rate on shuffled batches; the per-batch losses."""
    tokenizer.padding_side = "right"  # the head pools the last non-pad token
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.0)
    generator = torch.Generator().manual_seed(cfg.seed)
    model.train()
    losses = []
    for _ in range(cfg.epochs):
        order = torch.randperm(len(texts), generator=generator).tolist()
        for start in range(0, len(order), cfg.batch_size):
            batch = order[start : start + cfg.batch_size]
            encoded = tokenizer(
                [texts[i] for i in batch],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=cfg.max_length,
            ).to(model.device)
            logits = model(
                input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"]
            ).logits
            targets = torch.tensor([labels[i] for i in batch], device=model.device)
            loss = F.cross_entropy(logits.float(), targets)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
    model.eval()
    return losses
