"""Target and retain models: a tiny Llama, or a pretrained model, finetuned on a TOFU-format
QA set through the host.

In a ``Runs`` folder: ``data/`` (the set, loaded as ``locuslab/TOFU``), ``tiny/`` (the untrained
Llama and its tokenizer, unless a pretrained model is the start), ``target/`` (finetuned on every
author) and ``retain/`` (the forget authors held out). ``setup.json`` records the ``Setup`` they
come from; another is refused.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from asu_plugin.workflows.builders.authors import generate
from asu_plugin.workflows.builders.tiny import build_tiny_llama, qa_texts
from asu_plugin.workflows.builders.tofu_format import read_jsonl
from asu_plugin.workflows.run.host import link_tofu
from asu_plugin.workflows.run.runs import Recipe

FINETUNE = Recipe(60, 3e-3, 16)  # the generated authors memorised (answer prob ≈ 1)
TINY_LLAMA = {"hidden_size": 128, "num_layers": 4}  # build_tiny_llama arguments
# model -> the QA split it is finetuned on, and what it is
MODELS = {
    "target": ("finetune", "all authors"),
    "retain": ("retain_finetune", "forget authors held out"),
}


@dataclass(frozen=True)
class Setup:
    """What the target and retain models depend on: the QA set, the model, the finetuning.

    ``write_data(out_dir=..., **data_args)`` writes the set (an ``authors`` writer). The
    model is ``pretrained`` (a model folder) if given, else a tiny Llama built with ``model``.
    """

    write_data: Callable = generate
    data_args: dict = field(default_factory=dict)
    model: dict = field(default_factory=lambda: dict(TINY_LLAMA))
    recipe: Recipe = FINETUNE
    pretrained: Path | None = None

    def record(self):
        return {
            "data": self.write_data.__name__,
            "data_args": self.data_args,
            "model": Path(self.pretrained).name if self.pretrained else self.model,
            "finetune": self.recipe._asdict(),
        }


GENERATED = Setup()  # the demo's: generated authors, a 4-layer Llama, FINETUNE


def prepare(runs, setup=GENERATED, names=("target", "retain")):
    """The folders of the ``names`` models of ``setup`` in ``runs``, trained unless there."""
    start = base(runs, setup)
    return {name: finetune(runs, name, setup.recipe, start) for name in names}


def base(runs, setup=GENERATED):
    """The model ``setup``'s target and retain models are finetuned from.

    Claims the folder for ``setup`` first; then writes the set and, unless ``setup`` starts
    from a pretrained model, the tiny Llama.
    """
    runs.claim({**setup.record(), "device": runs.device})
    data = runs.out / "data"
    sizes = setup.write_data(out_dir=data, **setup.data_args)
    link_tofu(runs.out, data)
    start, built = setup.pretrained, ""
    if start is None:
        texts = qa_texts(
            split_rows(runs.out, "finetune")
        )  # every author and general QA
        start = build_tiny_llama(runs.model_dir("tiny"), texts, **setup.model)
        built = " and a tiny Llama"
    runs.stage(f"wrote {sizes['full']} author QA (forget {sizes['forget10']}){built}")
    return start


def finetune(runs, name, recipe, start=None, weight_decay=0.0):
    """``runs``' ``name`` model (target or retain), finetuned from ``start`` (default: the
    tiny Llama) with the host's TOFU finetuning, unless it is there already."""
    split, what = MODELS[name]
    overrides = [
        "experiment=finetune/tofu/default",
        f"data.train.TOFU_QA_full.args.hf_args.name={split}",
        f"trainer.args.weight_decay={weight_decay}",
    ]
    stage = f"finetuning the {name} model ({what}) with src/train.py"
    return runs.ensure_model(
        name, start or runs.model_dir("tiny"), overrides, recipe, stage=stage
    )


def split_rows(out, split):
    """The QA rows of one split of the set in work folder ``out``."""
    return read_jsonl(Path(out) / "data" / f"{split}.jsonl")
