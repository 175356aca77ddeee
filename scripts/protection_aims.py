"""Print issue #20's acceptance aims for ``dynamargin backtest --json`` summaries.

Usage::

    python scripts/protection_aims.py [--policy model] [--rival ewma] run.json [run2.json ...]

Each summary must hold static, the policy, the rival and the oracle at equal mean margin
(the rules are in :mod:`liquidation.protection_aims`). Exit status 0 whether or not the aims
are met (this is a report), 2 if a summary lacks a figure.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from liquidation.protection_aims import AimsInputError, format_aims, protection_aims


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summaries", nargs="+", type=Path)
    parser.add_argument("--policy", default="model")
    parser.add_argument("--rival", default="ewma")
    parser.add_argument("--min-seeds", type=int, default=4)
    args = parser.parse_args(argv)
    for path in args.summaries:
        summary = json.loads(path.read_text(encoding="utf-8"))
        config = summary.get("config", {})
        print(
            f"\n{path.name}: {args.policy} ({config.get('policy_variant', 'default')}) "
            f"against static, the oracle and {args.rival}"
        )
        try:
            aims = protection_aims(summary, args.policy, args.rival, args.min_seeds)
        except AimsInputError as exc:
            print(f"error: {path}: {exc}", file=sys.stderr)
            return 2
        print(format_aims(aims))
    return 0


if __name__ == "__main__":
    sys.exit(main())
