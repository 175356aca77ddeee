"""Run-time checking of PEP 316 docstring contracts, read by CrossHair's own parser.

The contracts are written once, in the docstring of the function (``pre:`` and ``post:``
lines). CrossHair checks them symbolically; :func:`enforced` checks them on every call made
while it is active, so the ordinary tests exercise the same contracts on concrete inputs.
Using CrossHair's parser means the two readings of a contract cannot differ.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from crosshair.condition_parser import Pep316Parser
from crosshair.fnutil import FunctionInfo

from liquidation.rules import CONTRACTED_MODULES as RULE_MODULES


class ContractViolation(AssertionError):
    """A pre- or postcondition evaluated to false (or raised) on a concrete call."""


def conditions_of(owner: Any, name: str):
    """CrossHair's reading of the PEP 316 contract of ``owner.name``.

    Raises
    ------
    ValueError
        If the function has no contract or a contract line does not compile.
    """
    info = (
        FunctionInfo.from_class(owner, name)
        if isinstance(owner, type)
        else FunctionInfo.from_module(owner, name)
    )
    conditions = Pep316Parser().get_fn_conditions(info)
    if conditions is None or not conditions.has_any():
        raise ValueError(f"{owner.__name__}.{name} carries no PEP 316 contract")
    problems = list(conditions.syntax_messages())
    if problems:
        raise ValueError(f"contract of {owner.__name__}.{name} does not compile: {problems}")
    return conditions


def _check(kind: str, condition, bindings: dict[str, Any], where: str) -> None:
    try:
        ok = condition.evaluate(bindings)
    except Exception as exc:  # a contract that raises is a violated contract
        raise ContractViolation(
            f"{kind} of {where} raised {exc!r}: {condition.expr_source}"
        ) from exc
    if not ok:
        shown = {k: v for k, v in bindings.items() if k != "self"}
        raise ContractViolation(f"{kind} of {where} violated: {condition.expr_source}\n{shown}")


def checking(owner: Any, name: str) -> Callable[..., Any]:
    """``owner.name`` wrapped so every call checks its pre- and postconditions."""
    conditions = conditions_of(owner, name)
    original = getattr(owner, name)
    signature = conditions.sig
    where = f"{owner.__name__}.{name}"

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        bindings = dict(bound.arguments)
        for condition in conditions.pre:
            _check("precondition", condition, bindings, where)
        result = original(*args, **kwargs)
        bindings["__return__"] = result
        for condition in conditions.post:
            if condition.expr_source:  # CrossHair adds an empty "True" post to pre-only
                _check("postcondition", condition, bindings, where)
        return result

    wrapper.checked_conditions = conditions  # type: ignore[attr-defined]
    return wrapper


@contextmanager
def enforced(*targets: tuple[Any, str]) -> Iterator[None]:
    """Check the contracts of every ``(owner, name)`` target on each call inside the block."""
    saved = [(owner, name, owner.__dict__[name]) for owner, name in targets]
    try:
        for owner, name in targets:
            setattr(owner, name, checking(owner, name))
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def contracted_rules() -> list[tuple[Any, str]]:
    """``(module, name)`` of every public scalar function of ``liquidation.rules``."""
    import importlib
    import inspect

    targets = []
    for short in RULE_MODULES:
        module = importlib.import_module(f"liquidation.rules.{short}")
        for name, fn in vars(module).items():
            if (
                inspect.isfunction(fn)
                and fn.__module__ == module.__name__
                and not name.startswith("_")
                and not name.endswith("_v")
            ):
                targets.append((module, name))
    return targets


def enforce_everywhere(targets: list[tuple[Any, str]]) -> Callable[[], None]:
    """Wrap every target in its module and wherever it was imported by name; return an undo.

    ``from liquidation.rules.penalty import penalty_due`` binds the function in the importing
    module, so the wrapper replaces every binding to the original in ``sys.modules``.
    """
    import sys

    undo: list[tuple[Any, str, Any]] = []
    for owner, name in targets:
        original = getattr(owner, name)
        wrapper = checking(owner, name)
        for module in list(sys.modules.values()):
            namespace = getattr(module, "__dict__", None)
            if not namespace:
                continue
            for attr, value in list(namespace.items()):
                if value is original:
                    undo.append((module, attr, original))
                    setattr(module, attr, wrapper)
        if isinstance(owner, type):
            undo.append((owner, name, original))
            setattr(owner, name, wrapper)

    def restore() -> None:
        for module, attr, original in reversed(undo):
            setattr(module, attr, original)

    return restore
