"""Smoke run of the bench: every variant on 20 contacts, and a small import. Only the shape of
the output is checked (every column, every call completed); timings are the bench's business."""

from __future__ import annotations

from rich.console import Console

from bench import (
    COLUMNS,
    VARIANTS,
    BenchParams,
    details,
    import_table,
    run_import,
    run_variant,
    variant_table,
)

# Fast clock: 20 calls of ~100 simulated seconds, 10 at a time, take a few real seconds.
PARAMS = BenchParams(contacts=20, concurrency=10, time_scale=200.0, timeout_real_s=120.0)


def test_the_table_has_every_column_and_a_row_per_variant() -> None:
    rows = [run_variant(variant, PARAMS) for variant in VARIANTS]
    table = variant_table(rows)
    assert [column.header for column in table.columns] == list(COLUMNS)
    assert table.row_count == len(VARIANTS)
    assert [row.run.completed for row in rows] == [PARAMS.contacts] * len(VARIANTS)
    assert all(row.sim.calls_created == PARAMS.contacts for row in rows)
    console = Console(width=200, record=True)
    console.print(table)
    for line in details(rows):
        console.print(line)
    text = console.export_text()
    assert all(variant in text for variant in VARIANTS)


def test_the_import_counts_every_row() -> None:
    result = run_import(50)
    assert result.contacts == 50
    assert [column.header for column in import_table(result).columns][-1] == "peak RSS MB"
