"""No module of the project may share a name with a top-level package.

A Prefect runner (like any ``python path/to/script.py``) puts the entrypoint's folder first on
``sys.path``; a sibling ``features.py`` then shadows the ``features`` package and the
deployment crashes before any task runs. The rule is checked on the files, so a new module
with such a name fails here rather than in production.
"""

from __future__ import annotations

from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
PACKAGES = ("contracts", "features", "models", "serving", "liquidation", "venue", "pipelines")


def test_no_module_shadows_a_top_level_package() -> None:
    clashes = []
    for package in PACKAGES:
        for path in (PROJECT / package).rglob("*"):
            name = path.stem if path.suffix == ".py" else path.name
            if path.is_dir() and not (path / "__init__.py").exists():
                continue
            if (path.suffix == ".py" or path.is_dir()) and name in PACKAGES:
                clashes.append(str(path.relative_to(PROJECT)))
    assert not clashes, f"modules named like a top-level package: {clashes}"
