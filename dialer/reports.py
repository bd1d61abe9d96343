"""Reports: every attempt of a campaign as rows for CSV or JSON Lines, and its audit log.

    >>> with Store(url) as store:
    ...     write_report(sys.stdout, report_rows(store, store.campaign("reminders")), fmt="csv")

Rows are streamed (keyset paging in the store): a million-contact campaign is written in
bounded memory. In CSV, a cell a spreadsheet would run as a formula is kept as text.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from dialer.attempts import AttemptState
from dialer.campaign import load_campaign
from dialer.errors import InputError
from dialer.policy.timezones import UnknownPolicy, resolve_zone
from dialer.store import CampaignRecord, Store

__all__ = [
    "REPORT_FIELDS",
    "audit_records",
    "report_rows",
    "spreadsheet_safe",
    "write_json_lines",
    "write_report",
]

REPORT_FIELDS = [
    "campaign",
    "run_id",
    "fire_time",
    "phone",
    "name",
    "attempt_no",
    "state",
    "outcome",
    "reason",
    "call_id",
    "call_status",
    "end_reason",
    "error",
    "dialing_at",
    "started_at",
    "ended_at",
    "duration_seconds",
    "summary",
    "sentiment",
    "due_at",
    "zone",
    "local_dialing_at",
    "skip_reason",
]

#: states whose `reason` says why the contact was not (or no longer) called
NOT_CALLED_STATES = frozenset({AttemptState.SKIPPED, AttemptState.EXPIRED, AttemptState.CANCELLED})
#: what a spreadsheet reads as the start of a formula (OWASP "CSV injection")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def report_rows(store: Store, campaign: CampaignRecord) -> Iterator[dict[str, Any]]:
    """One row per attempt of ``campaign``, in attempt order (a contact once per run)."""
    zone_of = _zone_resolver(campaign.source)
    # the runs of a cron campaign: each contact appears once per run
    fired = {run.id: _iso(run.fire_time) for run in store.runs(campaign.id)}
    for attempt, contact in store.iter_attempt_records(campaign.id):
        analysis = attempt.analysis_result or {}
        zone = zone_of(contact.phone, contact.timezone)
        yield {
            "campaign": campaign.name,
            "run_id": attempt.run_id,
            "fire_time": fired.get(attempt.run_id),
            "phone": contact.phone,
            "name": contact.name,
            "attempt_no": attempt.attempt_no,
            "state": attempt.state,
            "outcome": attempt.outcome,
            "reason": attempt.reason,
            "call_id": attempt.call_id,
            "call_status": attempt.call_status,
            "end_reason": attempt.end_reason,
            "error": attempt.error,
            "dialing_at": _iso(attempt.dialing_at),
            "started_at": _iso(attempt.started_at),
            "ended_at": _iso(attempt.ended_at),
            "duration_seconds": attempt.duration_seconds,
            "summary": attempt.summary,
            "sentiment": analysis.get("sentiment") if isinstance(analysis, dict) else None,
            "due_at": _iso(attempt.due_at),
            "zone": str(zone) if zone is not None else None,
            "local_dialing_at": (
                _iso(attempt.dialing_at.astimezone(zone))
                if zone is not None and attempt.dialing_at is not None
                else None
            ),
            "skip_reason": attempt.reason if attempt.state in NOT_CALLED_STATES else None,
        }


def audit_records(store: Store, campaign: CampaignRecord) -> Iterator[dict[str, Any]]:
    """The campaign's append-only audit log: every decision and transition, in order."""
    for event in store.iter_events(campaign.id):
        yield {
            "id": event.id,
            "at": _iso(event.at),
            "kind": event.kind,
            "attempt_id": event.attempt_id,
            **event.data,
        }


def write_report(stream: TextIO, rows: Iterable[Mapping[str, Any]], *, fmt: str) -> None:
    """``rows`` as CSV (formula cells kept as text) or as JSON Lines (values as they are)."""
    if fmt == "csv":
        writer = csv.DictWriter(stream, fieldnames=REPORT_FIELDS)
        writer.writeheader()
        for record in rows:
            writer.writerow(spreadsheet_safe(record))
    else:
        write_json_lines(stream, rows)


def write_json_lines(stream: TextIO, records: Iterable[Mapping[str, Any]]) -> None:
    for record in records:
        stream.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")


def spreadsheet_safe(record: Mapping[str, Any]) -> dict[str, Any]:
    """A report row for CSV: text that a spreadsheet would run as a formula (a contact named
    ``=HYPERLINK(...)``, a call summary starting with ``=``) is kept as text by a leading
    quote. Phone numbers (E.164, validated at import) are left as they are."""
    return {
        key: f"'{value}"
        if key != "phone" and isinstance(value, str) and value.startswith(_FORMULA_START)
        else value
        for key, value in record.items()
    }


def _zone_resolver(source: str) -> Callable[[str, str | None], ZoneInfo | None]:
    """The contact's zone as the engine resolves it, with the campaign file's fallback zone
    when that file is still readable (the database keeps only the contact's own column)."""
    campaign_zone: str | None = None
    policy: UnknownPolicy = "skip"
    with suppress(InputError, OSError):
        campaign = load_campaign(Path(source))
        campaign_zone, policy = campaign.timezone, campaign.unknown_timezone
    cache: dict[tuple[str, str | None], ZoneInfo | None] = {}

    def zone(phone: str, explicit: str | None) -> ZoneInfo | None:
        key = (phone, explicit)
        if key not in cache:
            cache[key] = resolve_zone(
                phone, explicit=explicit, campaign_zone=campaign_zone, unknown_policy=policy
            ).zone
        return cache[key]

    return zone


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
