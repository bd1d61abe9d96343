"""What the status page (dialer.web) reads, each a seek or a bounded range of an index.

A page must answer as fast for a million contacts as for ten, so nothing here walks a whole
campaign: pages are keyset pages (ids below the last one shown) merged from one index seek per
(state, outcome) or (state, reason) group; a search by name reads one window of ids at a time;
counts come from the indexes alone (``ix_attempts_campaign_outcome`` and friends, see
dialer.store.tables). Each function runs in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa

from dialer.attempts import LIVE_STATES, AttemptState
from dialer.store import statements as sql
from dialer.store.records import AttemptView, RequestCount, RunProgress, WorkerRecord

__all__ = [
    "Group",
    "Search",
    "calls_per_hour",
    "last_dialled_at",
    "newest_attempts",
    "next_due_at",
    "reason_counts",
    "request_counts_since",
    "run_progress",
    "search_attempts",
    "workers_seen_since",
]

#: a (state, outcome) or (state, reason) group of a campaign's attempts
Group = tuple[AttemptState, str | None]
#: states no attempt has an outcome in (the outcome comes with the call's end)
NEVER_AN_OUTCOME = frozenset(
    {
        AttemptState.PLANNED,
        AttemptState.DIALING,
        AttemptState.IN_FLIGHT,
        AttemptState.SKIPPED,
        AttemptState.EXPIRED,
        AttemptState.CANCELLED,
    }
)


@dataclass(frozen=True, kw_only=True)
class Search:
    """What to look for among a campaign's contacts: a number (exact, an index seek), or a
    piece of a name or of a number, looked for in one window of attempt ids at a time."""

    #: an E.164 number
    phone: str | None = None
    #: a piece of a name (any case)
    name_part: str | None = None
    #: digits a number contains
    digits: str | None = None
    #: digits a number ends with
    number_end: str | None = None

    @property
    def scans(self) -> bool:
        """Whether the search reads windows of ids (a name or digits) instead of seeking."""
        return self.phone is None


def run_progress(
    connection: sa.Connection,
    campaign_id: int,
    *,
    unsettled: Mapping[AttemptState, int] | None = None,
) -> RunProgress | None:
    """The campaign's newest run: contacts, settled, in flight (None: never fired).

    ``unsettled``: the campaign's attempts not yet final, per state, when the caller has
    counted them already (the status page has, from ``state_counts``): they are the newest
    run's but for an older run's call still in flight, and one scan fewer of a big run."""
    run = connection.execute(sql.NEWEST_RUN_OF_CAMPAIGN, {"campaign_id": campaign_id}).first()
    if run is None:
        return None
    contacts = connection.execute(sql.CONTACTS_IN_RUN, {"run_id": run.id}).scalar_one()
    if unsettled is None:
        unsettled = {
            AttemptState(state): n
            for state, n in connection.execute(sql.UNSETTLED_IN_RUN, {"run_id": run.id})
        }
    return RunProgress(
        run_id=run.id,
        fire_time=run.fire_time,
        contacts=contacts,
        settled=contacts - sum(unsettled.values()),
        in_flight=sum(n for state, n in unsettled.items() if state in LIVE_STATES),
    )


def next_due_at(connection: sa.Connection, campaign_id: int) -> datetime | None:
    due: datetime | None = connection.execute(
        sql.NEXT_DUE_OF_CAMPAIGN, {"campaign_id": campaign_id}
    ).scalar()
    return due


def reason_counts(
    connection: sa.Connection, campaign_id: int, states: Collection[AttemptState]
) -> dict[Group, int]:
    """Attempts per (state, reason) of the campaign, in ``states`` only."""
    rows = connection.execute(
        sql.REASON_COUNTS,
        {"campaign_id": campaign_id, "states": sorted(state.value for state in states)},
    )
    return {(AttemptState(state), reason): n for state, reason, n in rows}


def newest_attempts(
    connection: sa.Connection,
    campaign_id: int,
    groups: Collection[Group],
    *,
    by: Literal["outcome", "reason"],
    before: int | None,
    limit: int,
    latest_only: bool = False,
) -> list[AttemptView]:
    """The campaign's newest attempts (ids below ``before``) in any of ``groups``.

    ``by``: what the groups' second value is. ``latest_only``: only the attempts that are
    their contact's newest."""
    if not groups:
        return []
    ordered = sorted(groups, key=lambda group: (group[0].value, group[1] or ""))
    query = sql.newest_in_groups(
        tuple(value is None for _, value in ordered),
        column=by,
        keyset=before is not None,
        latest_only=latest_only,
        nulls_are_all=tuple(state in NEVER_AN_OUTCOME for state, _ in ordered),
    )
    params: dict[str, object] = {"campaign_id": campaign_id, "limit": limit, "before": before}
    for i, (state, value) in enumerate(ordered):
        params[f"state_{i}"] = state.value
        params[f"value_{i}"] = value
    ids = list(connection.execute(query, params).scalars())
    return _views_in_order(connection, ids)


def search_attempts(
    connection: sa.Connection,
    campaign_id: int,
    search: Search,
    *,
    before: int,
    floor: int,
    limit: int,
) -> list[AttemptView]:
    """The campaign's newest attempts (ids below ``before``) whose contact matches; a search
    that scans looks only at ids from ``floor`` up."""
    query = sql.attempts_matching(by_phone=search.phone is not None, by_text=search.scans)
    params = {
        "campaign_id": campaign_id,
        "before": before,
        "floor": floor,
        "limit": limit,
        "phone": search.phone,
        "name_like": _contains(search.name_part),
        "phone_like": (
            _contains(search.digits)
            if search.number_end is None
            else "%" + _escaped(search.number_end)
        ),
    }
    ids = list(connection.execute(query, params).scalars())
    return _views_in_order(connection, ids)


def calls_per_hour(
    connection: sa.Connection, campaign_id: int, *, since: datetime, until: datetime
) -> dict[datetime, int]:
    """Dials per hour (the hour's start, UTC) from ``since`` to ``until``; hours without
    one are left out."""
    rows = connection.execute(
        sql.calls_per_hour(connection.dialect.name),
        {"campaign_id": campaign_id, "since": since, "until": until},
    )
    return {_hour(hour): calls for hour, calls in rows}


def _hour(value: datetime | str) -> datetime:
    """An hour as calls_per_hour gives it (a naive UTC timestamp, or "YYYY-MM-DD HH")."""
    if isinstance(value, str):
        value = datetime.strptime(value, "%Y-%m-%d %H")
    return value.replace(tzinfo=UTC)


def last_dialled_at(connection: sa.Connection, campaign_id: int) -> datetime | None:
    last: datetime | None = connection.execute(
        sql.LAST_DIALLED_OF_CAMPAIGN, {"campaign_id": campaign_id}
    ).scalar()
    return last


def workers_seen_since(connection: sa.Connection, since: datetime) -> list[WorkerRecord]:
    rows = connection.execute(sql.WORKERS_SEEN_SINCE, {"since": since})
    return [WorkerRecord.from_row(row) for row in rows]


def request_counts_since(connection: sa.Connection, since: datetime) -> list[RequestCount]:
    """Every daemon's requests per key and minute, from the minute ``since`` on."""
    # Any: the rows of a statement with typed columns are typed per column, from_row takes any
    rows: Iterable[Any] = connection.execute(sql.REQUEST_COUNTS_SINCE, {"since": since})
    return [RequestCount.from_row(row) for row in rows]


def _views_in_order(connection: sa.Connection, ids: Sequence[int]) -> list[AttemptView]:
    """The attempts of ``ids`` in that order (newest first)."""
    if not ids:
        return []
    rows: Iterable[Any] = connection.execute(sql.VIEWS_BY_IDS, {"ids": ids})
    views = {view.id: view for view in map(AttemptView.from_row, rows)}
    return [views[i] for i in ids if i in views]


def _contains(text: str | None) -> str | None:
    """A LIKE pattern for text containing ``text`` (its own % and _ taken literally)."""
    return None if text is None else f"%{_escaped(text)}%"


def _escaped(text: str) -> str:
    """``text`` for a LIKE pattern: its own % and _ taken literally (escape character \\)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
