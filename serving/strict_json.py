"""Strict JSON for bytes we did not write: one reading, bounded cost, or a clear refusal.

Every JSON document that comes from outside the process (request bodies, snapshot files,
rows read back from the database) is parsed here, never with a bare ``json.loads``.
On top of RFC 8259 it refuses:

* nesting deeper than :data:`MAX_DEPTH`, found by a scan of the text *before* any parser
  recurses into it (a deeply nested document otherwise exhausts the C stack);
* duplicate object keys, at any depth (two parsers could read two values from one
  signed document);
* ``NaN``, ``Infinity`` and ``-Infinity``, and number literals that overflow to infinity;
* integer literals longer than :data:`MAX_INTEGER_DIGITS` digits (the width of a
  ``uint256``; far longer ones make ``int()`` quadratic or fail);
* anything but UTF-8 (a byte-order mark or UTF-16 text included).

Whether ``true`` may stand for a number is the schema's business: JSON Schema and the
pydantic models in strict mode refuse it (see :mod:`serving.standard` and the admin API).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final

from serving.errors import ServingError

MAX_DEPTH: Final[int] = 32
"""Deepest nesting accepted (a RiskSnapshot is 3 levels deep, an admin body 1)."""

MAX_INTEGER_DIGITS: Final[int] = 78
"""Longest integer literal accepted (``2**256 - 1`` has 78 digits)."""

# A string literal (escapes included) or one bracket: strings are skipped whole, so brackets
# inside them never count.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


class StrictJsonError(ServingError, ValueError):
    """A document is not strict JSON; the message says where and why."""


def nesting_depth(text: str, limit: int = MAX_DEPTH) -> int:
    """Deepest bracket nesting of ``text``, counted without parsing it.

    Stops as soon as ``limit`` is exceeded (returning ``limit + 1``), so a hostile
    document costs only as much as its first ``limit`` brackets.
    """
    depth = deepest = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif token in "]}":
            depth -= 1
    return deepest


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH, what: str = "document") -> Any:
    """Parse strict JSON (see the module docstring).

    Parameters
    ----------
    data
        UTF-8 bytes or text.
    max_depth
        Deepest nesting accepted.
    what
        Name of the document in messages (e.g. a file path or ``"request body"``).

    Raises
    ------
    StrictJsonError
        For any rule broken, with the reason and the position when known.
    """
    text = _text(data, what)
    if nesting_depth(text, max_depth) > max_depth:
        raise StrictJsonError(
            f"{what} nests deeper than {max_depth} levels; no dynamargin document does"
        )
    try:
        return json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_constant=_no_constant,
            parse_int=_bounded_int,
            parse_float=_finite_float,
        )
    except StrictJsonError as exc:
        raise StrictJsonError(f"{what}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise StrictJsonError(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:  # pragma: no cover - the depth scan makes this unreachable
        raise StrictJsonError(f"{what} nests too deeply to parse") from None


def _text(data: bytes | str, what: str) -> str:
    if isinstance(data, str):
        text = data
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StrictJsonError(
                f"{what} is not UTF-8: {exc.reason} at byte {exc.start}"
            ) from None
    if text.startswith("\ufeff"):
        raise StrictJsonError(f"{what} starts with a byte-order mark; send plain UTF-8")
    return text


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise StrictJsonError(f"duplicate key {key!r} in one object")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise StrictJsonError(f"{name} is not a JSON number; send a finite number")


def _bounded_int(literal: str) -> int:
    digits = len(literal.lstrip("-"))
    if digits > MAX_INTEGER_DIGITS:
        raise StrictJsonError(
            f"integer literal with {digits} digits (at most {MAX_INTEGER_DIGITS} digits)"
        )
    return int(literal)


def _finite_float(literal: str) -> float:
    if len(literal) > 2 * MAX_INTEGER_DIGITS:
        raise StrictJsonError(f"number literal of {len(literal)} characters is too long")
    value = float(literal)
    if not math.isfinite(value):
        raise StrictJsonError(f"number {literal[:40]} overflows to infinity")
    return value
