"""Validation errors as sentences a person reads: "owner_name must not be empty."

The validation library words its errors for programmers ("owner_name: Value error, must not
be empty"); a client shows ``detail`` to its user as it is, so each error becomes a sentence
naming the field the way the API spells it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

# pydantic's error type -> what the field must be or is, after the field's name.
KINDS: Mapping[str, str] = {
    "missing": "is required",
    "string_type": "must be a string",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "list_type": "must be a list",
    "string_too_short": "must not be empty",
}


def _field(loc: Sequence[int | str]) -> str:
    return ".".join(str(part) for part in loc) or "The request body"


def _predicate(item: Mapping[str, Any]) -> str:
    kind, ctx = item["type"], item.get("ctx") or {}
    if kind == "value_error" and "error" in ctx:
        return str(ctx["error"]).rstrip(".")  # Our own validators already say it in words.
    if kind == "string_too_short" and ctx.get("min_length", 1) > 1:
        return f"must be at least {ctx['min_length']} characters long"
    if kind == "string_too_long":
        return f"must be at most {ctx['max_length']} characters long"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        words = {"greater_than_equal": "at least", "greater_than": "more than",
                 "less_than_equal": "at most", "less_than": "less than"}[kind]
        bound = next(iter(ctx.values()), "")
        return f"must be {words} {bound}"
    if kind in KINDS:
        return KINDS[kind]
    # Anything else: the library's own words, lower-cased after the field's name.
    message = str(item["msg"])
    for lead in ("Input should", "Value should", "String should"):
        if message.startswith(lead):
            return message.replace(lead, "should", 1)
    return f"is not valid ({message[:1].lower()}{message[1:]})"


def sentences(error: ValidationError) -> str:
    """One sentence per problem, e.g. ``owner_name is required. max_users must be a whole number.``"""
    said: list[str] = []
    for item in error.errors(include_url=False):
        sentence = f"{_field(item['loc'])} {_predicate(item)}."
        if sentence not in said:
            said.append(sentence)
    return " ".join(said)
