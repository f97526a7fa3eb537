"""The fuzz report: N generated cases per entry point (the property suite's generators, any seed), tallied.

    .venv/bin/python tests/fuzz/run.py --examples 300 --seed 1 [--only NAME] [--show-unclear 5]

Prints, per entry point, how many cases passed, ended in a clear error, an unclear one or a non-finite output
from finite inputs, the share of failures that were clear errors, and the slowest case (a hang would show).
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.attention import ATTENTION_ENTRY_POINTS  # noqa: E402
from fuzz.cases import cases, outcome  # noqa: E402
from fuzz.causal import CAUSAL_ENTRY_POINTS  # noqa: E402
from fuzz.cli import CLI_ENTRY_POINTS  # noqa: E402
from fuzz.data_modules import DATA_ENTRY_POINTS  # noqa: E402
from fuzz.entry_points import ENTRY_POINTS  # noqa: E402
from fuzz.loaders import LOADER_ENTRY_POINTS  # noqa: E402
from fuzz.predict import PREDICT_ENTRY_POINTS  # noqa: E402
from fuzz.vision_data import VISION_DATA_ENTRY_POINTS  # noqa: E402
from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402


def tally(entry, examples: int, random_seed: int) -> tuple[collections.Counter, list[str], tuple[float, str]]:
    counts: collections.Counter = collections.Counter()
    slowest = [(0.0, "")]
    unclear: list[str] = []

    @seed(random_seed)
    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(cases(entry))
    def run(case):
        start = time.perf_counter()
        kind, detail = outcome(case)
        slowest[0] = max(slowest[0], (time.perf_counter() - start, repr(case)))
        counts[kind] += 1
        if kind in ("unclear", "nan"):
            unclear.append(f"{case!r}: {detail}")

    run()
    return counts, unclear, slowest[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", default=None)
    parser.add_argument("--show-unclear", type=int, default=3)
    args = parser.parse_args()
    print(
        "| entry point | cases | ok | clear error | unclear | NaN from finite | clear share of failures | s "
        "| slowest case s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for entry in [
        *ENTRY_POINTS,
        *LOADER_ENTRY_POINTS,
        *DATA_ENTRY_POINTS,
        *VISION_DATA_ENTRY_POINTS,
        *PREDICT_ENTRY_POINTS,
        *CLI_ENTRY_POINTS,
        *ATTENTION_ENTRY_POINTS,
        *CAUSAL_ENTRY_POINTS,
    ]:
        if args.only and args.only not in entry.name:
            continue
        start = time.perf_counter()
        counts, unclear, (slow_s, slow_case) = tally(entry, args.examples, args.seed)
        failed = counts["clear"] + counts["unclear"] + counts["nan"]
        share = f"{100 * counts['clear'] / failed:.1f}%" if failed else "-"
        print(
            f"| {entry.name} | {sum(counts.values())} | {counts['ok']} | {counts['clear']} | {counts['unclear']} "
            f"| {counts['nan']} | {share} | {time.perf_counter() - start:.0f} | {slow_s:.1f} |",
            flush=True,
        )
        print(f"    slowest: {slow_s:.1f} s {slow_case}", file=sys.stderr, flush=True)
        for line in sorted(set(unclear))[: args.show_unclear]:
            print(f"    {line}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
