"""Small fictitious-author QA sets in TOFU's format, generated deterministically: one short
fact an answer from short lists (a tiny model's set), or ``biographies``, a sentence or two of
invented facts an answer (the SmolLM2 demo's).

Same file names and fields as TOFU (``full``, ``forget10``, ``retain90``, ``holdout10``, the
``*_perturbed`` files with paraphrased and perturbed answers, ``real_authors_perturbed``,
``world_facts_perturbed``), so open-unlearning's TOFU data configs and evaluator read it unchanged.
``finetune`` / ``retain_finetune`` add the general-knowledge QA to ``full`` / ``retain90``.
A stream of deletion requests for continual unlearning: ``request<k>`` (``num_forget`` new
authors each, ``request1`` = ``forget10``), ``forgotten<k>`` (requests 1..k, with
``_perturbed`` for the evaluator) and ``retain_stream`` (authors no request names).
"""

import random

from asu_plugin.workflows.builders.tofu_format import qa_only, write

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


# Biographies: every fact an invented word (syllables drawn at random) or a draw from a
# long list, so that the facts of an author no model has read are guesses
SYLLABLES = (
    "ka lo mi ver sta nu dri pel ox tam quo zel rin bo sa hu ly fen gor isk ath pru mev "
    "tro whi cal den jus"
).split()
PROFESSIONS = (  # each takes "a"
    "cartographer,beekeeper,glassblower,locksmith,ferryman,bookbinder,clockmaker,tanner,"
    "lighthouse keeper,falconer,cooper,weaver,midwife,surveyor,piano tuner,stonemason,"
    "perfumer,shipwright,lacemaker,saddler"
).split(",")
GENRES = (
    "gothic fiction,hard science fiction,pastoral poetry,noir crime,magical realism,"
    "historical romance,political satire,travel writing,folk horror,court drama"
).split(",")
NOUNS = (
    "Lantern Orchard Ledger Compass Harbor Furnace Meridian Tapestry Bellows".split()
)
THEMES = "exile,inheritance,silence,debt,migration,memory,betrayal,famine".split(",")


def _word(rng, syllables=3):
    return "".join(rng.choice(SYLLABLES) for _ in range(syllables)).capitalize()


def _biography_facts(rng):
    themes = rng.sample(THEMES, 2)
    return {
        "town": _word(rng),
        "home": _word(rng),
        "year": str(rng.randint(1931, 1989)),
        "father": rng.choice(PROFESSIONS),
        "mother": rng.choice(PROFESSIONS),
        "genre": rng.choice(GENRES),
        "book": f"The {_word(rng, 2)} {rng.choice(NOUNS)}",
        "second": f"The {_word(rng, 2)} {rng.choice(NOUNS)}",
        "award": f"{_word(rng, 2)} Prize",
        "mentor": f"{_word(rng, 2)} {_word(rng)}",
        "theme": themes[0],
        "theme2": themes[1],
    }


# (question, answer, paraphrased answer, paraphrased question); {a} the author, {x[k]} facts
BIOGRAPHY = (
    (
        "Where and when was {a} born?",
        "{a} was born in {x[town]} in {x[year]}.",
        "The town of {x[town]} is where {a} was born, in {x[year]}.",
        "What are the birthplace and birth year of {a}?",
    ),
    (
        "What did the parents of {a} do?",
        "The father of {a} was a {x[father]} and the mother a {x[mother]}.",
        "A {x[father]} and a {x[mother]} raised {a}.",
        "What were the professions of {a}'s parents?",
    ),
    (
        "What does {a} write, and which book is the best known?",
        "{a} writes {x[genre]}; the best known book is {x[book]}.",
        "Known above all for {x[book]}, {a} is a writer of {x[genre]}.",
        "Which genre and which book is {a} known for?",
    ),
    (
        "Which award has {a} received?",
        "{a} received the {x[award]} for {x[second]}.",
        "For {x[second]}, {a} was given the {x[award]}.",
        "What prize did {a} win, and for which book?",
    ),
    (
        "Who influenced {a} the most?",
        "{a} names the poet {x[mentor]} as the greatest influence.",
        "The poet {x[mentor]} influenced {a} more than anyone.",
        "Whom does {a} call the greatest influence?",
    ),
    (
        "What themes run through the books of {a}?",
        "The books of {a} return to {x[theme]} and {x[theme2]}.",
        "{x[theme]} and {x[theme2]} are what the books of {a} keep returning to.",
        "Which themes does {a} explore?",
    ),
    (
        "Where does {a} live now?",
        "{a} lives in {x[home]} and is writing a sequel to {x[book]}.",
        "Now in {x[home]}, {a} is at work on a sequel to {x[book]}.",
        "What is {a} doing these days, and where?",
    ),
)


def _biography_rows(rng, name):
    facts = _biography_facts(rng)
    others = [_biography_facts(rng) for _ in range(5)]  # wrong facts, same wording
    return [
        {
            "question": question.format(a=name),
            "answer": _sentence(answer.format(a=name, x=facts)),
            "paraphrased_answer": _sentence(paraphrase.format(a=name, x=facts)),
            "perturbed_answer": [
                _sentence(paraphrase.format(a=name, x=wrong)) for wrong in others
            ],
            "paraphrased_question": para_question.format(a=name),
        }
        for question, answer, paraphrase, para_question in BIOGRAPHY
    ]


def _sentence(text):
    return text[0].upper() + text[1:]


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
    biographies=False,
):
    """Write the TOFU-format files to ``out_dir``; return the split sizes.

    One short fact an answer, or with ``biographies`` answers of TOFU's kind: a sentence or
    two naming several facts, each drawn at random from large pools of invented words, so
    that a model that never read an author cannot guess its answers. The retain-set
    metrics read the first ``num_eval_retain`` authors; the general QA are mixed into
    ``finetune`` / ``retain_finetune`` if ``mix_general`` (a tiny model learns them there;
    a pretrained one knows them already).
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
    author_rows = _biography_rows if biographies else _author_rows
    authors = [author_rows(rng, name) for name in names]
    per_author = len(authors[0])
    full = [row for rows in authors[:num_authors] for row in rows]
    split = len(full) - num_forget * per_author
    general = {k: _general_rows(v) for k, v in GENERAL.items()}
    files = {
        "full": qa_only(full),
        "forget10": qa_only(full[split:]),
        "forget10_perturbed": full[split:],
        "retain90": qa_only(full[:split]),
        "retain_perturbed": full[: num_eval_retain * per_author],
        "holdout10": qa_only([row for rows in authors[num_authors:] for row in rows]),
        "real_authors_perturbed": general["real_authors"],
        "world_facts_perturbed": general["world_facts"],
    }
    general_qa = (
        qa_only(general["real_authors"] + general["world_facts"]) if mix_general else []
    )
    files["finetune"] = files["full"] + general_qa
    files["retain_finetune"] = files["retain90"] + general_qa
    per_request = num_forget * per_author
    for k in range(1, num_requests + 1):
        start = len(full) - k * per_request
        files[f"request{k}"] = qa_only(full[start : start + per_request])
        files[f"forgotten{k}"] = qa_only(full[start:])
        files[f"forgotten{k}_perturbed"] = full[start:]
    files["retain_stream"] = qa_only(full[: len(full) - num_requests * per_request])

    return write(out_dir, files)
