"""Pytest plugin: check every contract of the rules and of ``MultiplierPolicy.step`` at run time.

``python -m pytest -p tests.verification.contract_plugin tests/liquidation`` runs any test
selection with each call of a contracted function checked against its PEP 316 contract; a
violation fails the test that made the call (:class:`ContractViolation`).
"""

from __future__ import annotations

import pytest

from tests.verification.runtime_contracts import contracted_rules, enforce_everywhere


def pytest_configure(config: pytest.Config) -> None:
    # Import what the tests use first, so the by-name bindings exist to be replaced.
    import liquidation.engine
    import liquidation.simulate  # noqa: F401
    from serving.policy import MultiplierPolicy

    config._dynamargin_contracts_undo = enforce_everywhere(  # type: ignore[attr-defined]
        [*contracted_rules(), (MultiplierPolicy, "step")]
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    undo = getattr(config, "_dynamargin_contracts_undo", None)
    if undo is not None:
        undo()
