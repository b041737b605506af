"""The recommendation: which swept (layer set, τ) the calibration picks, and why."""

RULE = (
    "Recommended: among the swept (layer set, τ > 1) whose forget function-token "
    "probability is at least {min_function_ratio} × its τ = 1 value, whose empty-answer "
    "rate is ≤ {max_empty} and whose repetition rate is ≤ {max_repetition}, the one with "
    "the largest relative drop of forget content-token probability from τ = 1, "
    "1 − p_content(τ) / p_content(1); ties go to the smaller τ, then to the layer set "
    'listed first. When none qualifies the recommendation is "none".'
)


def qualifies(result, baseline, rule) -> bool:
    """Whether ``result`` (τ > 1) passes the rule's fluency and function-token limits."""
    return (
        result["temperature"] > 1
        and result["function_prob"] is not None
        and result["function_prob"]
        >= rule["min_function_ratio"] * baseline["function_prob"]
        and result["empty_rate"] <= rule["max_empty"]
        and result["repetition"] is not None
        and result["repetition"] <= rule["max_repetition"]
    )


def content_drop(result, baseline) -> float:
    """1 − p_content(τ) / p_content(1)."""
    return 1 - result["content_prob"] / baseline["content_prob"]


def recommend(results, rule):
    """The result ``RULE`` picks (``results[0]`` is τ = 1), or ``None``."""
    baseline = results[0]
    candidates = [r for r in results[1:] if qualifies(r, baseline, rule)]
    if not candidates:
        return None
    best = max(content_drop(r, baseline) for r in candidates)
    ties = [r for r in candidates if content_drop(r, baseline) == best]
    return min(ties, key=lambda r: r["temperature"])  # min keeps the first of equals


def recommendation_text(chosen) -> str:
    if chosen is None:
        return "**Recommended τ: none** (no swept τ qualifies)."
    layers = "all layers" if chosen["layers"] is None else f"layers {chosen['layers']}"
    return (
        f"**Recommended τ: {chosen['temperature']:g}** on layer set "
        f"`{chosen['layer_set']}` ({layers})."
    )
