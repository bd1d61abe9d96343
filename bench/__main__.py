"""``python -m bench`` (``make bench``): the variant table, the 1,000,000-row import, the
status page's answer times on a 1,000,000-contact campaign (bench/pages.py), then several keys
on one and three daemons and a daemon holding a 1,000,000-contact campaign (bench/scale.py)."""

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
from bench.floor import floor_line, measure
from bench.pages import pages_table, run_pages
from bench.scale import (
    ScaleParams,
    million_table,
    run_million,
    run_scale,
    scale_details,
    scale_table,
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
    parser.add_argument(
        "--list-interval-min",
        type=float,
        default=None,
        help="seconds (simulated): the fastest the dialer lists when its budget has room (2)",
    )
    parser.add_argument(
        "--lists-per-end",
        type=float,
        default=None,
        help="the most lists an expected end may cost ([dialer] lists_per_end, default 1)",
    )
    parser.add_argument("--import-rows", type=int, default=None, help="default 1,000,000")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--no-import", action="store_true", help="skip the import measurement")
    parser.add_argument(
        "--no-floor", action="store_true", help="skip bench.floor (the CPU a call cannot lack)"
    )
    parser.add_argument(
        "--import-only", action="store_true", help="only the import measurement (no variants)"
    )
    parser.add_argument("--quick", action="store_true", help="200 contacts, 100,000-row import")
    parser.add_argument("--no-pages", action="store_true", help="skip the status page's times")
    parser.add_argument(
        "--pages-only", action="store_true", help="only the status page's times (bench/pages.py)"
    )
    parser.add_argument(
        "--pages-contacts", type=int, default=None, help="default 1,000,000 (100,000 --quick)"
    )
    parser.add_argument(
        "--pages-db", default=None, help="a database URL for the page times (default: SQLite)"
    )
    scale = ScaleParams()
    parser.add_argument(
        "--scale", action="store_true", help="only the keys and daemons run (bench/scale.py)"
    )
    parser.add_argument("--no-scale", action="store_true", help="skip the keys and daemons run")
    parser.add_argument(
        "--scale-keys",
        type=int,
        nargs="+",
        default=None,
        help=f"API keys per run (default {' '.join(map(str, scale.keys))}; 1 2 --quick)",
    )
    parser.add_argument(
        "--scale-daemons",
        type=int,
        nargs="+",
        default=None,
        help="daemons per run (default 3 1 with --scale, 3 in a whole run)",
    )
    parser.add_argument(
        "--scale-contacts",
        type=int,
        default=None,
        help=f"contacts of each key's campaign (default {scale.contacts_per_key} with --scale, "
        "200 in a whole run, 100 --quick)",
    )
    parser.add_argument("--scale-time-scale", type=float, default=scale.time_scale)
    parser.add_argument(
        "--million-contacts",
        type=int,
        default=None,
        help="the campaign of the daemon whose RSS is measured (default 1,000,000; 100,000 "
        "--quick; 0: skip it)",
    )
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
        list_interval_min_s=args.list_interval_min,
        lists_per_end=args.lists_per_end,
    )
    console = Console(width=max(150, Console().width))
    rows = []
    if args.pages_only:
        args.import_only, args.no_import = True, True
    if args.scale:
        args.import_only, args.no_import, args.no_pages = True, True, True
    for variant in [] if args.import_only else args.variants:
        with console.status(f"running {variant} on {params.contacts} contacts…"):
            rows.append(run_variant(variant, params))
    if rows:
        console.print(variant_table(rows))
        for line in details(rows):
            console.print(line, highlight=False)
        if not args.no_floor:
            with console.status("measuring the floor (bench.floor)…"):
                floor = measure(params.contacts)
            console.print(floor_line(floor, rows), highlight=False)
    if not args.no_import:
        import_rows = args.import_rows or (QUICK_IMPORT_ROWS if args.quick else 1_000_000)
        with console.status(f"importing {import_rows:,} contacts…"):
            result = run_import(import_rows)
        console.print(import_table(result))
    if not args.no_pages:
        contacts = args.pages_contacts or (100_000 if args.quick else 1_000_000)
        with console.status(f"timing the status page on {contacts:,} contacts…"):
            times = run_pages(contacts, db_url=args.pages_db)
        database = "PostgreSQL" if args.pages_db else "SQLite"
        console.print(pages_table(times, contacts, database))
    if args.scale or not (args.no_scale or args.pages_only or args.import_only):
        scale = ScaleParams(
            keys=tuple(args.scale_keys or ((1, 2) if args.quick else ScaleParams().keys)),
            # make bench: only three daemons (the Done-when's rows); --scale: one too
            daemons=tuple(args.scale_daemons or (ScaleParams().daemons if args.scale else (3,))),
            # a whole run keeps to ~15 min: 200 contacts a key (~2 simulated minutes each)
            contacts_per_key=args.scale_contacts
            or (100 if args.quick else 300 if args.scale else 200),
            time_scale=args.scale_time_scale,
        )
        million_contacts = args.million_contacts
        if million_contacts is None:
            million_contacts = 100_000 if args.quick else 1_000_000
        scale_rows = []
        for daemons in scale.daemons:
            for keys in scale.keys:
                with console.status(f"{keys} keys on {daemons} daemons…"):
                    scale_rows.append(run_scale(keys, daemons, scale))
                # each run as it ends: the whole table comes after the last
                console.print(scale_details(scale_rows[-1:])[0], highlight=False)
        if scale_rows:
            console.print(scale_table(scale_rows))
        if million_contacts:
            with console.status(f"a daemon on {million_contacts:,} contacts…"):
                million = run_million(million_contacts)
            console.print(million_table(million))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
