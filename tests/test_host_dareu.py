"""DareU inside open-unlearning's own trainer stack (host imported in-process), on a tiny
Llama and tokenizer and a tiny owner classifier that reads the same words."""

import inspect
import sys
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoModelForCausalLM

import asu_plugin
from asu_plugin.core.inputs import pack
from asu_plugin.dareu.classifier import OTHER, OwnerClassifier
from asu_plugin.workflows.builders.authors import generate
from asu_plugin.workflows.builders.tiny import (
    build_tiny_llama,
    build_tokenizer,
    encode_qa,
    qa_texts,
)
from asu_plugin.workflows.builders.tofu_format import read_jsonl

from conftest import LORA_ON_OUTPUT, build_tiny_classifier

pytestmark = pytest.mark.host
OWNERS = [f"author_{k}" for k in range(20)]
FORGET_OWNERS = ["author_18", "author_19"]


@pytest.fixture(scope="module")
def host_src(host):
    sys.path.insert(0, str(host / "src"))
    import model  # noqa: F401
    import trainer

    asu_plugin.register()
    yield SimpleNamespace(trainer=trainer)
    sys.path.remove(str(host / "src"))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Demo data, a tiny Llama, its tokenizer and a tiny classifier reading its words."""
    out = tmp_path_factory.mktemp("dareu")
    generate(out / "data")
    rows = {
        s: read_jsonl(out / "data" / f"{s}.jsonl") for s in ("forget10", "retain90")
    }
    texts = qa_texts(read_jsonl(out / "data" / "finetune.jsonl"))
    policy = build_tiny_llama(out / "tiny", texts, hidden_size=32, num_layers=2)
    tokenizer = build_tokenizer(texts)
    classifier = build_tiny_classifier(
        out / "classifier", tokenizer, [*OWNERS, OTHER], FORGET_OWNERS
    )
    return SimpleNamespace(
        out=out, rows=rows, policy=policy, tokenizer=tokenizer, classifier=classifier
    )


class ForgetRetain(torch.utils.data.Dataset):
    """Host-like unlearn items: forget row i with retain row i (answer and eos labelled)."""

    def __init__(self, tokenizer, rows):
        self.items = [
            {"forget": qa_item(tokenizer, f), "retain": qa_item(tokenizer, r)}
            for f, r in zip(rows["forget10"], rows["retain90"], strict=False)
        ]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, idx):
        return self.items[idx]


def qa_item(tokenizer, row):
    ids, start = encode_qa(tokenizer, row)
    input_ids = torch.tensor(ids)
    labels = input_ids.clone()
    labels[:start] = -100
    return {"input_ids": input_ids, "labels": labels}


def build_trainer(host_src, world, tmp_path, method_args=None, **args):
    from data.collators import DataCollatorForSupervisedDataset

    config = OmegaConf.create(
        {
            "handler": "DareU",
            "args": {
                "output_dir": str(tmp_path),
                "per_device_train_batch_size": 2,
                "gradient_accumulation_steps": 1,
                "max_steps": 1,
                "learning_rate": 0.05,
                "optim": "sgd",
                "lr_scheduler_type": "constant",
                "report_to": "none",
                "save_strategy": "no",
                "use_cpu": True,
                "remove_unused_columns": False,
                "seed": 0,
                **args,
            },
            "method_args": {
                "classifier": str(world.classifier),
                "num_samples": 2,
                "max_new_tokens": 4,
                **(method_args or {}),
            },
        }
    )
    load = host_src.trainer.load_trainer
    # host main passes the tokenizer as tokenizer=, its transformers-4.51 port as
    # processing_class=
    tokenizer_arg = (
        "processing_class"
        if "processing_class" in inspect.signature(load).parameters
        else "tokenizer"
    )
    trainer, _ = load(
        config,
        model=AutoModelForCausalLM.from_pretrained(world.policy),
        train_dataset=ForgetRetain(world.tokenizer, world.rows),
        data_collator=DataCollatorForSupervisedDataset(world.tokenizer),
        **{tokenizer_arg: world.tokenizer},
    )
    return trainer


def test_registry_holds_dareu(host_src):
    from trainer.unlearn.grad_diff import GradDiff

    from asu_plugin.dareu.trainer import DareU

    assert host_src.trainer.TRAINER_REGISTRY["DareU"] is DareU
    assert issubclass(DareU, GradDiff)


def test_first_step_has_zero_kl_retain_and_surrogate(host_src, world, tmp_path):
    trainer = build_trainer(host_src, world, tmp_path, {"num_samples": 4})
    batch = next(iter(trainer.get_train_dataloader()))
    loss = trainer.compute_unlearn_loss(trainer.model, batch)
    reward, kl, retain, clip_share = (trainer._term_sums / trainer._term_count).tolist()
    assert abs(kl) < 1e-6 and abs(retain) < 1e-6 and clip_share == 0
    # at ratio 1 the surrogate is the mean advantage: 0 after normalising each group
    assert abs(loss.item()) < 1e-5
    assert -1 <= reward <= 0
    rollout = trainer._rollouts[0]
    assert rollout["inputs"]["input_ids"].shape[0] == 2 * 4  # batch x num_samples
    texts = world.tokenizer.batch_decode(
        rollout["inputs"]["input_ids"], skip_special_tokens=True
    )
    expected = OwnerClassifier(world.classifier).load().rewards(texts)
    torch.testing.assert_close(rollout["rewards"], expected)


def response_logprobs(model, prompt, responses):
    inputs = pack([prompt] * len(responses), responses, pad_id=0)
    with torch.no_grad():
        logits = model(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
        ).logits
    targets = inputs["labels"][:, 1:]
    logprobs = (
        logits[:, :-1].log_softmax(-1).gather(-1, targets.clamp(min=0)[..., None])
    )
    return (logprobs[..., 0] * (targets != -100)).sum(-1)


@pytest.mark.parametrize("favoured", [0, 1])
def test_update_raises_the_rewarded_response_and_lowers_the_other(
    host_src, world, tmp_path, favoured
):
    trainer = build_trainer(host_src, world, tmp_path, per_device_train_batch_size=1)
    prompt = qa_item(world.tokenizer, world.rows["forget10"][0])["input_ids"][:6]
    ids = world.tokenizer.convert_tokens_to_ids
    responses = [
        torch.tensor(ids(["Lisbon", "</s>"])),
        torch.tensor(ids(["Oslo", "Oslo", "</s>"])),
    ]
    trainer.sample = lambda model, prompts: responses
    fixed = torch.zeros(2)
    fixed[1 - favoured] = -1.0  # the favoured response has the higher reward
    trainer.rewards = lambda texts: fixed
    start = response_logprobs(trainer.model, prompt, responses)
    trainer.train()
    moved = response_logprobs(trainer.model, prompt, responses) - start
    assert moved[favoured] > 0 > moved[1 - favoured], moved


def test_steps_per_rollout_reuses_one_rollout(host_src, world, tmp_path):
    trainer = build_trainer(
        host_src,
        world,
        tmp_path,
        {"steps_per_rollout": 2},
        max_steps=4,
        logging_steps=1,
    )
    calls = []
    sample = trainer.sample
    trainer.sample = lambda model, prompts: calls.append(1) or sample(model, prompts)
    trainer.train()
    assert len(calls) == 2
    logs = [log for log in trainer.state.log_history if "loss" in log]
    assert [set(LOGGED_KEYS) <= set(log) for log in logs] == [True] * 4
    assert logs[1]["reward"] == logs[0]["reward"]  # the same samples, rescored by PPO
    assert logs[1]["kl"] > 0  # the reused rollout meets a model one step on


LOGGED_KEYS = ("reward", "kl", "retain_loss", "clip_share")


def test_lora_policy_makes_no_copy_and_moves_only_its_adapter(
    host_src, world, tmp_path
):
    from peft import PeftModel

    lora = {
        "peft_type": "LORA",
        "r": 4,
        "lora_alpha": 8,
        "target_modules": "all-linear",
    }
    trainer = build_trainer(
        host_src,
        world,
        tmp_path,
        {"peft": lora},
        max_steps=2,
        gradient_checkpointing=True,
        learning_rate=0.5,
    )
    assert isinstance(trainer.model, PeftModel) and trainer.ref_model is trainer.model
    trainer.train()
    inputs = torch.arange(3, 20)[None]
    original = AutoModelForCausalLM.from_pretrained(world.policy).eval()
    student = trainer.model.eval()
    with torch.no_grad():
        plain = original(inputs).logits
        assert not torch.allclose(student(inputs).logits, plain, atol=1e-5)
        with student.disable_adapter():
            torch.testing.assert_close(student(inputs).logits, plain)


@pytest.mark.parametrize(
    "method_args, error, message",
    [
        ({"classifier": "/nowhere/at/all"}, FileNotFoundError, "no owner classifier"),
        ({"classifier": None}, ValueError, "needs classifier="),
        ({"owners": ["author_77"]}, ValueError, r"unknown owners \['author_77'\]"),
        ({"num_samples": 1}, ValueError, "num_samples .* >= 2"),
        ({"max_new_tokens": 0}, ValueError, "max_new_tokens must be an integer >= 1"),
        ({"steps_per_rollout": 0}, ValueError, "steps_per_rollout"),
        ({"clip": 0}, ValueError, "clip must be a finite number > 0"),
        ({"beta": -1}, ValueError, "beta, a loss term's weight"),
    ],
)
def test_bad_method_args_fail_before_any_model_is_copied_or_loaded(
    host_src, world, tmp_path, method_args, error, message, monkeypatch
):
    refuse_loading(monkeypatch)
    with pytest.raises(error, match=message):
        build_trainer(host_src, world, tmp_path, method_args)


def refuse_loading(monkeypatch):
    from trainer.unlearn.grad_diff import GradDiff

    def no_load(*args, **kwargs):
        raise AssertionError("loaded or copied a model before validating")

    monkeypatch.setattr(GradDiff, "_prepare_ref_model", no_load)
    monkeypatch.setattr(OwnerClassifier, "load", no_load)


def test_classifier_without_the_forget_owners_is_refused(
    host_src, world, tmp_path, monkeypatch
):
    folder = build_tiny_classifier(
        tmp_path / "c", world.tokenizer, ["author_0", "author_1", OTHER]
    )
    refuse_loading(monkeypatch)
    with pytest.raises(ValueError, match="records no forget_owners"):
        build_trainer(host_src, world, tmp_path, {"classifier": str(folder)})
    with pytest.raises(
        ValueError, match=r"unknown owners \['author_18', 'author_19'\]"
    ):
        build_trainer(
            host_src,
            world,
            tmp_path,
            {"classifier": str(folder), "owners": FORGET_OWNERS},
        )


def test_classifier_tokenizer_that_cannot_read_the_policy_is_refused(
    host_src, world, tmp_path, monkeypatch
):
    other = build_tokenizer(["Quelle est la capitale du Pérou ? Lima ."])
    folder = build_tiny_classifier(
        tmp_path / "c", other, [*OWNERS, OTHER], FORGET_OWNERS
    )
    refuse_loading(monkeypatch)
    with pytest.raises(ValueError, match="cannot read the policy's text"):
        build_trainer(host_src, world, tmp_path, {"classifier": str(folder)})


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_chunked_logits_give_the_full_logits_loss_and_gradients(
    host_src, world, tmp_path, lora
):
    results = {}
    for chunk in (None, 1, 10_000):
        torch.manual_seed(0)  # the same adapter and the same sampled responses
        args = {"logits_chunk_size": chunk, "peft": LORA_ON_OUTPUT if lora else None}
        trainer = build_trainer(host_src, world, tmp_path / str(chunk), args)
        batch = next(iter(trainer.get_train_dataloader()))
        loss = trainer.compute_unlearn_loss(trainer.model.train(), batch)
        loss.backward()
        named = trainer.model.named_parameters()
        grads = {n: p.grad for n, p in named if p.grad is not None}
        results[chunk] = loss.detach(), grads, trainer._rollouts[0]["rewards"]
    full_loss, full_grads, full_rewards = results.pop(None)
    assert full_grads
    for loss, grads, rewards in results.values():
        torch.testing.assert_close(rewards, full_rewards)  # the same rollout
        torch.testing.assert_close(loss, full_loss, rtol=1e-5, atol=1e-7)
        assert grads.keys() == full_grads.keys()
        for name, grad in grads.items():
            torch.testing.assert_close(grad, full_grads[name], rtol=1e-5, atol=1e-6)
