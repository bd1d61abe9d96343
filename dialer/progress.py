"""What an operator sees: status tables, the live progress display and the outcome table."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from dialer.attempts import FINAL_STATES, LIVE_STATES, AttemptState
from dialer.policy.reminders import KeyState
from dialer.store import AttemptView, CampaignRecord, CampaignState, KeyRecord, Store

STATE_ORDER = [s.value for s in AttemptState]


@dataclass(frozen=True, kw_only=True)
class CampaignStatus:
    """What `dialer status` shows for one campaign."""

    name: str
    state: CampaignState
    counts: dict[tuple[str, str | None], int]
    contacts: int
    settled: int
    in_flight: int
    next_due_at: datetime | None


def campaign_statuses(store: Store, *, only: str | None = None) -> list[CampaignStatus]:
    statuses: list[CampaignStatus] = []
    for campaign in store.campaigns():
        if only is not None and campaign.name != only:
            continue
        latest = store.latest_attempts(campaign.id)
        planned = [a.due_at for a in latest if a.state is AttemptState.PLANNED]
        statuses.append(
            CampaignStatus(
                name=campaign.name,
                state=campaign.state,
                counts=store.state_counts(campaign.id),
                contacts=len(latest),
                settled=sum(1 for a in latest if a.state in FINAL_STATES),
                in_flight=sum(1 for a in latest if a.state in LIVE_STATES),
                next_due_at=min(planned) if planned else None,
            )
        )
    return statuses


@dataclass(frozen=True, kw_only=True)
class KeyCounts:
    """Where a campaign's reminder keys stand (see dialer.policy.reminders.KeyState)."""

    counts: Counter[KeyState]
    #: when the earliest pending key's attempt is due
    next_due_at: datetime | None


def key_counts(store: Store, campaign: CampaignRecord) -> KeyCounts:
    """Every key of the campaign counted by state (streamed: bounded memory)."""
    counts: Counter[KeyState] = Counter()
    next_due: datetime | None = None
    for key in store.iter_keys(campaign.id):
        state = key.state(campaign.done_when)
        counts[state] += 1
        if state is KeyState.PENDING and key.attempt_state is AttemptState.PLANNED:
            due = key.due_at
            next_due = due if next_due is None or (due and due < next_due) else next_due
    return KeyCounts(counts=counts, next_due_at=next_due)


def key_line(store: Store, campaign: CampaignRecord) -> Text:
    """One line: the keys per state, the campaign's mode, and its last missed fire."""
    keys = key_counts(store, campaign)
    parts = [f"{keys.counts[state]} {state.value}" for state in KeyState]
    mode = "once per key" if campaign.repeat == "once" else "everyone at every fire"
    line = f"keys: {' · '.join(parts)} ({mode}; done when {', '.join(sorted(campaign.done_when))})"
    fire = store.last_event(campaign.id, ["run.caught_up", "run.missed"])
    if fire is not None:
        at = datetime.fromisoformat(str(fire.data["fire_time"]))
        if fire.kind == "run.caught_up":
            line += f"\nfire {at:%Y-%m-%d %H:%M} UTC was missed and caught up at {fire.at:%H:%M}"
        else:
            line += (
                f"\nfire {at:%Y-%m-%d %H:%M} UTC was missed while no daemon ran and not caught "
                "up (older than misfire_grace)"
            )
    return Text(line)


def key_table(store: Store, campaign: CampaignRecord, *, max_attempts: int | None = None) -> Table:
    """One row per reminder key: `dialer status CAMPAIGN --keys`."""
    table = Table(title=f"{campaign.name}: reminder keys", title_justify="left")
    for column in ("line", "key", "name", "state", "detail"):
        table.add_column(column, justify="right" if column == "line" else "left")
    for key in store.iter_keys(campaign.id):
        table.add_row(
            str(key.line),
            key.key,
            key.name or "-",
            key.state(campaign.done_when).value,
            key_detail(key, max_attempts=max_attempts),
        )
    return table


def key_detail(key: KeyRecord, *, max_attempts: int | None = None) -> str:
    """``attempt 2 of 3, next 2027-03-02 14:30 UTC``, or the outcome, or why it was closed."""
    if key.attempt_state is None or key.attempt_no is None:
        return ""
    of = f" of {max_attempts}" if max_attempts else ""
    if key.attempt_state is AttemptState.PLANNED and key.due_at is not None:
        return f"attempt {key.attempt_no}{of}, next {key.due_at:%Y-%m-%d %H:%M} UTC"
    if key.attempt_state in LIVE_STATES:
        return f"attempt {key.attempt_no}{of}, calling"
    return key.outcome or key.reason or key.attempt_state.value


def status_tables(store: Store, *, only: str | None = None) -> list[Group]:
    """One table per campaign, each followed by a line: settled, in flight, next due."""
    tables: list[Group] = []
    for status in campaign_statuses(store, only=only):
        table = Table(title=f"{status.name} ({status.state})", title_justify="left")
        table.add_column("state")
        table.add_column("outcome")
        table.add_column("attempts", justify="right")
        for (state, outcome), n in sorted(
            status.counts.items(), key=lambda kv: (STATE_ORDER.index(kv[0][0]), kv[0][1] or "")
        ):
            table.add_row(state, outcome or "-", str(n))
        if status.next_due_at is None:
            due = "nothing planned"
        elif status.state is not CampaignState.ACTIVE:
            due = f"next due {status.next_due_at:%Y-%m-%d %H:%M:%S} UTC ({status.state})"
        else:
            due = f"next due {status.next_due_at:%Y-%m-%d %H:%M:%S} UTC"
        summary = Text(
            f"settled {status.settled}/{status.contacts} · in flight {status.in_flight} · {due}"
        )
        record = store.campaign(status.name)
        assert record is not None
        lines: list[Table | Text] = [table, summary, key_line(store, record)]
        if record.hold is not None:
            lines.append(
                Text(
                    f"held since {record.hold.since:%Y-%m-%d %H:%M} UTC: "
                    f"{record.hold.describe()}\nnothing more is dialled until the campaign file "
                    f"is fixed (a running daemon reads it again) or `dialer resume "
                    f"{record.name}` runs"
                )
            )
        tables.append(Group(*lines))
    return tables


#: the live display waits this many times as long as its last count took before the next
COUNT_SHARE_INVERSE = 9


@contextmanager
def live_progress(
    store: Store, console: Console, *, every_s: float = 0.25
) -> Iterator[Callable[[], None]]:
    """A Rich progress display fed from the database; yields the per-tick refresh function.

    Each refresh is one grouped count of the contacts' newest attempts
    (Store.latest_state_counts), never a load of the attempts themselves: at most every
    ``every_s``, and never more than a tenth of the time (on the daemon's event loop, the count
    took 0.2 s for 100,000 contacts and 2.3 s for 1,000,000 on SQLite)."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
    )
    tasks: dict[str, TaskID] = {}
    last = 0.0
    wait = every_s

    def refresh() -> None:
        nonlocal last, wait
        started = time.monotonic()
        if started - last < wait:
            return
        counted = store.latest_state_counts()
        last = time.monotonic()
        wait = max(every_s, COUNT_SHARE_INVERSE * (last - started))
        for campaign in counted:
            contacts = campaign.contacts
            detail = (
                f"in flight {campaign.in_states(LIVE_STATES)} · "
                f"waiting {campaign.in_states(frozenset({AttemptState.PLANNED}))} · "
                + " ".join(f"{k}={v}" for k, v in sorted(campaign.outcomes().items()))
            )
            if campaign.campaign not in tasks:
                tasks[campaign.campaign] = progress.add_task(
                    campaign.campaign, total=contacts, detail=detail
                )
            progress.update(
                tasks[campaign.campaign],
                completed=campaign.in_states(FINAL_STATES),
                total=contacts,
                detail=detail,
            )

    with Live(Group(progress), console=console, refresh_per_second=8, transient=False):
        yield refresh
        last = 0.0
        refresh()


def outcome_tables(store: Store, campaign_name: str) -> list[Table]:
    """The end-of-run view: counts per outcome, then one row per contact."""
    row = store.campaign(campaign_name)
    if row is None:
        return []
    latest = store.latest_attempts(row.id)
    counts = Counter(_label(a) for a in latest)
    summary = Table(title=f"Outcomes — {campaign_name}", title_justify="left")
    summary.add_column("outcome")
    summary.add_column("contacts", justify="right")
    for label, n in counts.most_common():
        summary.add_row(label, str(n))
    detail = Table(title="Per contact", title_justify="left", show_lines=False)
    for column in (
        "name",
        "phone",
        "attempts",
        "outcome",
        "duration",
        "when (UTC)",
        "summary / reason",
    ):
        detail.add_column(
            column,
            overflow="fold",
            justify="right" if column in ("attempts", "duration") else "left",
        )
    for attempt in latest:
        when = (
            attempt.due_at
            if attempt.state is AttemptState.PLANNED
            else (attempt.dialing_at or attempt.due_at)
        )
        detail.add_row(
            attempt.contact.name or "-",
            attempt.phone,
            str(attempt.attempt_no),
            _label(attempt),
            f"{attempt.duration_seconds}s" if attempt.duration_seconds is not None else "-",
            when.strftime("%H:%M:%S") if when else "-",
            _why(attempt),
        )
    return [summary, detail]


def _label(attempt: AttemptView) -> str:
    if attempt.state is AttemptState.PLANNED:
        return (
            "retry planned" if attempt.attempt_no > 1 else f"deferred ({attempt.reason or 'due'})"
        )
    if attempt.state in (AttemptState.SKIPPED, AttemptState.EXPIRED, AttemptState.CANCELLED):
        return f"{attempt.state.value} ({attempt.reason})"
    return attempt.outcome or attempt.state.value


def _why(attempt: AttemptView) -> str:
    if attempt.state is AttemptState.PLANNED:
        return f"{attempt.reason or 'due'} until {attempt.due_at:%Y-%m-%d %H:%M} UTC"
    text = attempt.summary or attempt.reason or ""
    return text if len(text) <= 48 else text[:45] + "..."
