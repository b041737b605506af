"""A tiny Llama and a word-level tokenizer built locally: no hub, for the demo and tests."""

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

# open-unlearning's plain template (configs/model/phi-1_5.yaml) for a QA pair
PROMPT = "Question: {}\nAnswer: "
SPECIAL_TOKENS = {
    "pad_token": "<pad>",
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
}


def qa_texts(rows):
    """Tokenizer training texts for QA rows, the template's own words included."""
    return [PROMPT.format("")] + [r[k] for r in rows for k in ("question", "answer")]


def encode_qa(tokenizer, row):
    """``(ids, start)``: a QA row's prompt and answer tokens and eos, as the host trains on
    them (the prompt tokenised alone is a prefix); the answer starts at ``start``."""
    prompt = PROMPT.format(row["question"])
    ids = tokenizer(prompt + row["answer"]).input_ids + [tokenizer.eos_token_id]
    return ids, len(tokenizer(prompt).input_ids)


def build_tokenizer(texts, vocab_size=8192) -> PreTrainedTokenizerFast:
    """Word-level: a prompt's tokens are a prefix of prompt+answer's, as the host assumes."""
    tokenizer = Tokenizer(models.WordLevel(unk_token=SPECIAL_TOKENS["unk_token"]))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS.values())
    )
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        model_input_names=["input_ids", "attention_mask"],
        **SPECIAL_TOKENS,
    )


def build_tiny_llama(
    out_dir,
    texts,
    hidden_size=64,
    num_layers=2,
    num_heads=4,
    vocab_size=8192,
    seed=0,
    **config_kwargs,
):
    """Save a random tiny Llama and its tokenizer (trained on ``texts``) to ``out_dir``."""
    tokenizer = build_tokenizer(texts, vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
        **config_kwargs,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
