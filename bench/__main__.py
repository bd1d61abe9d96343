"""``python -m bench`` (``make bench``): the variant table, then the 1,000,000-row import."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from rich.console import Console

from bench import (
    VARIANTS,
    BenchParams,
    details,
    import_table,
    run_import,
    run_variant,
    variant_table,
)

QUICK = BenchParams(contacts=200, concurrency=20)
QUICK_IMPORT_ROWS = 100_000


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    defaults = BenchParams()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--contacts", type=int, default=None, help="default 2000 (200 --quick)")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="calls at once, both variants (default 50)"
    )
    parser.add_argument("--time-scale", type=float, default=defaults.time_scale)
    parser.add_argument(
        "--naive-poll",
        type=float,
        default=defaults.naive_poll_s,
        help="seconds (simulated) between the naive dialer's GETs of one call",
    )
    parser.add_argument(
        "--list-interval",
        type=float,
        default=None,
        help="seconds (simulated) between the dialer's list polls (default: PollPlan's 20)",
    )
    parser.add_argument("--import-rows", type=int, default=None, help="default 1,000,000")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--no-import", action="store_true", help="skip the import measurement")
    parser.add_argument(
        "--import-only", action="store_true", help="only the import measurement (no variants)"
    )
    parser.add_argument("--quick", action="store_true", help="200 contacts, 100,000-row import")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    base = QUICK if args.quick else BenchParams()
    params = BenchParams(
        contacts=args.contacts or base.contacts,
        concurrency=args.concurrency or base.concurrency,
        time_scale=args.time_scale,
        naive_poll_s=args.naive_poll,
        list_interval_s=args.list_interval,
    )
    console = Console(width=max(150, Console().width))
    rows = []
    for variant in [] if args.import_only else args.variants:
        with console.status(f"running {variant} on {params.contacts} contacts…"):
            rows.append(run_variant(variant, params))
    if rows:
        console.print(variant_table(rows))
        for line in details(rows):
            console.print(line, highlight=False)
    if not args.no_import:
        import_rows = args.import_rows or (QUICK_IMPORT_ROWS if args.quick else 1_000_000)
        with console.status(f"importing {import_rows:,} contacts…"):
            result = run_import(import_rows)
        console.print(import_table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
