"""Fuzz the liquidation engine with seeded random commands and check every invariant.

Usage::

    .venv/bin/python scripts/fuzz_liquidation.py [--commands 1000000] [--steps 400]
        [--first-seed 0] [--workers 2] [--json report.json] [--options]

Sequence ``i`` drives a fresh engine through ``--steps`` commands from seed
``first-seed + i`` (see :mod:`liquidation.fuzz`); enough sequences run to reach
``--commands``, spread over ``--workers`` processes. Progress goes to stderr. Exit status 0
means zero invariant failures; otherwise each failure is printed with the seed and step that
reproduce it (``liquidation.fuzz.run_sequence(seed, steps)``). ``--options`` runs the options
mode (option series, trades, expiries, Greek-limit deleveraging; ``options=True``).
``make fuzz`` runs it with ``nice``.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import sys
import time
from pathlib import Path

from liquidation.fuzz import FuzzReport, run_sequence


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=1_000_000, help="commands in total")
    parser.add_argument("--steps", type=int, default=400, help="commands per sequence")
    parser.add_argument("--first-seed", type=int, default=0, help="seed of the first sequence")
    parser.add_argument("--workers", type=int, default=2, help="processes")
    parser.add_argument("--json", type=Path, help="write the report as JSON")
    parser.add_argument("--options", action="store_true", help="the options mode")
    args = parser.parse_args(argv)
    if args.commands < 1 or args.steps < 1 or args.workers < 1:
        parser.error("--commands, --steps and --workers must be positive")
    sequences = math.ceil(args.commands / args.steps)
    seeds = range(args.first_seed, args.first_seed + sequences)
    total = FuzzReport()
    started = time.perf_counter()
    print(
        f"fuzzing {sequences:,} sequences x {args.steps} commands on {args.workers} workers",
        file=sys.stderr,
    )
    with multiprocessing.Pool(args.workers) as pool:
        tasks = ((s, args.steps, args.options) for s in seeds)
        work = pool.imap_unordered(_sequence, tasks, chunksize=4)
        for done, report in enumerate(work, start=1):
            total.merge(report)
            if done % 100 == 0 or done == sequences:
                elapsed = time.perf_counter() - started
                rate = total.commands / elapsed
                left = (sequences - done) * args.steps / rate
                print(
                    f"  {done:,}/{sequences:,} sequences, {total.commands:,} commands, "
                    f"{len(total.failures)} failures, {rate:,.0f} commands/s, ~{left:.0f} s left",
                    file=sys.stderr,
                    flush=True,
                )
    wall = time.perf_counter() - started
    print(total.summary())
    print(f"wall time {wall:.1f} s on {args.workers} workers")
    for failure in sorted(total.failures, key=lambda f: f.seed)[:20]:
        print(
            f"FAILURE seed={failure.seed} step={failure.step} {failure.command}: {failure.message}"
        )
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "commands": total.commands,
                    "sequences": total.sequences,
                    "steps": args.steps,
                    "first_seed": args.first_seed,
                    "failures": [vars(f) for f in total.failures],
                    "outcomes": dict(total.outcomes),
                    "events": dict(total.events),
                    "wall_seconds": wall,
                },
                indent=2,
                sort_keys=True,
            )
        )
    return 1 if total.failures else 0


def _sequence(task: tuple[int, int, bool]) -> FuzzReport:
    seed, steps, options = task
    return run_sequence(seed, steps, options=options)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
