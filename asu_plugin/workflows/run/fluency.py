"""Metrics of generated text: how fluent answers are."""

import statistics


def repetition(texts):
    """Mean share of repeated words: 0 when no word repeats; "born born born" approaches 1."""
    words = [text.split() for text in texts]
    return statistics.mean(1 - len(set(w)) / len(w) if w else 1.0 for w in words)


def empty_share(texts):
    """Share of texts with nothing but whitespace."""
    texts = list(texts)
    return sum(not t.strip() for t in texts) / len(texts)


def fluency(answers) -> dict:
    """Empty-answer rate, repeated-word rate of the non-empty answers, a sample."""
    spoken = [a for a in answers if a]
    return {
        "empty_rate": 1 - len(spoken) / len(answers),
        "repetition": repetition(spoken) if spoken else None,
        "sample": answers[0],
    }
