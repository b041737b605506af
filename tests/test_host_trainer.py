"""ASU trainers inside open-unlearning's own trainer stack (host imported in-process)."""

import sys
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf
from transformers import PreTrainedModel

import asu_plugin

from conftest import LORA_ON_OUTPUT, qa_batch, tiny_model

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def host_src(host):
    sys.path.insert(0, str(host / "src"))
    import model
    import trainer

    asu_plugin.register()
    yield SimpleNamespace(trainer=trainer, model=model)
    sys.path.remove(str(host / "src"))


class ForgetRetain(torch.utils.data.Dataset):
    """Fixed forget/retain pairs of different lengths, like the host's unlearn data."""

    def __init__(self, size=4):
        g = torch.Generator().manual_seed(0)
        self.items = [
            {split: self.qa_item(6 + row, g) for split in ("forget", "retain")}
            for row in range(size)
        ]

    @staticmethod
    def qa_item(length, generator):
        input_ids = torch.randint(3, 96, (length,), generator=generator)
        labels = input_ids.clone()
        labels[:3] = -100  # the question
        return {"input_ids": input_ids, "labels": labels}

    def __len__(self):
        return len(self.items)

    def __getitem__(self, idx):
        return self.items[idx]


def build_trainer(
    host_src, tmp_path, model, handler="ASU_KL", method_args=None, **args
):
    from data.collators import DataCollatorForSupervisedDataset

    config = OmegaConf.create(
        {
            "handler": handler,
            "args": {
                "output_dir": str(tmp_path),
                "per_device_train_batch_size": 4,
                "gradient_accumulation_steps": 1,
                "max_steps": 1,
                "learning_rate": 0.5,
                "optim": "sgd",
                "lr_scheduler_type": "constant",
                "report_to": "none",
                "save_strategy": "no",
                "use_cpu": True,
                "remove_unused_columns": False,
                "seed": 0,
                **args,
            },
            "method_args": {"temperature": 2.3, "gamma": 1.0, **(method_args or {})},
        }
    )
    collator = DataCollatorForSupervisedDataset(SimpleNamespace(pad_token_id=0))
    trainer, _ = host_src.trainer.load_trainer(
        config, model=model, train_dataset=ForgetRetain(), data_collator=collator
    )
    return trainer


def test_registries_hold_asu(host_src):
    from asu_plugin.asu.models import AttentionSmoothedForCausalLM
    from asu_plugin.asu.trainers import ASU_GD, ASU_KL, ASU_RMU

    assert host_src.trainer.TRAINER_REGISTRY["ASU_GD"] is ASU_GD
    assert host_src.trainer.TRAINER_REGISTRY["ASU_KL"] is ASU_KL
    assert host_src.trainer.TRAINER_REGISTRY["ASU_RMU"] is ASU_RMU
    assert (
        host_src.model.MODEL_REGISTRY["AttentionSmoothedForCausalLM"]
        is AttentionSmoothedForCausalLM
    )
    from trainer.unlearn.grad_diff import GradDiff
    from trainer.unlearn.rmu import RMU

    assert issubclass(ASU_KL, ASU_GD) and issubclass(ASU_GD, GradDiff)
    assert issubclass(ASU_RMU, RMU)


def test_one_frozen_copy_serves_teacher_and_retain_reference(host_src, tmp_path):
    model = tiny_model("llama")
    trainer = build_trainer(host_src, tmp_path, model)
    models = {id(v) for v in vars(trainer).values() if isinstance(v, PreTrainedModel)}
    assert models == {id(model), id(trainer.ref_model)}
    ref_modules = set(map(id, trainer.ref_model.modules()))
    assert all(
        id(proj) in ref_modules for proj, _ in trainer.reference.smoothing._targets
    )


def test_training_moves_the_student_only(host_src, tmp_path):
    model = tiny_model("llama")
    start = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = build_trainer(host_src, tmp_path, model, max_steps=3, logging_steps=1)
    trainer.train()
    logged = [log for log in trainer.state.log_history if "loss" in log]
    assert len(logged) == 3
    for log in logged:  # loss = gamma * forget_kl + alpha * retain_loss, both 1
        assert log["forget_kl"] > 0 and log["retain_loss"] >= 0
        assert log["loss"] == pytest.approx(
            log["forget_kl"] + log["retain_loss"], rel=1e-3
        )
    assert not trainer.reference.smoothing.active
    for k, v in trainer.ref_model.state_dict().items():
        assert torch.equal(v, start[k]), k
    assert any(not torch.equal(v, start[k]) for k, v in model.state_dict().items())


def test_lora_student_makes_no_copy_and_moves_only_its_adapter(host_src, tmp_path):
    from peft import PeftModel

    lora = {
        "peft_type": "LORA",
        "r": 4,
        "lora_alpha": 8,
        "target_modules": "all-linear",
    }
    trainer = build_trainer(
        host_src,
        tmp_path,
        tiny_model("llama"),
        method_args={"peft": lora},
        max_steps=3,
        gradient_checkpointing=True,
    )
    assert isinstance(trainer.model, PeftModel) and trainer.ref_model is trainer.model
    trainer.train()

    inputs = qa_batch()
    inputs.pop("labels")
    student = trainer.model.eval()
    with torch.no_grad():
        original = tiny_model("llama")(**inputs).logits
        assert not torch.allclose(student(**inputs).logits, original, atol=1e-4)
        with student.disable_adapter():
            torch.testing.assert_close(student(**inputs).logits, original)


@pytest.mark.parametrize("handler", ["ASU_GD", "ASU_KL"])
def test_gradient_accumulation_matches_one_large_batch(host_src, tmp_path, handler):
    def one_step(batch_size, accumulation):
        model = tiny_model("llama")
        build_trainer(
            host_src,
            tmp_path / f"{batch_size}x{accumulation}",
            model,
            handler=handler,
            method_args={"retain_loss_type": "KL"},  # per-sequence means on both terms
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation,
        ).train()
        return model.state_dict()

    start = tiny_model("llama").state_dict()
    large, accumulated = one_step(4, 1), one_step(2, 2)
    assert any(not torch.equal(large[k], start[k]) for k in start)
    for k in large:
        torch.testing.assert_close(accumulated[k], large[k], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "method_args, error, message",
    [
        ({"temperature": 0}, ValueError, "finite number > 0"),
        ({"layers": [7]}, ValueError, "unknown attention layer index 7"),
        ({"layers": []}, ValueError, "selects no layer"),
        ({"retain_loss_type": "EMBED_DIFF"}, ValueError, "retain_loss_type"),
        ({"gamma": -1.0}, ValueError, "gamma, a loss term's weight"),
        ({"alpha": float("nan")}, ValueError, "alpha, a loss term's weight"),
    ],
)
def test_bad_method_args_fail_before_the_model_is_copied(
    host_src, tmp_path, method_args, error, message, monkeypatch
):
    from trainer.unlearn.grad_diff import GradDiff

    def no_copy(self, model):
        raise AssertionError("copied the model before validating")

    monkeypatch.setattr(GradDiff, "_prepare_ref_model", no_copy)
    with pytest.raises(error, match=message):
        build_trainer(host_src, tmp_path, tiny_model("llama"), method_args=method_args)


@pytest.mark.parametrize("missing", ["forget", "retain"])
def test_batch_without_forget_or_retain_is_refused(host_src, tmp_path, missing):
    trainer = build_trainer(host_src, tmp_path, tiny_model("llama"))
    inputs = {split: qa_batch() for split in ("forget", "retain") if split != missing}
    with pytest.raises(ValueError, match=f"needs a '{missing}' batch"):
        trainer.compute_unlearn_loss(trainer.model, inputs)


def test_unsupported_model_fails_at_construction(host_src, tmp_path):
    model = tiny_model("llama", pretraining_tp=2)
    with pytest.raises(ValueError, match="pretraining_tp=2"):
        build_trainer(host_src, tmp_path, model)


# ASU_RMU on the tiny 3-layer Llama: activations of layer 1, layers 0-1 down_proj train
RMU_ARGS = {
    "module_regex": r"model\.layers\.1",
    "trainable_params_regex": [r"model\.layers\.(0|1)\.mlp\.down_proj\.weight"],
    "retain_loss_type": "EMBED_DIFF",
    "gamma": 1.0,
}


def rmu_trainer(host_src, tmp_path, temperature=2.3, alpha=1.0, **args):
    method_args = {**RMU_ARGS, "temperature": temperature, "alpha": alpha}
    model = tiny_model("llama")
    return build_trainer(host_src, tmp_path, model, "ASU_RMU", method_args, **args)


def tempered_hidden_states(inputs, temperature, layer):
    """Layer ``layer``'s output of the frozen model with softmax(scores / τ) everywhere."""
    from unittest import mock

    model = tiny_model("llama")  # the same weights as the trainer's
    softmax = torch.nn.functional.softmax

    def tempered(scores, *args, **kwargs):
        return softmax(scores / temperature, *args, **kwargs)

    with mock.patch("torch.nn.functional.softmax", tempered), torch.no_grad():
        states = model(**inputs, output_hidden_states=True).hidden_states
    return states[layer + 1]


def test_asu_rmu_target_is_the_smoothed_frozen_models_activation(host_src, tmp_path):
    trainer = rmu_trainer(host_src, tmp_path)
    batch = qa_batch()
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    trainer._forget_inputs = inputs
    target = trainer.get_control_vector(32)
    expected = tempered_hidden_states(inputs, 2.3, layer=1)
    valid = batch["attention_mask"].bool()
    torch.testing.assert_close(target[valid], expected[valid], atol=1e-5, rtol=0)
    plain = tempered_hidden_states(inputs, 1.0, layer=1)
    assert (target[valid] - plain[valid]).abs().max() > 1e-3
    assert not trainer.teacher.active


@pytest.mark.parametrize("temperature", [1.0, 2.3])
def test_asu_rmu_forget_loss_at_step_0_is_zero_only_at_temperature_1(
    host_src, tmp_path, temperature
):
    trainer = rmu_trainer(
        host_src, tmp_path, temperature, alpha=0.0
    )  # forget term only
    batch = qa_batch()
    loss = trainer.compute_unlearn_loss(
        trainer.model, {"forget": batch, "retain": batch}
    )
    assert (loss.item() == 0.0) == (temperature == 1.0)


def test_asu_rmu_trains_only_the_selected_parameters_and_its_loss_falls(
    host_src, tmp_path
):
    trainer = rmu_trainer(host_src, tmp_path, max_steps=6, logging_steps=1)
    start = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    moved = {
        k for k, v in trainer.model.state_dict().items() if not torch.equal(v, start[k])
    }
    assert moved == {f"model.layers.{i}.mlp.down_proj.weight" for i in (0, 1)}
    for k, v in trainer.ref_model.state_dict().items():
        assert torch.equal(v, start[k]), k
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert len(losses) == 6
    assert all(
        later < earlier for earlier, later in zip(losses, losses[1:], strict=False)
    )


def step_loss_and_grads(trainer):
    """One training step's loss and gradients, on the first batch."""
    batch = next(iter(trainer.get_train_dataloader()))
    loss = trainer.compute_unlearn_loss(trainer.model.train(), batch)
    loss.backward()
    named = trainer.model.named_parameters()
    return loss.detach(), {n: p.grad for n, p in named if p.grad is not None}


@pytest.mark.parametrize("peft", [None, LORA_ON_OUTPUT], ids=["full", "lora"])
@pytest.mark.parametrize("handler", ["ASU_GD", "ASU_KL"])
def test_chunked_logits_give_the_full_logits_loss_and_gradients(
    host_src, tmp_path, handler, peft
):
    results = {}
    for chunk in (None, 1, 3, 10_000):
        torch.manual_seed(0)  # the same adapter initialisation
        args = {"logits_chunk_size": chunk, "peft": peft}
        trainer = build_trainer(
            host_src, tmp_path / str(chunk), tiny_model("llama"), handler, args
        )
        results[chunk] = step_loss_and_grads(trainer)
    full_loss, full_grads = results.pop(None)
    for loss, grads in results.values():
        torch.testing.assert_close(loss, full_loss, rtol=1e-5, atol=1e-7)
        assert grads.keys() == full_grads.keys()
        for name, grad in grads.items():
            torch.testing.assert_close(grad, full_grads[name], rtol=1e-5, atol=1e-6)
