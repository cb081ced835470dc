"""``python -m proof.attack [--fast]``: run every attack suite, print per-category counts and
end with ``attack: tried=N refused=N reached_handler=N``; exit 1 unless every case was refused
and none reached a handler (and each suite's control did)."""

from __future__ import annotations

import argparse
import logging
import sys

from proof.attack.accounting import lines
from proof.attack.suite import FAST, FULL, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m proof.attack", description=__doc__)
    parser.add_argument("--fast", action="store_true",
                        help="the short suite (a few of each case), as run by the test suite")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (default 7)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # every refusal logs a warning: keep it quiet
    plan = FAST if args.fast else FULL
    report = run(plan if args.seed is None else plan.with_seed(args.seed), say=print)
    for line in lines(report):
        print(line)
    return 0 if report.passed() else 1


if __name__ == "__main__":
    sys.exit(main())
