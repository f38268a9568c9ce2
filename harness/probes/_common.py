"""Shared pieces of the probe parsers: the one error type and strict JSON field readers.

Every parser turns "this is not the output I expected" into ParseError, so a stage can
tell "the tool said something bad about the hardware" from "we could not read the tool".
"""

from __future__ import annotations

import json
import math
import re
from typing import NoReturn


class ParseError(ValueError):
    """Tool output could not be read: malformed, truncated or not that tool's output."""

    def __init__(self, tool: str, detail: str) -> None:
        self.tool = tool
        self.detail = detail
        super().__init__(f"{tool}: {detail}")


JsonDict = dict[str, object]


def fail(tool: str, detail: str) -> NoReturn:
    raise ParseError(tool, detail)


def load_json(tool: str, text: str) -> object:
    """json.loads that reports truncation and syntax errors as ParseError."""
    if not text.strip():
        fail(tool, "expected a JSON object or array, got empty output")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        fail(tool, json_error_detail(text, exc))
    except ValueError as exc:  # e.g. an integer longer than Python's 4300-digit limit
        fail(tool, f"expected a JSON object or array, got unreadable JSON: {exc}"[:200])
    except RecursionError:
        fail(tool, "expected a JSON object or array, got JSON nested too deeply")


def json_error_detail(text: str, exc: json.JSONDecodeError) -> str:
    """Say 'truncated' when the decoder ran off the end, else name the syntax error."""
    if not text[exc.pos :].strip() or exc.msg.startswith("Unterminated string"):
        return f"expected a JSON object or array, got truncated JSON at line {exc.lineno}"
    return (
        f"expected a JSON object or array, got invalid JSON at line {exc.lineno} "
        f"column {exc.colno}: {exc.msg}"
    )


def expect_dict(tool: str, value: object, where: str) -> JsonDict:
    if not isinstance(value, dict):
        fail(tool, f"{where}: expected a JSON object, got {type_name(value)}")
    return value


def expect_list(tool: str, value: object, where: str) -> list[object]:
    if not isinstance(value, list):
        fail(tool, f"{where}: expected a JSON array, got {type_name(value)}")
    return value


def opt_dict(tool: str, obj: JsonDict, key: str, where: str) -> JsonDict | None:
    value = obj.get(key)
    if value is None:
        return None
    return expect_dict(tool, value, f"{where}.{key}")


def opt_str(tool: str, obj: JsonDict, key: str, where: str) -> str | None:
    """A text field; numbers are accepted and written out, since tools are loose here."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        fail(tool, f"{where}.{key}: expected text, got a boolean")
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    fail(tool, f"{where}.{key}: expected text, got {type_name(value)}")


_INT_TEXT = re.compile(r"[+-]?\d+")
_FLOAT_TEXT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def to_int(tool: str, value: object, where: str) -> int | None:
    """An integer from a JSON number or a decimal string (lshw writes "8" for cores)."""
    if value is None:
        return None
    if isinstance(value, bool):
        fail(tool, f"{where}: expected a number, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")) or not value.is_integer():
            fail(tool, f"{where}: expected an integer, got {value!r}")
        return int(value)
    if isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        number = small_int(value.strip().lstrip("+-"))
        if number is not None:
            return -number if value.strip().startswith("-") else number
    fail(tool, f"{where}: expected an integer, got {short(value)}")


def to_float(tool: str, value: object, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        fail(tool, f"{where}: expected a number, got a boolean")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()) and len(value) < 400:
        return float(value.strip())
    fail(tool, f"{where}: expected a number, got {short(value)}")


def opt_int(tool: str, obj: JsonDict, key: str, where: str) -> int | None:
    return to_int(tool, obj.get(key), f"{where}.{key}")


def opt_float(tool: str, obj: JsonDict, key: str, where: str) -> float | None:
    return to_float(tool, obj.get(key), f"{where}.{key}")


def small_int(digits: str) -> int | None:
    """int() of a plain digit string, or None when it is not one or is absurdly long.

    Python refuses to convert more than 4300 digits (ValueError); no tool prints numbers
    anywhere near that, so such text is treated as unreadable rather than crashing.
    """
    if not digits.isdecimal() or len(digits) > 40:
        return None
    return int(digits)


def type_name(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


def short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5,
          "E": 1024**6}
_SIZE_TEXT = re.compile(r"(\d+(?:[.,]\d+)?)\s*([KMGTPE]?)(?:I?B)?", re.IGNORECASE)


def binary_size(text: str) -> int | None:
    """'16384 MB', '32 GB', '10G', '1.8T' -> bytes (binary units, as dmidecode and lsblk use)."""
    match = _SIZE_TEXT.fullmatch(text.strip())
    if match is None:
        return None
    if len(match.group(1)) > 40:
        return None
    number = float(match.group(1).replace(",", ".")) * _UNITS[match.group(2).upper()]
    return round(number) if math.isfinite(number) else None
