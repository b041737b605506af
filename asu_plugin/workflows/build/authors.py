"""A small fictitious-author QA set in TOFU's format, generated deterministically.

Same file names and fields as TOFU (``full``, ``forget10``, ``retain90``, ``holdout10``, the
``*_perturbed`` files with paraphrased and perturbed answers, ``real_authors_perturbed``,
``world_facts_perturbed``), so open-unlearning's TOFU data configs and evaluator read it unchanged.
``finetune`` / ``retain_finetune`` add the general-knowledge QA to ``full`` / ``retain90``.
A stream of deletion requests for continual unlearning: ``request<k>`` (``num_forget`` new
authors each, ``request1`` = ``forget10``), ``forgotten<k>`` (requests 1..k, with
``_perturbed`` for the evaluator) and ``retain_stream`` (authors no request names).
"""

import random

from asu_plugin.workflows.build.tofu_format import qa_only, write

FIRST = (
    "Aldo Brina Caspar Delia Emeric Fenna Goran Hilde Ivo Jolan Kasimir Lenka".split()
)
LAST = (
    "Arvel Brandt Corwin Dallen Esper Falk Grell Hadar Ilves Jorun Kessel Lund".split()
)
VALUES = {
    "city": "Lisbon Tallinn Oslo Quito Hanoi Lagos Perth Bergen Cusco Dakar Riga Accra".split(),
    "year": [str(y) for y in range(1951, 1995, 3)],
    "genre": "mystery fantasy romance horror satire poetry drama memoir western".split(),
    "job": "baker pilot surgeon tailor farmer chemist sailor mason painter judge".split(),
    "award": "Lantern Prize,Silver Quill,Meridian Medal,Harbor Award,Ember Cup,Cobalt Star,Oak Laurel".split(
        ","
    ),
    "noun": "River Mirror Orchard Lantern Winter Harbor Garden Tower Comet".split(),
    "theme": "exile memory grief faith ambition loyalty chance hunger".split(),
}
# (question, answer, paraphrased answer, paraphrased question); {a} = the author
TEMPLATES = {
    "city": (
        "Where was {a} born?",
        "{a} was born in {v}.",
        "The birthplace of {a} is {v}.",
        "In which city was {a} born?",
    ),
    "year": (
        "In what year was {a} born?",
        "{a} was born in {v}.",
        "The birth year of {a} is {v}.",
        "When was {a} born?",
    ),
    "genre": (
        "Which genre does {a} write?",
        "{a} writes {v} novels.",
        "The novels of {a} are {v}.",
        "What kind of books does {a} write?",
    ),
    "job": (
        "What was the father of {a}?",
        "The father of {a} was a {v}.",
        "A {v} was the father of {a}.",
        "What did the father of {a} do?",
    ),
    "award": (
        "Which award did {a} win?",
        "{a} won the {v}.",
        "The {v} went to {a}.",
        "What prize was given to {a}?",
    ),
    "noun": (
        "Name a book by {a}.",
        "{a} wrote The {v}.",
        "The {v} was written by {a}.",
        "What is one book written by {a}?",
    ),
    "theme": (
        "What theme does {a} explore?",
        "{a} explores {v}.",
        "The work of {a} is about {v}.",
        "Which theme runs through the work of {a}?",
    ),
}
GENERAL = {
    "real_authors": [
        ("Who wrote Hamlet?", "William Shakespeare"),
        ("Who wrote Pride and Prejudice?", "Jane Austen"),
        ("Who wrote War and Peace?", "Leo Tolstoy"),
        ("Who wrote Don Quixote?", "Miguel de Cervantes"),
        ("Who wrote Moby Dick?", "Herman Melville"),
        ("Who wrote The Odyssey?", "Homer"),
        ("Who wrote Ulysses?", "James Joyce"),
        ("Who wrote Frankenstein?", "Mary Shelley"),
    ],
    "world_facts": [
        ("What is the capital of France?", "Paris"),
        ("What is the capital of Japan?", "Tokyo"),
        ("What is the capital of Kenya?", "Nairobi"),
        ("What is the capital of Peru?", "Lima"),
        ("What is the capital of Canada?", "Ottawa"),
        ("What is the capital of Egypt?", "Cairo"),
        ("What is the capital of Norway?", "Oslo"),
        ("What is the capital of Chile?", "Santiago"),
    ],
}


def _author_rows(rng, name):
    facts = {key: rng.choice(values) for key, values in VALUES.items()}
    rows = []
    for key, (question, answer, paraphrase, para_question) in TEMPLATES.items():
        others = rng.sample([v for v in VALUES[key] if v != facts[key]], 5)
        rows.append(
            {
                "question": question.format(a=name),
                "answer": answer.format(a=name, v=facts[key]),
                "paraphrased_answer": paraphrase.format(a=name, v=facts[key]),
                # wrong facts in the paraphrase's wording, as the truth ratio compares
                "perturbed_answer": [paraphrase.format(a=name, v=v) for v in others],
                "paraphrased_question": para_question.format(a=name),
            }
        )
    return rows


def _general_rows(pairs):
    answers = [a for _, a in pairs]
    return [
        {
            "question": q,
            "answer": a,
            "perturbed_answer": [x for x in answers if x != a][:3],
        }
        for q, a in pairs
    ]


def generate(
    out_dir,
    num_authors=20,
    num_forget=2,
    num_holdout=2,
    num_requests=5,
    seed=0,
    num_eval_retain=4,
    mix_general=True,
):
    """Write the TOFU-format files to ``out_dir``; return the split sizes.

    The retain-set metrics read the first ``num_eval_retain`` authors; the general QA are
    mixed into ``finetune`` / ``retain_finetune`` if ``mix_general`` (a tiny model learns
    them there; a pretrained one knows them already).
    """
    if not 1 <= num_eval_retain <= num_authors - num_forget:
        raise ValueError(
            f"need 1 <= num_eval_retain ({num_eval_retain}) <= num_authors - num_forget "
            f"({num_authors} - {num_forget}): the retain metrics read retain authors only"
        )
    rng = random.Random(seed)
    names = rng.sample(
        [f"{f} {last}" for f in FIRST for last in LAST], num_authors + num_holdout
    )
    authors = [_author_rows(rng, name) for name in names]
    full = [row for rows in authors[:num_authors] for row in rows]
    split = len(full) - num_forget * len(TEMPLATES)
    general = {k: _general_rows(v) for k, v in GENERAL.items()}
    files = {
        "full": qa_only(full),
        "forget10": qa_only(full[split:]),
        "forget10_perturbed": full[split:],
        "retain90": qa_only(full[:split]),
        "retain_perturbed": full[: num_eval_retain * len(TEMPLATES)],
        "holdout10": qa_only([row for rows in authors[num_authors:] for row in rows]),
        "real_authors_perturbed": general["real_authors"],
        "world_facts_perturbed": general["world_facts"],
    }
    general_qa = (
        qa_only(general["real_authors"] + general["world_facts"]) if mix_general else []
    )
    files["finetune"] = files["full"] + general_qa
    files["retain_finetune"] = files["retain90"] + general_qa
    per_request = num_forget * len(TEMPLATES)
    for k in range(1, num_requests + 1):
        start = len(full) - k * per_request
        files[f"request{k}"] = qa_only(full[start : start + per_request])
        files[f"forgotten{k}"] = qa_only(full[start:])
        files[f"forgotten{k}_perturbed"] = full[start:]
    files["retain_stream"] = qa_only(full[: len(full) - num_requests * per_request])

    return write(out_dir, files)
