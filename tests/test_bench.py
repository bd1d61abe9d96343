"""Smoke run of the bench: every variant on 20 contacts, and a small import. Only the shape of
the output is checked (every column, every call completed); timings are the bench's business."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from bench import (
    COLUMNS,
    LIMIT_PER_MINUTE,
    VARIANTS,
    BenchParams,
    details,
    ideal_makespan,
    import_table,
    redial_gaps,
    run_import,
    run_variant,
    variant_table,
)
from bench.floor import measure as measure_floor
from bench.pages import pages_table, run_pages
from bench.scale import (
    SCALE_COLUMNS,
    ScaleParams,
    million_table,
    run_million,
    run_scale,
    scale_details,
    scale_table,
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


UNLIMITED = 1e12  # creates per minute: the rate never binds


def test_the_ideal_schedule_redials_each_line_the_instant_it_frees() -> None:
    four_of_ten = ideal_makespan([10, 10, 10, 10], concurrency=2, per_minute=UNLIMITED)
    assert four_of_ten == pytest.approx(20)
    # the third call waits for the first free line; order is kept, not optimised
    assert ideal_makespan([1, 1, 10], concurrency=2, per_minute=UNLIMITED) == pytest.approx(11)
    # lines to spare: the create rate (one a second) is what spaces the calls
    assert ideal_makespan([1, 1, 1], concurrency=10, per_minute=60) == pytest.approx(3)
    assert ideal_makespan([], concurrency=3, per_minute=60) == 0


def test_a_freed_line_idles_from_the_kth_end_to_the_create_that_took_it() -> None:
    # two lines: creates at 0 and 0 fill them; ends at 10 and 12 free them; the next two
    # creates at 10.5 and 13 idled 0.5 and 1 s; a create before its end had a free line
    assert redial_gaps([0, 0, 10.5, 13], [10, 12, 20, 30], concurrency=2) == [0.5, 1.0]
    assert redial_gaps([0, 0, 5, 13], [10, 12], concurrency=2) == [1.0]
    assert redial_gaps([0, 1], [5, 6], concurrency=2) == []


@given(
    st.lists(st.floats(min_value=0.1, max_value=1000), min_size=1, max_size=200),
    st.integers(min_value=1, max_value=60),
)
def test_the_ideal_schedule_lies_between_the_bound_and_grahams_bound(
    lengths: list[float], lines: int
) -> None:
    ideal = ideal_makespan(lengths, concurrency=lines, per_minute=UNLIMITED)
    bound = max(sum(lengths) / lines, max(lengths))
    assert bound - 1e-6 <= ideal <= sum(lengths) / lines + max(lengths) + 1e-6


def test_the_floor_measures_a_calls_store_work_and_its_post() -> None:
    floor = measure_floor(20)
    assert floor.calls == 20
    assert floor.transitions_ms > 0 and floor.post_ms > 0 and floor.live_counts_ms > 0


def test_the_page_times_cover_every_page_of_both_campaigns() -> None:
    """bench/pages.py on a small campaign: every page answers, the table has a row each."""
    times = run_pages(3_000, repeat=1)
    assert [t.page for t in times][:3] == [
        "campaign, first view after a start",
        "overview",
        "campaign, first page",
    ]
    assert all(len(t.small_ms) == len(t.large_ms) == 1 for t in times)
    table = pages_table(times, 3_000, "SQLite")
    assert table.row_count == len(times) == 10


def test_the_scale_run_counts_every_key_and_daemon() -> None:
    """bench/scale.py at a small size: two keys on one daemon (SQLite), every call created on
    its own key, a table row with every column. (At x30 a loaded machine bunches requests
    into the 2 s windows: the limit is the bench's business, not this test's.)"""
    params = ScaleParams(contacts_per_key=150, time_scale=30.0, database="sqlite")
    row = run_scale(2, 1, params)
    assert [k.creates for k in row.per_key] == [150, 150]
    assert [r.created for r in row.runs] == [300]
    assert row.window_min > 0 and row.created_per_min > 0
    assert 0 < row.bound_per_min() <= 2 * LIMIT_PER_MINUTE
    table = scale_table([row])
    assert [column.header for column in table.columns] == list(SCALE_COLUMNS)
    assert table.row_count == 1
    assert len(scale_details([row])) == 1


def test_the_million_measurement_plans_and_dials() -> None:
    """The RSS measurement's plumbing on a small campaign: imported, planned, dialled."""
    run = run_million(2_000, dial=20)
    assert run.contacts == 2_000 and run.created >= 20
    assert run.peak_rss_mb > 0
    assert million_table(run).row_count == 1
