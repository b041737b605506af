"""The paper's baselines (ME, IDK) inside open-unlearning's trainer stack: losses on fixed
batches against independent computations, training direction, bad input."""

import sys
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf
from torch.distributions import Categorical, kl_divergence

import asu_plugin

from conftest import qa_batch, tiny_model

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def host_src(host):
    sys.path.insert(0, str(host / "src"))
    import data
    import model
    import trainer

    asu_plugin.register()
    yield SimpleNamespace(trainer=trainer, model=model, data=data)
    sys.path.remove(str(host / "src"))


def qa_item(length, generator):
    input_ids = torch.randint(3, 96, (length,), generator=generator)
    labels = input_ids.clone()
    labels[:3] = -100  # the question
    return {"input_ids": input_ids, "labels": labels}


class ForgetRetain(torch.utils.data.Dataset):
    """Fixed items of different lengths; with ``refusals`` each split holds an "original"
    and an "alternate" (refusal) item, like the host's QAwithIdkDataset."""

    def __init__(self, refusals, size=4):
        g = torch.Generator().manual_seed(0)

        def split(row):
            if not refusals:
                return qa_item(6 + row, g)
            return {"original": qa_item(6 + row, g), "alternate": qa_item(5, g)}

        self.items = [{"forget": split(r), "retain": split(r)} for r in range(size)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, idx):
        return self.items[idx]


def build_trainer(host_src, tmp_path, handler, method_args=None, model=None, **args):
    from data.collators import DataCollatorForSupervisedDataset

    config = OmegaConf.create(
        {
            "handler": handler,
            "args": {
                "output_dir": str(tmp_path),
                "per_device_train_batch_size": 4,
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
            "method_args": method_args or {},
        }
    )
    collator = DataCollatorForSupervisedDataset(SimpleNamespace(pad_token_id=0))
    trainer, _ = host_src.trainer.load_trainer(
        config,
        model=model if model is not None else tiny_model("llama"),
        train_dataset=ForgetRetain(refusals=handler.startswith("IDK")),
        data_collator=collator,
    )
    return trainer


def loss_of(trainer, inputs):
    """The training loss (host main: compute_loss; PR #175: compute_unlearn_loss)."""
    with torch.no_grad():
        return trainer.compute_loss(trainer.model.train(), inputs).item()


def uniform_kl_by_loop(model, batch, include_question):
    """KL(uniform ‖ model) at each counted position, one Categorical at a time, averaged."""
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).logits
    vocab = logits.shape[-1]
    uniform = Categorical(probs=torch.full((vocab,), 1.0 / vocab))
    attended, labels = batch["attention_mask"], batch["labels"]
    terms = []
    for row in range(logits.shape[0]):
        for t in range(logits.shape[1] - 1):
            if include_question:
                counted = bool(attended[row, t] and attended[row, t + 1])
            else:
                counted = labels[row, t + 1].item() != -100
            if counted:
                terms.append(kl_divergence(uniform, Categorical(logits=logits[row, t])))
    return torch.stack(terms).mean().item()


def nll_by_loop(model, batch):
    """Per sequence: summed -log p(label) over the label tokens."""
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).logits
    sums = []
    for row in range(logits.shape[0]):
        total = 0.0
        for t in range(logits.shape[1] - 1):
            label = batch["labels"][row, t + 1].item()
            if label != -100:
                total -= torch.log_softmax(logits[row, t], -1)[label].item()
        sums.append(total)
    return torch.tensor(sums)


def test_registries_hold_the_baselines_and_the_refusal_dataset(host_src):
    from trainer.unlearn.grad_diff import GradDiff

    from asu_plugin.baselines.data import IdkQADataset
    from asu_plugin.baselines.idk import IDK_AP, IDK_GD, IDK_KL
    from asu_plugin.baselines.me import ME_GD, ME_KL

    registry = host_src.trainer.TRAINER_REGISTRY
    for cls in (ME_GD, ME_KL, IDK_GD, IDK_KL, IDK_AP):
        assert registry[cls.__name__] is cls and issubclass(cls, GradDiff)
    assert host_src.data.DATASET_REGISTRY["IdkQADataset"] is IdkQADataset


@pytest.mark.parametrize("include_question", [True, False])
def test_me_loss_is_gamma_uniform_kl_plus_alpha_retain_nll(
    host_src, tmp_path, include_question
):
    gamma, alpha = 0.3, 2.0
    trainer = build_trainer(
        host_src,
        tmp_path,
        "ME_GD",
        {"gamma": gamma, "alpha": alpha, "include_question": include_question},
    )
    forget, retain = qa_batch(seed=0), qa_batch(seed=1)
    model = trainer.model
    with torch.no_grad():
        forget_kl = uniform_kl_by_loop(model, forget, include_question)
        nll = nll_by_loop(model, retain)
    retain_nll = (nll.sum() / (retain["labels"][:, 1:] != -100).sum()).item()
    expected = gamma * forget_kl + alpha * retain_nll
    got = loss_of(trainer, {"forget": forget, "retain": retain})
    assert got == pytest.approx(expected, rel=1e-5)


def test_me_counts_the_question_tokens_only_when_asked(host_src, tmp_path):
    forget = qa_batch(seed=0)
    losses = [
        build_trainer(
            host_src, tmp_path / str(q), "ME_GD", {"include_question": q}
        ).compute_forget_loss(tiny_model("llama"), {"forget": forget})[0]
        for q in (True, False)
    ]
    assert losses[0].item() != pytest.approx(losses[1].item(), rel=1e-3)


def test_me_kl_retain_is_the_hosts_kl_to_the_start(host_src, tmp_path):
    from trainer.utils import compute_kl_divergence

    trainer = build_trainer(host_src, tmp_path, "ME_KL", {"gamma": 0.0})
    retain = qa_batch(seed=1)
    student = trainer.model  # the host's KL reads the trainer's model
    with torch.no_grad():
        for parameter in student.parameters():  # move it off the frozen start
            parameter.add_(0.05 * torch.randn_like(parameter))
        expected = compute_kl_divergence(student, trainer.ref_model, retain)[0]
        got = trainer.compute_unlearn_loss(
            student, {"forget": qa_batch(seed=0), "retain": retain}
        )
    assert expected.item() > 0
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def idk_inputs():
    return {
        split: {"original": qa_batch(seed=2 * i), "alternate": qa_batch(seed=2 * i + 1)}
        for i, split in enumerate(("forget", "retain"))
    }


def test_idk_gd_loss_is_refusal_nll_plus_retain_nll(host_src, tmp_path):
    gamma, alpha = 0.5, 3.0
    trainer = build_trainer(
        host_src, tmp_path, "IDK_GD", {"gamma": gamma, "alpha": alpha}
    )
    inputs = idk_inputs()
    with torch.no_grad():
        means = []
        for batch in (inputs["forget"]["alternate"], inputs["retain"]["original"]):
            tokens = (batch["labels"][:, 1:] != -100).sum()
            means.append((nll_by_loop(trainer.model, batch).sum() / tokens).item())
    got = loss_of(trainer, inputs)
    assert got == pytest.approx(gamma * means[0] + alpha * means[1], rel=1e-5)


def test_idk_ap_retain_term_against_its_formula(host_src, tmp_path):
    beta = 0.1
    trainer = build_trainer(
        host_src, tmp_path, "IDK_AP", {"gamma": 0.0, "alpha": 1.0, "beta": beta}
    )
    inputs = idk_inputs()
    with torch.no_grad():
        answer = nll_by_loop(trainer.model, inputs["retain"]["original"])
        refusal = nll_by_loop(trainer.model, inputs["retain"]["alternate"])
    # -log σ(x) = log(1 + e^-x), by hand
    x = beta * (refusal - answer)
    expected = (torch.log1p(torch.exp(-x)).mean() / beta).item()
    assert loss_of(trainer, inputs) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("handler", ["ME_GD", "IDK_AP"])
def test_training_moves_the_forget_term_the_right_way(host_src, tmp_path, handler):
    trainer = build_trainer(
        host_src,
        tmp_path,
        handler,
        {"alpha": 0.0},
        max_steps=5,
        learning_rate=0.05,
        optim="adamw_torch",
    )
    inputs = next(iter(trainer.get_train_dataloader()))
    before = trainer.compute_forget_loss(trainer.model, inputs)[0].item()
    trainer.train()
    after = trainer.compute_forget_loss(trainer.model.eval(), inputs)[0].item()
    assert after < 0.8 * before, (before, after)


@pytest.mark.parametrize(
    "handler, method_args, message",
    [
        ("ME_GD", {"retain_loss_type": "AP"}, "retain_loss_type must be one of"),
        ("ME_GD", {"gamma": -1.0}, "gamma, a loss term's weight"),
        ("IDK_GD", {"alpha": float("inf")}, "alpha, a loss term's weight"),
        ("IDK_AP", {"beta": 0}, "beta must be a finite number > 0"),
    ],
)
def test_bad_method_args_fail_early(host_src, tmp_path, handler, method_args, message):
    with pytest.raises(ValueError, match=message):
        build_trainer(host_src, tmp_path, handler, method_args)


def test_idk_ap_without_refusals_on_retain_says_which_data(host_src, tmp_path):
    trainer = build_trainer(host_src, tmp_path, "IDK_AP")
    inputs = idk_inputs()
    inputs["retain"] = inputs["retain"]["original"]
    with pytest.raises(ValueError, match="retain.original.*TOFU_QA_retain_idk"):
        trainer.compute_loss(trainer.model.train(), inputs)


def test_missing_refusal_file_is_a_clear_error(host_src, tmp_path):
    from asu_plugin.baselines.data import IdkQADataset

    with pytest.raises(FileNotFoundError, match="idk_path .*nowhere.jsonl.*setup_data"):
        IdkQADataset(
            idk_path=str(tmp_path / "nowhere.jsonl"),
            hf_args={},
            template_args={},
            tokenizer=None,
        )


@pytest.mark.parametrize("handler", ["ME_GD", "ME_KL"])
def test_me_with_chunked_logits_gives_the_full_logits_loss_and_gradients(
    host_src, tmp_path, handler
):
    results = {}
    for chunk in (None, 1, 10_000):
        trainer = build_trainer(
            host_src, tmp_path / str(chunk), handler, {"logits_chunk_size": chunk}
        )
        batch = next(iter(trainer.get_train_dataloader()))
        loss = trainer.compute_unlearn_loss(trainer.model.train(), batch)
        loss.backward()
        named = trainer.model.named_parameters()
        results[chunk] = loss.detach(), {n: p.grad for n, p in named}
    full_loss, full_grads = results.pop(None)
    for loss, grads in results.values():
        torch.testing.assert_close(loss, full_loss, rtol=1e-5, atol=1e-7)
        for name, grad in grads.items():
            torch.testing.assert_close(grad, full_grads[name], rtol=1e-5, atol=1e-6)


def test_the_baselines_refuse_an_adapter(host_src, tmp_path):
    lora = {"peft_type": "LORA", "r": 4, "target_modules": "all-linear"}
    with pytest.raises(ValueError, match="baselines train all weights"):
        build_trainer(host_src, tmp_path, "ME_GD", {"peft": lora})
