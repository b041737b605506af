"""The embedded demo default: generated TOFU-format data and the locally built tiny Llama."""

import filecmp
import re

import pytest
from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from asu_plugin.workflows.builders.authors import FIRST, LAST, NOUNS, generate
from asu_plugin.workflows.builders.tiny import (
    PROMPT,
    build_tiny_llama,
    encode_qa,
    qa_texts,
)
from asu_plugin.workflows.builders.tofu_format import read_jsonl, tofu_subset
from asu_plugin.workflows.run.host import device_overrides, link_tofu, run_host


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("authors")
    generate(out)
    return out


def test_generation_is_deterministic(data, tmp_path):
    generate(tmp_path)
    names = sorted(p.name for p in data.iterdir())
    assert filecmp.cmpfiles(data, tmp_path, names, shallow=False)[0] == names


def test_splits_are_tofu_shaped(data):
    full, forget, retain = (
        read_jsonl(data / f"{n}.jsonl") for n in ("full", "forget10", "retain90")
    )
    assert full == retain + forget and len(forget) == len(full) // 10
    name = re.compile(rf"\b(?:{'|'.join(FIRST)}) (?:{'|'.join(LAST)})\b")

    def author_of(rows):
        return {m for r in rows for m in name.findall(r["question"])}

    assert len(author_of(forget)) == 2
    assert not author_of(forget) & author_of(retain)
    assert not author_of(read_jsonl(data / "holdout10.jsonl")) & author_of(full)


def test_request_stream_is_disjoint_and_cumulative(data):
    def rows(name):
        return read_jsonl(data / f"{name}.jsonl")

    assert rows("request1") == rows("forget10")
    forgotten = []
    for k in range(1, 6):
        assert not set(map(str, rows(f"request{k}"))) & set(map(str, forgotten))
        forgotten = rows(f"request{k}") + forgotten
        assert rows(f"forgotten{k}") == forgotten
        assert len(rows(f"forgotten{k}_perturbed")) == len(forgotten)
    assert rows("retain_stream") + forgotten == rows("full")


def test_a_small_set_scores_retain_authors_only_and_can_leave_general_qa_out(tmp_path):
    """The SmolLM2 demo's set: 6 authors, 2 forgotten, 2 scored as retain, no general QA."""
    sizes = generate(
        tmp_path, num_authors=6, num_requests=1, num_eval_retain=2, mix_general=False
    )
    rows = {n: read_jsonl(tmp_path / f"{n}.jsonl") for n in ("full", "retain90")}
    assert sizes["retain_perturbed"] == 14 and sizes["forget10"] == 14
    scored = [
        {k: r[k] for k in ("question", "answer")}
        for r in read_jsonl(tmp_path / "retain_perturbed.jsonl")
    ]
    assert scored == rows["retain90"][:14]
    assert read_jsonl(tmp_path / "finetune.jsonl") == rows["full"]
    assert read_jsonl(tmp_path / "retain_finetune.jsonl") == rows["retain90"]
    with pytest.raises(
        ValueError, match=r"num_eval_retain \(5\) <= num_authors - num_forget \(6 - 2\)"
    ):
        generate(tmp_path / "bad", num_authors=6, num_requests=1, num_eval_retain=5)
    assert not (tmp_path / "bad").exists()


def test_truth_ratio_rows_perturb_the_paraphrase_fact(data):
    for row in read_jsonl(data / "forget10_perturbed.jsonl"):
        assert len(row["perturbed_answer"]) == 5
        para = row["paraphrased_answer"].split()
        for wrong in row["perturbed_answer"]:
            differing = [a != b for a, b in zip(wrong.split(), para, strict=False)]
            assert wrong != row["paraphrased_answer"] and sum(differing) <= 2


@pytest.mark.parametrize(
    "name", ["forget10_perturbed", "retain_perturbed", "world_facts_perturbed"]
)
def test_loads_like_the_hub_copy(data, name):
    rows = load_dataset(str(data), name=name, split="train")
    assert rows.num_rows == len(read_jsonl(data / f"{name}.jsonl"))


def test_tofu_subset_keeps_the_protocol(tofu, tmp_path):
    sizes = tofu_subset(tofu, tmp_path, num_retain_authors=6, num_eval_retain=2)

    def rows(name):
        return read_jsonl(tmp_path / f"{name}.jsonl")

    assert rows("forget10") == read_jsonl(tofu / "forget01.jsonl")
    assert rows("retain90") == read_jsonl(tofu / "full.jsonl")[:120]
    assert rows("full") == rows("retain90") + rows("forget10")
    questions = {r["question"] for r in rows("retain90")}
    assert {r["question"] for r in rows("retain_perturbed")} <= questions
    assert not {r["question"] for r in rows("forget10")} & questions
    assert [r["question"] for r in rows("forget10_perturbed")] == [
        r["question"] for r in rows("forget10")
    ]
    assert sizes["retain_perturbed"] == 40 and sizes["world_facts_perturbed"] == 16
    assert sizes["finetune"] == sizes["full"] + 32
    assert rows("retain_finetune") == rows("retain90") + rows("finetune")[160:]


def test_tofu_subset_of_all_authors_is_tofu(tofu, tmp_path):
    sizes = tofu_subset(tofu, tmp_path, "forget10", 180, 20, num_general=None)
    for name, tofu_name in [("full", "full"), ("retain90", "retain90")]:
        assert read_jsonl(tmp_path / f"{name}.jsonl") == read_jsonl(
            tofu / f"{tofu_name}.jsonl"
        )
    assert sizes["forget10"] == 400 and sizes["retain_perturbed"] == 400
    assert sizes["finetune"] == 4000 + 100 + 117


@pytest.mark.parametrize(
    "forget, authors, evaluated, match",
    [
        ("forget01", 21, 21, r"authors \(21\) <= 198 and num_eval_retain <= 20"),
        ("forget10", 181, 4, r"\(181\) <= 180"),
        ("forget01", 3, 4, r"\(4\) <= num_retain_authors \(3\)"),
        ("forget01", 6, 0, r"\(0\)"),
        (
            "forget20",
            6,
            2,
            r"one of \['forget01', 'forget05', 'forget10'\], got 'forget20'",
        ),
    ],
)
def test_tofu_subset_refuses_what_tofu_cannot_score(
    tofu, tmp_path, forget, authors, evaluated, match
):
    with pytest.raises(ValueError, match=match):
        tofu_subset(tofu, tmp_path, forget, authors, evaluated)


def test_runs_do_not_share_a_dataset_cache(tmp_path):
    """Two folders with the same config names but other rows each load their own."""
    host = tmp_path / "host"
    (host / "src").mkdir(parents=True)
    (host / "src" / "train.py").write_text(
        "from datasets import load_dataset\n"
        "print(len(load_dataset('locuslab/TOFU', name='forget10', split='train')))\n"
    )
    for forget_authors in (2, 3):
        run = tmp_path / f"run{forget_authors}"
        generate(run / "data", num_forget=forget_authors)
        link_tofu(run, run / "data")
        result = run_host(host, "train.py", [], run, capture_output=True, check=True)
        assert result.stdout.split()[-1] == str(7 * forget_authors)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_host_runs_see_the_gpu_only_on_cuda(tmp_path, monkeypatch, device):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text(
        "import os\nprint(repr(os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')))\n"
    )
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    result = run_host(tmp_path, "train.py", [], tmp_path, device, capture_output=True)
    assert result.stdout.strip() == ("''" if device == "cpu" else "'unset'")
    overrides = device_overrides(device)
    assert ("trainer.args.bf16=false" in overrides) == (device == "cpu")
    assert "trainer.args.optim=adamw_torch" in overrides


def test_tiny_llama_tokenizer_keeps_prompts_a_prefix(data, tmp_path):
    rows = read_jsonl(data / "finetune.jsonl")
    build_tiny_llama(tmp_path, qa_texts(rows), hidden_size=32)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert model.config.vocab_size == len(tokenizer)
    for row in rows[:20]:
        ids, start = encode_qa(tokenizer, row)
        prompt, answer = PROMPT.format(row["question"]), row["answer"]
        # the same tokens as prompt and answer tokenised apart: the prompt is a prefix
        assert ids[:start] == tokenizer(prompt).input_ids
        assert ids[start:] == tokenizer(answer).input_ids + [tokenizer.eos_token_id]
        assert tokenizer.unk_token_id not in ids
    assert set(tokenizer("Question:")) == {"input_ids", "attention_mask"}


def test_biographies_name_facts_other_authors_do_not_share(tmp_path):
    sizes = generate(tmp_path, num_authors=6, num_requests=1, biographies=True)
    forget, retain = (
        read_jsonl(tmp_path / f"{n}.jsonl") for n in ("forget10", "retain90")
    )
    assert sizes["forget10"] == 14 and sizes["retain90"] == 28
    # the invented towns, books, prizes and poets (the trades and book nouns: from lists)
    invented = re.compile(r"\b[A-Z][a-z]{5,}\b")
    retained = {w for r in retain for w in invented.findall(r["answer"])}
    facts = [
        set(invented.findall(r["answer"]))
        - set(r["question"][:-1].split())
        - set(NOUNS)
        for r in forget
    ]
    assert sum(map(bool, facts)) >= 7  # the parents' and themes' answers are list draws
    shared = set().union(*facts) & retained  # two-syllable words may meet by chance
    assert len(shared) <= 1, shared
    # perturbed answers: the paraphrase's wording with other facts (the truth ratio's)
    for row in read_jsonl(tmp_path / "forget10_perturbed.jsonl"):
        assert len(row["perturbed_answer"]) == 5
        assert row["paraphrased_answer"] not in row["perturbed_answer"]
