"""What each page shows, read from a :class:`~dialer.web.source.StatusSource`.

Each ``*_page`` function makes the store reads one page needs (every one a seek or a bounded
range, see dialer.store.browse) and returns a frozen record the templates render; numbers are
not masked here (the templates show every number through one function that masks them).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from dialer import phones
from dialer.attempts import AttemptState
from dialer.store import AttemptView, CampaignRecord, CampaignState, RunProgress, Search
from dialer.web.charts import Chart, columns, horizontal_bars
from dialer.web.figures import FigureCounter, Figures
from dialer.web.source import StatusSource
from dialer.web.words import (
    NOT_CALLED_STATES,
    SKIP_REASONS,
    attempt_words,
    clock_skew_words,
    daemon_words,
    key_hold_words,
    needs_a_person,
)

__all__ = [
    "PAGE_SIZE",
    "SEARCH_WINDOW",
    "CampaignPage",
    "Filters",
    "Overview",
    "campaign_page",
    "needs_a_person_rows",
    "overview",
]

PAGE_SIZE = 50
#: above every attempt id (ids are 32-bit integers on PostgreSQL)
ABOVE_EVERY_ID = 2**31 - 1
#: attempt ids a search by name reads per page (a bounded range, whatever the campaign's size)
SEARCH_WINDOW = 50_000
#: stopped daemons are listed this long after their last heartbeat
STOPPED_SHOWN_FOR = timedelta(hours=24)
#: the order `dialer status` lists states in
STATE_ORDER = list(AttemptState)
_PHONE_CHARS = re.compile(r"[\d\s+().\-]+")
#: a state the page says is "held"
HELD = CampaignState.HELD
#: how long a page waits for a campaign's first count after a start before it says
#: "counting…": within a page's 200 ms, and well above a small campaign's few milliseconds
FIRST_COUNT_WAIT_S = 0.1
#: a campaign's figures while its first count is under way
NOT_COUNTED_YET = Figures(counts={}, progress=None, skipped={}, counted_at=0.0)


@dataclass(frozen=True, kw_only=True)
class Count:
    """Attempts in one (state, outcome): a row of the table `dialer status` prints too."""

    state: AttemptState
    outcome: str | None
    attempts: int

    @property
    def words(self) -> str:
        return attempt_words(self.state, self.outcome, None)


@dataclass(frozen=True, kw_only=True)
class CampaignSummary:
    name: str
    state: str
    key: str
    progress: RunProgress | None
    counts: tuple[Count, ...]
    next_due_at: datetime | None
    #: what holds it, in words
    holds: tuple[str, ...]
    #: its first count after a start is still under way: counts and progress are empty
    counting: bool = False

    @property
    def settled(self) -> int:
        return self.progress.settled if self.progress else 0

    @property
    def contacts(self) -> int:
        return self.progress.contacts if self.progress else 0

    @property
    def in_flight(self) -> int:
        return self.progress.in_flight if self.progress else 0

    @property
    def percent(self) -> float:
        return 100.0 * self.settled / self.contacts if self.contacts else 0.0


@dataclass(frozen=True, kw_only=True)
class Hold:
    """Something that stops dialling that a person should know about, in words."""

    kind: str
    words: str


@dataclass(frozen=True, kw_only=True)
class DaemonLine:
    id: str
    started_at: datetime
    heartbeat_at: datetime
    alive: bool
    serving: bool


@dataclass(frozen=True, kw_only=True)
class BudgetUse:
    """One API key's requests per minute over the last hour, against its limit."""

    key: str
    limit: int | None
    chart: Chart
    total: int
    peak: int
    rate_limited: int
    first_minute: datetime
    last_minute: datetime


@dataclass(frozen=True, kw_only=True)
class Overview:
    now: datetime
    campaigns: tuple[CampaignSummary, ...]
    holds: tuple[Hold, ...]
    daemons: tuple[DaemonLine, ...]
    budgets: tuple[BudgetUse, ...]
    serving: str | None


@dataclass(frozen=True, kw_only=True)
class Filters:
    """The campaign page's filters and search, as the query string gives them."""

    state: AttemptState | None = None
    outcome: str | None = None
    reason: str | None = None
    search: str = ""

    @classmethod
    def parse(cls, query: Any) -> Filters:
        state = query.get("state") or None
        return cls(
            state=AttemptState(state) if state in set(AttemptState) else None,
            outcome=query.get("outcome") or None,
            reason=query.get("reason") or None,
            search=(query.get("q") or "").strip()[:100],
        )

    @property
    def active(self) -> bool:
        return bool(self.state or self.outcome or self.reason or self.search)

    def admits(self, view: AttemptView) -> bool:
        return (
            (self.state is None or view.state is self.state)
            and (self.outcome is None or view.outcome == self.outcome)
            and (self.reason is None or view.reason == self.reason)
        )

    def query(self, **more: object) -> dict[str, str]:
        """The query string of these filters (and ``more``), without empty values."""
        values = {
            "state": self.state.value if self.state else None,
            "outcome": self.outcome,
            "reason": self.reason,
            "q": self.search or None,
            **more,
        }
        return {k: str(v) for k, v in values.items() if v is not None}


@dataclass(frozen=True, kw_only=True)
class Row:
    """One attempt in a list."""

    id: int
    attempt_no: int
    name: str
    phone: str
    state: AttemptState
    what: str
    #: when it was dialled, or when it is (was) due
    when: datetime
    duration_seconds: int | None
    summary: str | None
    source_line: int

    @classmethod
    def of(cls, view: AttemptView) -> Row:
        return cls(
            id=view.id,
            attempt_no=view.attempt_no,
            name=view.contact.name or "",
            phone=view.phone,
            state=view.state,
            what=attempt_words(view.state, view.outcome, view.reason),
            when=view.dialing_at or view.due_at,
            duration_seconds=view.duration_seconds,
            summary=view.summary,
            source_line=view.contact.source_line,
        )


@dataclass(frozen=True, kw_only=True)
class CampaignPage:
    summary: CampaignSummary
    now: datetime
    outcome_chart: Chart
    hours_chart: Chart
    hours_until: datetime | None
    filters: Filters
    rows: tuple[Row, ...]
    #: the query string of the next (older) page, None on the last
    next_page: dict[str, str] | None
    #: said above the list (a search's window, a refused search)
    note: str | None
    states: tuple[AttemptState, ...]
    outcomes: tuple[str, ...]
    reasons: tuple[str, ...]
    #: showing an older page (or window) than the first
    paged: bool = False
    skipped_by_reason: tuple[tuple[str, int], ...] = field(default_factory=tuple)


# ---------------------------------------------------------------------------- the overview


def overview(source: StatusSource, counter: FigureCounter) -> Overview:
    store, now = source.store, source.clock()
    facts = source.facts()
    held_keys = {hold.key: hold for hold in facts.key_holds}
    campaigns = tuple(
        summary(
            source,
            campaign,
            counter.glance(campaign.id, wait_s=FIRST_COUNT_WAIT_S),
            held_keys=held_keys,
        )
        for campaign in store.campaigns()
    )
    holds = [Hold(kind="key", words=key_hold_words(h.key, h.status)) for h in facts.key_holds]
    if facts.clock_skew is not None:
        holds.append(Hold(kind="clock", words=clock_skew_words(facts.clock_skew)))
    holds.extend(
        Hold(kind="campaign", words=f"Campaign {c.name}: {hold}")
        for c in campaigns
        for hold in c.holds
        if c.state == HELD
    )
    daemons = tuple(
        DaemonLine(
            id=worker.id,
            started_at=worker.started_at,
            heartbeat_at=worker.heartbeat_at,
            alive=now - worker.heartbeat_at <= source.worker_ttl,
            serving=worker.id == facts.worker_id,
        )
        for worker in store.workers_seen_since(now - STOPPED_SHOWN_FOR)
    )
    holds.extend(
        Hold(kind="daemon", words=daemon_words(d.id, d.heartbeat_at, now))
        for d in daemons
        if not d.alive
    )
    return Overview(
        now=now,
        campaigns=campaigns,
        holds=tuple(holds),
        daemons=daemons,
        budgets=budget_use(source, now),
        serving=facts.worker_id,
    )


def summary(
    source: StatusSource,
    campaign: CampaignRecord,
    figures: Figures | None,
    *,
    held_keys: dict[str, Any],
) -> CampaignSummary:
    if figures is None:
        figures = NOT_COUNTED_YET
    counts = tuple(
        Count(state=AttemptState(state), outcome=outcome, attempts=n)
        for (state, outcome), n in sorted(
            figures.counts.items(),
            key=lambda kv: (STATE_ORDER.index(AttemptState(kv[0][0])), kv[0][1] or ""),
        )
    )
    holds: list[str] = []
    if campaign.state == HELD:
        holds.append(_held_words(campaign))
    if campaign.api_key_name in held_keys:
        hold = held_keys[campaign.api_key_name]
        holds.append(key_hold_words(hold.key, hold.status))
    return CampaignSummary(
        name=campaign.name,
        state=str(campaign.state),
        key=campaign.api_key_name,
        progress=figures.progress,
        counts=counts,
        next_due_at=source.store.campaign_next_due_at(campaign.id),
        holds=tuple(holds),
        counting=figures is NOT_COUNTED_YET,
    )


def _held_words(campaign: CampaignRecord) -> str:
    told = f" {campaign.hold_reason}." if campaign.hold_reason else ""
    return (
        "held: VoiceDock refused this campaign's calls in a way only a person can fix "
        f"(its assistant, number or settings).{told} Fix the campaign file, or `dialer "
        "resume` it once fixed."
    )


def budget_use(source: StatusSource, now: datetime) -> tuple[BudgetUse, ...]:
    """Each API key's requests per minute over the hour up to ``now``'s minute (the minute
    under way holds what this daemon has not written yet, besides what others wrote)."""
    last = now.replace(second=0, microsecond=0)
    first = last - timedelta(minutes=59)
    per_key: dict[str, dict[datetime, tuple[int, int]]] = defaultdict(dict)
    for count in source.store.request_counts_since(first):
        per_key[count.key_name][count.minute] = (count.requests, count.rate_limited)
    for key, (requests, limited) in source.facts().unwritten_requests.items():
        before, limited_before = per_key[key].get(last, (0, 0))
        per_key[key][last] = (before + requests, limited_before + limited)
    uses = []
    for key in sorted(set(per_key) | set(source.key_limits)):
        minutes = [first + timedelta(minutes=i) for i in range(60)]
        values = [per_key[key].get(m, (0, 0)) for m in minutes]
        limit = source.key_limits.get(key)
        uses.append(
            BudgetUse(
                key=key,
                limit=limit,
                chart=columns(
                    width=1000,
                    height=90,
                    values=[
                        (f"{m:%H:%M}", requests)
                        for m, (requests, _) in zip(minutes, values, strict=True)
                    ],
                    limit=limit,
                ),
                total=sum(requests for requests, _ in values),
                peak=max(requests for requests, _ in values),
                rate_limited=sum(limited for _, limited in values),
                first_minute=first,
                last_minute=last,
            )
        )
    return tuple(uses)


# ---------------------------------------------------------------------------- a campaign


def campaign_page(
    source: StatusSource,
    counter: FigureCounter,
    campaign: CampaignRecord,
    filters: Filters,
    *,
    before: int | None,
    floor: int | None,
    mask_phones: bool,
) -> CampaignPage:
    now = source.clock()
    facts = source.facts()
    held = {hold.key: hold for hold in facts.key_holds}
    figures = counter.glance(campaign.id, wait_s=FIRST_COUNT_WAIT_S)
    head = summary(source, campaign, figures, held_keys=held)
    groups = {(c.state, c.outcome) for c in head.counts}
    skipped = figures.skipped if figures is not None else {}
    rows, next_page, note = _attempt_rows(
        source, campaign, filters, groups, before=before, floor=floor, mask_phones=mask_phones
    )
    if head.counting and note is None:
        note = (
            "Counting this campaign's attempts after a start: the list follows at the next refresh."
        )
    hours_chart, hours_until = _calls_per_hour(source, campaign.id, now)
    return CampaignPage(
        summary=head,
        now=now,
        outcome_chart=_outcome_chart(head.counts),
        hours_chart=hours_chart,
        hours_until=hours_until,
        filters=filters,
        rows=tuple(rows),
        next_page=next_page,
        note=note,
        states=tuple(s for s in STATE_ORDER if any(c.state is s for c in head.counts)),
        outcomes=tuple(sorted({c.outcome for c in head.counts if c.outcome})),
        reasons=tuple(sorted(set(SKIP_REASONS) | {r for (_, r) in skipped if r})),
        paged=before is not None,
        skipped_by_reason=tuple(
            sorted(
                ((attempt_words(s, None, r), n) for (s, r), n in skipped.items()),
                key=lambda item: -item[1],
            )
        ),
    )


def _attempt_rows(
    source: StatusSource,
    campaign: CampaignRecord,
    filters: Filters,
    groups: set[tuple[AttemptState, str | None]],
    *,
    before: int | None,
    floor: int | None,
    mask_phones: bool,
) -> tuple[list[Row], dict[str, str] | None, str | None]:
    store = source.store
    if filters.search:
        return _search_rows(
            source, campaign, filters, groups, before=before, floor=floor, mask_phones=mask_phones
        )
    chosen: set[tuple[AttemptState, str | None]]
    if filters.reason is not None:
        chosen = {
            (state, filters.reason)
            for state in NOT_CALLED_STATES
            if filters.state in (None, state) and filters.outcome is None
        }
        views = store.newest_attempts(
            campaign.id, chosen, by="reason", before=before, limit=PAGE_SIZE
        )
    else:
        chosen = {
            (state, outcome)
            for state, outcome in groups
            if filters.state in (None, state) and filters.outcome in (None, outcome)
        }
        views = store.newest_attempts(
            campaign.id, chosen, by="outcome", before=before, limit=PAGE_SIZE
        )
    next_page = filters.query(before=views[-1].id) if len(views) == PAGE_SIZE else None
    return [Row.of(v) for v in views], next_page, None


def _search_rows(
    source: StatusSource,
    campaign: CampaignRecord,
    filters: Filters,
    groups: set[tuple[AttemptState, str | None]],
    *,
    before: int | None,
    floor: int | None,
    mask_phones: bool,
) -> tuple[list[Row], dict[str, str] | None, str | None]:
    search, refused = parse_search(filters.search, mask_phones=mask_phones)
    if search is None:
        return [], None, refused
    store = source.store
    if not search.scans:
        views = store.search_attempts(
            campaign.id, search, before=before or ABOVE_EVERY_ID, limit=PAGE_SIZE
        )
        rows = [Row.of(v) for v in views if filters.admits(v)]
        seek_more = filters.query(before=views[-1].id) if len(views) == PAGE_SIZE else None
        return rows, seek_more, None
    if before is None:  # the first window ends at the campaign's newest attempt
        newest = store.newest_attempts(campaign.id, groups, by="outcome", limit=1)
        if not newest:
            return [], None, None
        before = newest[0].id + 1
    floor = max(before - SEARCH_WINDOW, 0) if floor is None else max(min(floor, before), 0)
    views = store.search_attempts(campaign.id, search, before=before, floor=floor, limit=PAGE_SIZE)
    rows = [Row.of(v) for v in views if filters.admits(v)]
    if len(views) == PAGE_SIZE:
        more: dict[str, str] | None = filters.query(before=views[-1].id, floor=floor)
        note = None
    elif floor > 0:
        more = filters.query(before=floor, floor=max(floor - SEARCH_WINDOW, 0))
        note = (
            f"Searched attempts #{floor} to #{before - 1}; older attempts are searched "
            "a window at a time (next page)."
        )
    else:
        more, note = None, None
    return rows, more, note


def parse_search(text: str, *, mask_phones: bool) -> tuple[Search | None, str | None]:
    """What a search box's text looks for: a whole number (a seek), digits, or a name.

    With numbers masked, digits are only looked for at a number's end, four at most (the
    digits the page shows anyway): a longer search would tell the hidden ones one by one."""
    if _PHONE_CHARS.fullmatch(text):
        digits = re.sub(r"\D", "", text)
        try:
            return Search(phone=phones.normalize(text)), None
        except ValueError:
            pass
        if not digits:
            return None, None
        if mask_phones:
            if len(digits) > 4:
                return None, (
                    "Numbers are masked: search a whole number (with its + and country "
                    "code) or its last four digits."
                )
            return Search(number_end=digits), None
        return Search(digits=digits), None
    return Search(name_part=text), None


def _outcome_chart(counts: Sequence[Count]) -> Chart:
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for count in counts:
        kind = count.outcome or count.state.value
        totals[(count.words, kind)] += count.attempts
    items = sorted(totals.items(), key=lambda kv: (kv[0][1] != "completed", -kv[1], kv[0][0]))
    return horizontal_bars([(words, n, kind) for (words, kind), n in items])


def _calls_per_hour(
    source: StatusSource, campaign_id: int, now: datetime
) -> tuple[Chart, datetime | None]:
    """Dials per hour over the 24 hours up to now, or up to the campaign's last dial when
    that was longer ago (a finished campaign still shows its day)."""
    store = source.store
    last = store.last_dialled_at(campaign_id)
    if last is None:
        return columns([]), None
    end = min(now, max(last, now - timedelta(hours=24)))
    until = end.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    since = until - timedelta(hours=24)
    counts = store.calls_per_hour(campaign_id, since=since, until=until)
    hours = [since + timedelta(hours=i) for i in range(24)]
    return columns([(f"{h:%H}", counts.get(h, 0)) for h in hours], height=100), until


# ---------------------------------------------------------------------------- needs a person


def needs_a_person_groups(
    counts: Sequence[Count],
) -> set[tuple[AttemptState, str | None]]:
    return {(c.state, c.outcome) for c in counts if needs_a_person(c.state, c.outcome)}


def needs_a_person_rows(
    source: StatusSource,
    counter: FigureCounter,
    campaign: CampaignRecord,
    *,
    before: int | None,
    limit: int = PAGE_SIZE,
) -> list[AttemptView]:
    """A page of the contacts whose newest attempt left them needing a person."""
    counts = [
        Count(state=AttemptState(s), outcome=o, attempts=n)
        for (s, o), n in counter.of(campaign.id).counts.items()
    ]
    return source.store.newest_attempts(
        campaign.id,
        needs_a_person_groups(counts),
        by="outcome",
        before=before,
        limit=limit,
        latest_only=True,
    )


def every_needing_a_person(
    source: StatusSource, counter: FigureCounter, campaign: CampaignRecord, *, batch: int = 500
) -> Iterator[AttemptView]:
    """Every contact needing a person, newest first, a keyset page at a time."""
    before: int | None = None
    while True:
        views = needs_a_person_rows(source, counter, campaign, before=before, limit=batch)
        yield from views
        if len(views) < batch:
            return
        before = views[-1].id
