"""How operator-facing errors name a value's type and suggest the key meant.

Shared by the inventory loader and the checks of the settings it hands on
(vet_notify...), so every message about a mistyped value reads the same.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any


def kind_of(value: Any) -> str:
    """What a YAML value is, in words an operator uses ("a list", "true/false")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def did_you_mean(word: str, allowed: Sequence[str]) -> str:
    """' (did you mean 'x'?)' for the closest allowed word, else ''."""
    close = difflib.get_close_matches(word, list(allowed), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
