"""The liquidation core imports nothing ML and nothing of ours but itself."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = (
    "models",
    "features",
    "serving",
    "pipelines",
    "sklearn",
    "lightgbm",
    "mlflow",
    "arch",
    "pandas",
    "scipy",
    "prefect",
    "pydantic",
)


def test_core_imports_only_stdlib_and_numpy() -> None:
    code = (
        "import sys\n"
        "import liquidation.engine, liquidation.scan, liquidation.insurance\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
