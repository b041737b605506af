"""open-unlearning's own src/train.py and src/eval.py, run with ASU, on a tiny local Llama
and the demo's generated authors in TOFU's format."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from asu_plugin import Reference
from asu_plugin.workflows.builders.authors import generate
from asu_plugin.workflows.builders.tiny import build_tiny_llama, encode_qa, qa_texts
from asu_plugin.workflows.builders.tofu_format import read_jsonl
from asu_plugin.workflows.run.host import NO_EVAL, device_overrides, link_tofu, run_host

pytestmark = pytest.mark.host
TAU = 2.3
EVAL_SPLITS = ["forget_split=forget10", "holdout_split=holdout10"]
SPLITS = [*EVAL_SPLITS, "retain_split=retain90"]
# all of the host's TOFU metrics but forget_Q_A_Prob: the full set takes minutes on a CPU
OTHER_TOFU_METRICS = (
    "forget_truth_ratio",
    "forget_quality",
    "forget_Q_A_ROUGE",
    "model_utility",
    "privleak",
    "extraction_strength",
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """The host's working folder, its locuslab/TOFU the generated authors in data/."""
    run_dir = tmp_path_factory.mktemp("host_run")
    generate(run_dir / "data")
    link_tofu(run_dir, run_dir / "data")
    return run_dir


def split(run_dir, name):
    return read_jsonl(run_dir / "data" / f"{name}.jsonl")


@pytest.fixture(scope="module")
def tiny(run_dir):
    texts = qa_texts(split(run_dir, "full"))
    # peaked attention, so the smoothed teacher differs from the model
    return build_tiny_llama(run_dir / "tiny", texts, initializer_range=0.2)


def model_overrides(path):
    return [
        "model=phi-1_5",  # plain "Question: ... Answer:" template
        f"model.model_args.pretrained_model_name_or_path={path}",
        f"model.tokenizer_args.pretrained_model_name_or_path={path}",
    ]


def check(result):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return result


def qa_batch_from(tokenizer, rows):
    """Host-like QA items: loss on the answer and EOS only."""
    input_ids, labels = [], []
    for row in rows:
        ids, start = encode_qa(tokenizer, row)
        input_ids.append(torch.tensor(ids))
        labels.append(torch.tensor([-100] * start + ids[start:]))
    pad = torch.nn.utils.rnn.pad_sequence
    input_ids = pad(input_ids, batch_first=True, padding_value=tokenizer.pad_token_id)
    return {
        "input_ids": input_ids,
        "attention_mask": input_ids.ne(tokenizer.pad_token_id),
        "labels": pad(labels, batch_first=True, padding_value=-100),
    }


def test_user_command_composes_with_the_plugin_on_the_search_path(host, run_dir):
    user_command = ["--config-name=unlearn.yaml", "experiment=unlearn/tofu/default"]
    result = check(
        run_host(
            host,
            "train.py",
            [*user_command, "trainer=ASU_KL", "--info", "searchpath"],
            run_dir,
            capture_output=True,
        )
    )
    assert "pkg://asu_plugin.configs" in result.stdout


def unlearn(host, run_dir, tiny, trainer, task, extra):
    """Host src/train.py on forget10 / retain90, batch 4, no evaluation."""
    overrides = [
        "--config-name=unlearn.yaml",
        "experiment=unlearn/tofu/default",
        f"trainer={trainer}",
        f"task_name={task}",
        *model_overrides(tiny),
        *SPLITS,
        *device_overrides(),
        "trainer.args.per_device_train_batch_size=4",
        "trainer.args.gradient_accumulation_steps=1",
        "trainer.args.do_eval=false",
        "trainer.args.eval_on_start=false",
        "trainer.args.eval_strategy=no",
        f"paths.root_dir={run_dir}",
        *extra,
    ]
    check(run_host(host, "train.py", overrides, run_dir, capture_output=True))
    return run_dir / "saves" / "unlearn" / task


@pytest.mark.parametrize("trainer", ["ASU_GD", "ASU_KL"])
def test_train_unlearns_and_saves_a_plain_checkpoint(host, run_dir, tiny, trainer):
    saved = unlearn(
        host,
        run_dir,
        tiny,
        trainer,
        f"tiny_{trainer}",
        [
            f"trainer.method_args.temperature={TAU}",
            "trainer.method_args.gamma=5.0",
            "trainer.args.num_train_epochs=5",  # 20 steps on 14 forget rows
            "trainer.args.learning_rate=3e-3",
        ],
    )
    unlearned = AutoModelForCausalLM.from_pretrained(saved).eval()
    original = AutoModelForCausalLM.from_pretrained(tiny).eval()
    # save bookkeeping, and use_cache that transformers 5's Trainer turns off for training
    bookkeeping = {
        "_name_or_path",
        "transformers_version",
        "torch_dtype",
        "dtype",
        "use_cache",
    }
    configs = [json.loads((d / "config.json").read_text()) for d in (saved, tiny)]
    assert [{k: v for k, v in c.items() if k not in bookkeeping} for c in configs] == [
        {k: v for k, v in configs[1].items() if k not in bookkeeping}
    ] * 2

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    forget = qa_batch_from(tokenizer, split(run_dir, "forget10"))
    retain = qa_batch_from(tokenizer, split(run_dir, "retain90")[:40])
    reference = Reference(original, TAU)

    with torch.no_grad():
        kl_before = reference.kl(original, forget, smoothed=True)[0].item()
        kl_after = reference.kl(unlearned, forget, smoothed=True)[0].item()
        nll_before = original(**retain).loss.item()
        nll_after = unlearned(**retain).loss.item()
    assert kl_after < 0.5 * kl_before, (kl_before, kl_after)
    assert nll_after < 1.05 * nll_before, (nll_before, nll_after)


def test_train_with_lora_saves_an_adapter_that_loads_with_peft(host, run_dir, tiny):
    from peft import PeftModel

    lora = "{peft_type: LORA, r: 4, lora_alpha: 8, target_modules: [q_proj, v_proj]}"
    saved = unlearn(
        host,
        run_dir,
        tiny,
        "ASU_KL",
        "tiny_ASU_KL_lora",
        [
            f"trainer.method_args.peft={lora}",
            "trainer.args.gradient_checkpointing=true",
            "+trainer.args.max_steps=3",
            "trainer.args.learning_rate=1e-2",
        ],
    )
    assert (saved / "adapter_config.json").is_file()
    assert not (saved / "model.safetensors").exists()  # an adapter, not a model
    base = AutoModelForCausalLM.from_pretrained(tiny).eval()
    plain = base(torch.arange(3, 20)[None]).logits
    adapted = PeftModel.from_pretrained(base, saved).eval()
    with torch.no_grad():
        logits = adapted(torch.arange(3, 20)[None]).logits
        assert not torch.allclose(logits, plain)  # the adapter trained
        with adapted.disable_adapter():  # the base was left as it was
            torch.testing.assert_close(adapted(torch.arange(3, 20)[None]).logits, plain)


def test_eval_scores_the_smoothed_teacher(host, run_dir, tiny):
    def forget_prob(name, extra):
        out = run_dir / "evals" / name
        overrides = [
            "experiment=eval/tofu/default",
            f"task_name={name}",
            *model_overrides(tiny),
            *EVAL_SPLITS,
            "model.model_args.device_map=cpu",
            f"paths.output_dir={out}",
            *(f"~eval.tofu.metrics.{metric}" for metric in OTHER_TOFU_METRICS),
            *extra,
        ]
        check(run_host(host, "eval.py", overrides, run_dir, capture_output=True))
        return json.loads((out / "TOFU_SUMMARY.json").read_text())["forget_Q_A_Prob"]

    plain = forget_prob("plain", [])
    smoothed = forget_prob(
        "teacher",
        [
            "+model.model_handler=AttentionSmoothedForCausalLM",
            f"+model.model_args.attention_temperature={TAU}",
        ],
    )
    assert smoothed != pytest.approx(plain, rel=1e-3)


def test_asu_rmu_trains_through_the_host_on_wmdp_shaped_text(host, run_dir, tiny):
    """The WMDP experiment with ASU_RMU on forget / retain text corpora made here."""
    corpora = {}
    for part, name in (("forget", "forget10"), ("retain", "retain90")):
        corpora[part] = run_dir / f"wmdp-{part}-corpus.jsonl"
        rows = [
            {"text": f"{r['question']} {r['answer']}"} for r in split(run_dir, name)
        ]
        corpora[part].write_text("".join(json.dumps(row) + "\n" for row in rows))
    task = "wmdp_asu_rmu"
    overrides = [
        "--config-name=unlearn.yaml",
        "experiment=unlearn/wmdp/asu_rmu",
        f"task_name={task}",
        *model_overrides(tiny),
        *(o for o in device_overrides() if "warmup_epochs" not in o),  # RMU has none
        *(f"trainer.args.{k}" for k in ("do_eval=false", "eval_on_start=false")),
        "trainer.args.eval_strategy=no",
        "trainer.args.max_steps=3",
        "trainer.method_args.module_regex=model.layers.1",
        "trainer.method_args.trainable_params_regex=['model.layers.(0|1).mlp.down_proj.weight']",
        f"data.forget.WMDP_forget.args.hf_args.data_files={corpora['forget']}",
        f"data.retain.WMDP_retain.args.hf_args.data_files={corpora['retain']}",
        f"paths.root_dir={run_dir}",
    ]
    check(run_host(host, "train.py", overrides, run_dir, capture_output=True))

    before = AutoModelForCausalLM.from_pretrained(tiny).state_dict()
    after = AutoModelForCausalLM.from_pretrained(run_dir / "saves" / "unlearn" / task)
    moved = {k for k, v in after.state_dict().items() if not torch.equal(v, before[k])}
    assert moved == {f"model.layers.{i}.mlp.down_proj.weight" for i in (0, 1)}


def write_muse(folder, forget, retain, holdout):
    """MUSE's four configs (``raw``, ``knowmem``, ``verbmem``, ``privleak``) as the host's
    MUSE data configs read them, from QA rows: texts are ``question answer``, verbatim
    prompts the questions, knowledge questions the QA pairs (two as few-shot examples)."""

    def text(rows):
        return [{"text": f"{r['question']} {r['answer']}"} for r in rows]

    def qa(rows):
        return [{"question": r["question"], "answer": r["answer"]} for r in rows]

    splits = {
        "raw": {"forget": text(forget), "retain1": text(retain)},
        "knowmem": {
            "forget_qa": qa(forget[2:]),
            "forget_qa_icl": qa(forget[:2]),
            "retain_qa": qa(retain[2:]),
            "retain_qa_icl": qa(retain[:2]),
        },
        "verbmem": {
            "forget": [{"prompt": r["question"], "gt": r["answer"]} for r in forget]
        },
        "privleak": {
            "forget": text(forget),
            "holdout": text(holdout),
            "retain": text(retain),
        },
    }
    configs = []
    for config, parts in splits.items():
        (folder / config).mkdir(parents=True)
        files = []
        for name, rows in parts.items():
            path = folder / config / f"{name}.jsonl"
            path.write_text("".join(json.dumps(row) + "\n" for row in rows))
            files.append(f"  - split: {name}\n    path: {config}/{name}.jsonl")
        configs.append(f"- config_name: {config}\n  data_files:\n" + "\n".join(files))
    (folder / "README.md").write_text(
        "---\nconfigs:\n" + "\n".join(configs) + "\n---\n"
    )


MUSE_METRICS = (
    "forget_knowmem_ROUGE",
    "retain_knowmem_ROUGE",
    "forget_verbmem_ROUGE",
    "privleak",
    "extraction_strength",
)


def test_asu_trains_and_the_muse_evaluator_scores_it_on_muse_shaped_data(
    host, run_dir, tiny
):
    """MUSE's experiment with ASU_KL through src/train.py on MUSE-layout data made here,
    then src/eval.py's MUSE evaluator: verbatim and knowledge memorisation, privacy leak."""
    muse = run_dir / "muse"
    write_muse(
        muse / "muse-bench" / "MUSE-News",
        split(run_dir, "forget10"),
        split(run_dir, "retain90")[:14],
        split(run_dir, "holdout10"),
    )
    task = "muse_asu"
    common = [*model_overrides(tiny), f"paths.root_dir={muse}"]
    train = [
        "--config-name=unlearn.yaml",
        "experiment=unlearn/muse/asu",
        f"task_name={task}",
        *common,
        *(o for o in device_overrides() if "warmup_epochs" not in o),  # MUSE has none
        *NO_EVAL,
        "trainer.args.per_device_train_batch_size=2",
        "trainer.args.gradient_accumulation_steps=1",
        "+trainer.args.max_steps=3",
        "trainer.args.learning_rate=1e-2",
        "data.forget.MUSE_forget.args.max_length=32",
        "data.retain.MUSE_retain.args.max_length=32",
    ]
    check(run_host(host, "train.py", train, muse, capture_output=True))
    saved = muse / "saves" / "unlearn" / task
    before = AutoModelForCausalLM.from_pretrained(tiny).state_dict()
    after = AutoModelForCausalLM.from_pretrained(saved).state_dict()
    assert any(not torch.equal(v, before[k]) for k, v in after.items())

    scores = {}
    for name, model in (("before", tiny), ("after", saved)):
        out = muse / "evals" / name
        evaluate = [
            "experiment=eval/muse/default",
            f"task_name=muse_{name}",
            *model_overrides(model),
            f"paths.root_dir={muse}",
            "model.model_args.device_map=cpu",
            f"paths.output_dir={out}",
            "eval.muse.metrics.forget_verbmem_ROUGE.generation_args.max_new_tokens=16",
        ]
        check(run_host(host, "eval.py", evaluate, muse, capture_output=True))
        scores[name] = json.loads((out / "MUSE_SUMMARY.json").read_text())
        logs = json.loads((out / "MUSE_EVAL.json").read_text())
        scored = {m: len(logs[m]["value_by_index"]) for m in MUSE_METRICS[:3]}
        assert scored == {  # every row of ours, the few-shot examples aside
            "forget_knowmem_ROUGE": 12,
            "retain_knowmem_ROUGE": 12,
            "forget_verbmem_ROUGE": 14,
        }
    for summary in scores.values():
        assert set(summary) == set(MUSE_METRICS)
        assert all(0 <= summary[m] <= 1 for m in MUSE_METRICS if m != "privleak")
        assert -100 <= summary["privleak"] <= 100
    # the MIA the privacy leak is computed from moved with the weights
    assert scores["after"]["privleak"] != scores["before"]["privleak"]
