"""Function and content tokens: which answer tokens the calibration pools together."""

FUNCTION_WORDS = frozenset(
    """a an the this that these those some any each every no
    me my mine we us our you your he him his she her hers it its they them their
    who whom whose which what where when how why
    and or but nor so yet if than then as because while although though
    of in on at to for from by with about into onto over under between among through
    during before after above below up down out off near within without upon via per
    is am are was were be been being do does did done have has had having
    will would shall should can could may might must
    not also very too just only there here 's""".split()
)


def is_function_token(text) -> bool:
    """``FUNCTION_WORDS`` or no letter or digit (punctuation, whitespace)."""
    word = text.strip().lower()
    return word in FUNCTION_WORDS or not any(c.isalnum() for c in word)


def token_classes(tokenizer, label_ids) -> list[str | None]:
    """Per label token: its class, "function" or "content"; ``None`` if special."""
    special = set(tokenizer.all_special_ids)
    return [
        None
        if i in special
        else "function"
        if is_function_token(tokenizer.decode([i]))
        else "content"
        for i in label_ids
    ]
