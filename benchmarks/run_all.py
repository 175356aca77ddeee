"""Run every benchmark script under ``benchmarks/`` (``bench_*.py``) in turn.

Each script measures its own baseline in the same run and prints the ratio. Pass names
to run a subset: ``python benchmarks/run_all.py ingest features``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if any(name in s.stem for name in argv)]
    failed = []
    for script in scripts:
        print(f"\n=== {script.stem} ===", flush=True)
        started = time.perf_counter()
        result = subprocess.run([sys.executable, str(script)], check=False)
        print(
            f"--- {script.stem}: exit {result.returncode} in {time.perf_counter() - started:.1f} s"
        )
        if result.returncode != 0:
            failed.append(script.stem)
    if failed:
        print(f"\nFAILED benchmarks: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
