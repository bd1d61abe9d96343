"""The store's SQL, by name: Core statements built once at import, and the few that vary by a
flag built once per flag value (``functools.cache``).

Statements of a call's hot path are built once because SQLAlchemy spends more CPU building and
cache-keying a statement than SQLite spends running it; a statement object reused is compiled
once and its cache key memoized. ``dialer.store.store`` runs them (``sql.NAME``); their bound
parameters are named in each statement.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from dialer.attempts import (
    FINAL_STATES,
    LIVE_STATES,
    TERMINAL_STATUSES,
    AttemptState,
)
from dialer.store.records import CampaignState
from dialer.store.tables import (
    ATTEMPTS,
    BUDGETS,
    CAMPAIGNS,
    CONTACTS,
    EVENTS,
    REQUEST_COUNTS,
    RUNS,
    WORKERS,
)

# ----- the history
INSERT_EVENT = sa.insert(EVENTS)


@cache
def events(*, of_attempt: bool, of_kind: bool) -> sa.Select[Any]:
    """Every event in order, of one attempt (``attempt_id``) and of one kind (``kind``)."""
    query = sa.select(EVENTS).order_by(EVENTS.c.id)
    if of_attempt:
        query = query.where(EVENTS.c.attempt_id == sa.bindparam("attempt_id"))
    if of_kind:
        query = query.where(EVENTS.c.kind == sa.bindparam("kind"))
    return query


# ----- attempts as the loops see them (AttemptView rows)


def state_in(states: Iterable[AttemptState]) -> sa.ColumnElement[bool]:
    """``state = ? OR state = ?``: an ``IN`` list is expanded anew on every execution, which
    costs more than the rest of these statements' parameters."""
    return sa.or_(*(ATTEMPTS.c.state == state.value for state in sorted(states)))


#: every attempt with what an AttemptView shows of its contact and campaign (rows, not ORM
#: objects: loading two ORM objects per row cost more than the query itself)
ATTEMPT_VIEWS = (
    sa.select(
        *(
            ATTEMPTS.c[name]
            for name in (
                "id", "run_id", "campaign_id", "contact_id", "phone", "attempt_no", "state",
                "due_at", "reason", "dialing_at", "call_id", "next_poll_at", "polls", "outcome",
                "owner", "duration_seconds", "summary", "call_status",
            )
        ),
        *(
            CONTACTS.c[name].label(f"contact_{name}")
            for name in (
                "phone", "name", "timezone", "variables", "call_at", "appointment_at",
                "deadline", "source_line", "key",
            )
        ),
        CAMPAIGNS.c.name.label("campaign_name"),
        sa.func.coalesce(ATTEMPTS.c.dial_key_name, CAMPAIGNS.c.api_key_name).label(
            "api_key_name"
        ),
    )
    .join_from(ATTEMPTS, CONTACTS, CONTACTS.c.id == ATTEMPTS.c.contact_id)
    .join(CAMPAIGNS, CAMPAIGNS.c.id == ATTEMPTS.c.campaign_id)
)  # fmt: skip
VIEW_BY_ID = ATTEMPT_VIEWS.where(ATTEMPTS.c.id == sa.bindparam("attempt_id"))
VIEW_BY_CALL_ID = ATTEMPT_VIEWS.where(ATTEMPTS.c.call_id == sa.bindparam("call_id"))
VIEWS_BY_IDS = ATTEMPT_VIEWS.where(ATTEMPTS.c.id.in_(sa.bindparam("ids", expanding=True))).order_by(
    ATTEMPTS.c.id
)
#: what a follower's list needs of each call in flight (a list every few seconds reads them
#: all: the full views of the changed ones only are read after it)
FOLLOWED = (
    sa.select(
        ATTEMPTS.c.id,
        ATTEMPTS.c.call_id,
        ATTEMPTS.c.dialing_at,
        ATTEMPTS.c.call_status,
        sa.func.coalesce(ATTEMPTS.c.dial_key_name, CAMPAIGNS.c.api_key_name).label("api_key_name"),
    )
    .join_from(ATTEMPTS, CAMPAIGNS, CAMPAIGNS.c.id == ATTEMPTS.c.campaign_id)
    .where(ATTEMPTS.c.state == AttemptState.IN_FLIGHT.value, ATTEMPTS.c.call_id.is_not(None))
)
_PLANNED_AND_ACTIVE = (
    ATTEMPTS.c.state == AttemptState.PLANNED.value,
    CAMPAIGNS.c.state == CampaignState.ACTIVE.value,
)
DUE_VIEWS = (
    ATTEMPT_VIEWS.where(
        *_PLANNED_AND_ACTIVE,
        ATTEMPTS.c.due_at <= sa.bindparam("now", type_=ATTEMPTS.c.due_at.type),
    )
    .order_by(ATTEMPTS.c.due_at, ATTEMPTS.c.id)
    .limit(sa.bindparam("limit", type_=sa.Integer()))
)
#: the same, of one campaign: a range of ix_attempts_campaign_due, so that one campaign's
#: backlog is never read through to reach another's (the dispatcher takes campaigns in turn)
DUE_VIEWS_OF_CAMPAIGN = (
    ATTEMPT_VIEWS.where(
        *_PLANNED_AND_ACTIVE,
        ATTEMPTS.c.campaign_id == sa.bindparam("campaign_id"),
        ATTEMPTS.c.due_at <= sa.bindparam("now", type_=ATTEMPTS.c.due_at.type),
    )
    .order_by(ATTEMPTS.c.due_at, ATTEMPTS.c.id)
    .limit(sa.bindparam("limit", type_=sa.Integer()))
)
NEXT_DUE_AT = (
    sa.select(sa.func.min(ATTEMPTS.c.due_at, type_=ATTEMPTS.c.due_at.type))
    .join_from(ATTEMPTS, CAMPAIGNS, CAMPAIGNS.c.id == ATTEMPTS.c.campaign_id)
    .where(*_PLANNED_AND_ACTIVE)
)
DIALING_SINCE = ATTEMPT_VIEWS.where(
    ATTEMPTS.c.state == AttemptState.DIALING.value,
    ATTEMPTS.c.dialing_at <= sa.bindparam("cutoff", type_=ATTEMPTS.c.dialing_at.type),
).order_by(ATTEMPTS.c.id)
HISTORY = ATTEMPT_VIEWS.where(
    ATTEMPTS.c.run_id == sa.bindparam("run_id"),
    ATTEMPTS.c.contact_id == sa.bindparam("contact_id"),
).order_by(ATTEMPTS.c.attempt_no)


@cache
def attempt_views(*, with_campaign: bool, states: frozenset[AttemptState] | None) -> sa.Select[Any]:
    query = ATTEMPT_VIEWS.order_by(ATTEMPTS.c.id)
    if with_campaign:
        query = query.where(ATTEMPTS.c.campaign_id == sa.bindparam("campaign_id"))
    if states is not None:
        query = query.where(state_in(states))
    return query


# ----- attempts: other reads
REQUEST_BODY = sa.select(ATTEMPTS.c.request_body).where(ATTEMPTS.c.id == sa.bindparam("attempt_id"))
DIALLED_SINCE = sa.select(ATTEMPTS.c.dialing_at).where(
    ATTEMPTS.c.phone == sa.bindparam("phone"),
    ATTEMPTS.c.dialing_at >= sa.bindparam("since", type_=ATTEMPTS.c.dialing_at.type),
)
KNOWN_CALL_IDS = sa.select(ATTEMPTS.c.call_id).where(
    ATTEMPTS.c.call_id.in_(sa.bindparam("call_ids", expanding=True))
)
LIVE_COUNTS_BY_CAMPAIGN = (
    sa.select(ATTEMPTS.c.campaign_id, sa.func.count())
    .where(state_in(LIVE_STATES))
    .group_by(ATTEMPTS.c.campaign_id)
)


def _in_flight_by(column: sa.ColumnElement[Any], param: str) -> sa.Select[int, int]:
    """(id, campaign id) of the attempt in flight whose ``column`` is the bound ``param``."""
    return sa.select(ATTEMPTS.c.id, ATTEMPTS.c.campaign_id).where(
        column == sa.bindparam(param), ATTEMPTS.c.state == AttemptState.IN_FLIGHT.value
    )


IN_FLIGHT_BY_CALL_ID = _in_flight_by(ATTEMPTS.c.call_id, "call_id")
IN_FLIGHT_BY_ID = _in_flight_by(ATTEMPTS.c.id, "attempt_id")
LIVE_AMONG = sa.select(ATTEMPTS.c.id, ATTEMPTS.c.campaign_id).where(
    ATTEMPTS.c.id.in_(sa.bindparam("ids", expanding=True)), state_in(LIVE_STATES)
)


@cache
def count_in_states(states: frozenset[AttemptState]) -> sa.Select[int]:
    return sa.select(sa.func.count()).select_from(ATTEMPTS).where(state_in(states))


# ----- one call at a time to a number
#: the first key of the advisory locks this store takes (the second: the phone's hash)
_PHONE_LOCK_CLASS = 0x44_49_41_4C  # "DIAL"
LOCK_PHONE = sa.select(
    sa.func.pg_advisory_xact_lock(_PHONE_LOCK_CLASS, sa.func.hashtext(ATTEMPTS.c.phone))
).where(ATTEMPTS.c.id == sa.bindparam("attempt_id"))
_OTHER = ATTEMPTS.alias("other")


def _on_the_phone(attempts: sa.FromClause) -> sa.ColumnElement[bool]:
    """A call of this attempt may be ringing or talking: it is dialled or in flight, or it
    was given up on (`unknown`) while its call was last seen live, since ``busy_since``."""
    return sa.or_(
        *(attempts.c.state == s.value for s in sorted(LIVE_STATES)),
        sa.and_(
            attempts.c.state == AttemptState.UNKNOWN.value,
            attempts.c.call_status.is_not(None),
            attempts.c.call_status.not_in(sorted(TERMINAL_STATUSES)),
            attempts.c.dialing_at >= sa.bindparam("busy_since", type_=attempts.c.dialing_at.type),
        ),
    )


_LIVE_TO_SAME_PHONE = sa.select(_OTHER.c.id).where(
    _OTHER.c.phone == ATTEMPTS.c.phone, _on_the_phone(_OTHER)
)
LIVE_ATTEMPT_TO_PHONE = (
    sa.select(ATTEMPTS.c.id)
    .where(ATTEMPTS.c.phone == sa.bindparam("phone"), _on_the_phone(ATTEMPTS))
    .limit(1)
)


# ----- transitions, retries and the looks at calls


@cache
def transition(
    target: AttemptState,
    allowed: frozenset[AttemptState],
    *,
    pinned: bool,
    campaign_active: bool,
    columns: tuple[str, ...],
    phone_free: bool = False,
) -> sa.Update:
    """The compare-and-set UPDATE of one kind of transition (see ``Store._transition``).

    Parameters: ``_attempt_id``, ``_dialed_at`` when ``pinned``, and ``_<column>`` for each
    of ``columns`` (a bound name may not be a column's own name in an UPDATE).
    """
    conditions = [
        ATTEMPTS.c.id == sa.bindparam("_attempt_id"),
        state_in(allowed),
    ]
    if pinned:
        conditions.append(
            ATTEMPTS.c.dialing_at == sa.bindparam("_dialed_at", type_=ATTEMPTS.c.dialing_at.type)
        )
    if campaign_active:
        active = sa.select(CAMPAIGNS.c.id).where(CAMPAIGNS.c.state == CampaignState.ACTIVE.value)
        conditions.append(ATTEMPTS.c.campaign_id.in_(active))
    if phone_free:
        conditions.append(~sa.exists(_LIVE_TO_SAME_PHONE))
    values = {name: sa.bindparam(f"_{name}", type_=ATTEMPTS.c[name].type) for name in columns}
    return (
        sa.update(ATTEMPTS)
        .where(*conditions)
        .values(state=target.value, **values)
        .returning(ATTEMPTS.c.campaign_id)
    )


@cache
def insert_retry(dialect: str) -> sa.Insert:
    """INSERT of a retry attempt, returning its id, or no row when that attempt number exists.

    ON CONFLICT DO NOTHING rather than catching the IntegrityError: on PostgreSQL an error
    aborts the whole transaction, and this one also holds the outcome it follows."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert(ATTEMPTS)
        .on_conflict_do_nothing(index_elements=["run_id", "contact_id", "attempt_no"])
        .returning(ATTEMPTS.c.id)
    )


RECORD_POLL = (
    sa.update(ATTEMPTS)
    .where(
        ATTEMPTS.c.id == sa.bindparam("_attempt_id"),
        state_in([AttemptState.IN_FLIGHT, AttemptState.UNKNOWN]),
    )
    .values(
        call_status=sa.bindparam("_call_status"),
        raw=sa.bindparam("_raw", type_=ATTEMPTS.c.raw.type),
        next_poll_at=sa.bindparam("_next_poll_at", type_=ATTEMPTS.c.next_poll_at.type),
        polls=ATTEMPTS.c.polls + 1,
        updated_at=sa.bindparam("_updated_at", type_=ATTEMPTS.c.updated_at.type),
    )
)
RESCHEDULE_POLL = (
    sa.update(ATTEMPTS)
    .where(
        ATTEMPTS.c.id == sa.bindparam("attempt_id"),
        state_in([AttemptState.IN_FLIGHT, AttemptState.UNKNOWN]),
    )
    .values(
        next_poll_at=sa.bindparam("next_poll_at", type_=ATTEMPTS.c.next_poll_at.type),
        updated_at=sa.bindparam("updated_at", type_=ATTEMPTS.c.updated_at.type),
    )
)


@cache
def calls_due_a_look(*, stragglers: bool, skip_locked: bool) -> sa.Select[int]:
    """The calls due a look, by next look. ``stragglers`` (while a list observes every call in
    flight): only `unknown` calls and the in-flight attempts in the ``ids`` parameter."""
    if stragglers:
        which = sa.or_(
            ATTEMPTS.c.state == AttemptState.UNKNOWN.value,
            sa.and_(
                ATTEMPTS.c.state == AttemptState.IN_FLIGHT.value,
                ATTEMPTS.c.id.in_(sa.bindparam("ids", expanding=True)),
            ),
        )
    else:
        which = state_in([AttemptState.IN_FLIGHT, AttemptState.UNKNOWN])
    query = (
        sa.select(ATTEMPTS.c.id)
        .where(
            which,
            ATTEMPTS.c.next_poll_at.is_not(None),
            ATTEMPTS.c.next_poll_at <= sa.bindparam("now", type_=ATTEMPTS.c.next_poll_at.type),
        )
        .order_by(ATTEMPTS.c.next_poll_at)
        .limit(sa.bindparam("limit", type_=sa.Integer()))
    )
    return query.with_for_update(skip_locked=True) if skip_locked else query


PUSH_POLLS = (
    sa.update(ATTEMPTS)
    .where(ATTEMPTS.c.id.in_(sa.bindparam("ids", expanding=True)))
    .values(next_poll_at=sa.bindparam("until", type_=ATTEMPTS.c.next_poll_at.type))
)
NEXT_POLL_AT = sa.select(
    sa.func.min(ATTEMPTS.c.next_poll_at, type_=ATTEMPTS.c.next_poll_at.type)
).where(state_in([AttemptState.IN_FLIGHT, AttemptState.UNKNOWN]))


# ----- campaigns and their contacts
CAMPAIGN_BY_NAME = sa.select(CAMPAIGNS).where(CAMPAIGNS.c.name == sa.bindparam("name"))
CAMPAIGNS_BY_NAME = sa.select(CAMPAIGNS).order_by(CAMPAIGNS.c.name)
CAMPAIGN_STATE = sa.select(CAMPAIGNS.c.state).where(CAMPAIGNS.c.id == sa.bindparam("campaign_id"))
CAMPAIGN_STATE_BY_NAME = sa.select(CAMPAIGNS.c.id, CAMPAIGNS.c.state).where(
    CAMPAIGNS.c.name == sa.bindparam("name")
)
#: held to the commit on PostgreSQL: two state changes of one campaign take turns
CAMPAIGN_STATE_BY_NAME_LOCKED = CAMPAIGN_STATE_BY_NAME.with_for_update()
#: any change of state ends a hold: its reason goes with it
SET_CAMPAIGN_STATE = (
    sa.update(CAMPAIGNS)
    .where(CAMPAIGNS.c.id == sa.bindparam("campaign_id"))
    .values(
        state=sa.bindparam("state"),
        updated_at=sa.bindparam("updated_at", type_=CAMPAIGNS.c.updated_at.type),
        held_at=None,
        hold_reason=None,
        hold_phone=None,
        hold_line=None,
    )
)
#: an active campaign held, with why (a paused or cancelled one stays as a person left it)
HOLD_CAMPAIGN = (
    sa.update(CAMPAIGNS)
    .where(
        CAMPAIGNS.c.id == sa.bindparam("campaign_id"),
        CAMPAIGNS.c.state == CampaignState.ACTIVE.value,
    )
    .values(
        state=CampaignState.HELD.value,
        updated_at=sa.bindparam("now", type_=CAMPAIGNS.c.updated_at.type),
        held_at=sa.bindparam("now", type_=CAMPAIGNS.c.held_at.type),
        hold_reason=sa.bindparam("reason"),
        hold_phone=sa.bindparam("phone"),
        hold_line=sa.bindparam("line"),
    )
)
#: a held campaign whose file was edited: active again (the edit is the person's fix)
RELEASE_HOLD = (
    sa.update(CAMPAIGNS)
    .where(
        CAMPAIGNS.c.id == sa.bindparam("campaign_id"),
        CAMPAIGNS.c.state == CampaignState.HELD.value,
    )
    .values(
        state=CampaignState.ACTIVE.value,
        held_at=None,
        hold_reason=None,
        hold_phone=None,
        hold_line=None,
    )
)
#: the attempts a hold sent back to planned, due at once when it is released
BRING_FORWARD = (
    sa.update(ATTEMPTS)
    .where(
        ATTEMPTS.c.id.in_(sa.bindparam("ids", expanding=True)),
        ATTEMPTS.c.state == AttemptState.PLANNED.value,
        ATTEMPTS.c.due_at > sa.bindparam("now", type_=ATTEMPTS.c.due_at.type),
    )
    .values(due_at=sa.bindparam("now", type_=ATTEMPTS.c.due_at.type))
)
CONTACTS_OF_CAMPAIGN = (
    sa.select(CONTACTS)
    .where(CONTACTS.c.campaign_id == sa.bindparam("campaign_id"))
    .order_by(CONTACTS.c.id)
)
CAMPAIGN_DEFINITION = sa.select(CAMPAIGNS.c.id, CAMPAIGNS.c.definition_hash).where(
    CAMPAIGNS.c.name == sa.bindparam("name")
)
#: held to the commit on PostgreSQL: daemons that see one edit of a campaign file import it
#: one after the other, and the later ones find it imported
CAMPAIGN_DEFINITION_LOCKED = CAMPAIGN_DEFINITION.with_for_update()
INSERT_CAMPAIGN = sa.insert(CAMPAIGNS).returning(CAMPAIGNS.c.id)
UPDATE_CAMPAIGN_DEFINITION = (
    sa.update(CAMPAIGNS)
    .where(CAMPAIGNS.c.id == sa.bindparam("campaign_id"))
    .values(
        source=sa.bindparam("source"),
        definition_hash=sa.bindparam("definition_hash"),
        api_key_name=sa.bindparam("api_key_name"),
        repeat=sa.bindparam("repeat"),
        done_when=sa.bindparam("done_when", type_=CAMPAIGNS.c.done_when.type),
        updated_at=sa.bindparam("updated_at", type_=CAMPAIGNS.c.updated_at.type),
    )
)
CONTACT_KEYS = sa.select(CONTACTS.c.id, CONTACTS.c.key, CONTACTS.c.removed).where(
    CONTACTS.c.campaign_id == sa.bindparam("campaign_id")
)
#: the contact columns an import writes (besides campaign_id and key, the key)
IMPORTED_CONTACT_COLUMNS = (
    "phone",
    "name",
    "timezone",
    "variables",
    "call_at",
    "appointment_at",
    "deadline",
    "source_line",
    "removed",
)
#: a stored contact's columns from an import (its id in ``contact_id``)
UPDATE_CONTACT = (
    CONTACTS.update()
    .where(CONTACTS.c.id == sa.bindparam("contact_id"))
    .values({name: sa.bindparam(name) for name in IMPORTED_CONTACT_COLUMNS})
)
#: contacts gone from the campaign file (their history is kept)
REMOVE_CONTACTS = (
    sa.update(CONTACTS)
    .where(CONTACTS.c.id.in_(sa.bindparam("ids", expanding=True)))
    .values(removed=True)
)
#: the attempts of these contacts never dialled (cancelled, each with its event, when the
#: contacts leave the file)
PLANNED_OF_CONTACTS = sa.select(ATTEMPTS.c.id).where(
    ATTEMPTS.c.contact_id.in_(sa.bindparam("ids", expanding=True)),
    ATTEMPTS.c.state == AttemptState.PLANNED.value,
)
CONTACT_REMOVED = sa.select(CONTACTS.c.removed).where(CONTACTS.c.id == sa.bindparam("contact_id"))


# ----- runs
INSERT_RUN = sa.insert(RUNS).returning(RUNS.c.id)
RUNS_OF_CAMPAIGN = (
    sa.select(RUNS).where(RUNS.c.campaign_id == sa.bindparam("campaign_id")).order_by(RUNS.c.id)
)
#: the campaign's newest run (the one contacts added by an import join, re-opened if need be)
LATEST_RUN_OF_CAMPAIGN = (
    sa.select(RUNS.c.id, RUNS.c.campaign_id, RUNS.c.fire_time, RUNS.c.finished_at)
    .where(RUNS.c.campaign_id == sa.bindparam("campaign_id"))
    .order_by(RUNS.c.fire_time.desc(), RUNS.c.id.desc())
    .limit(1)
)
REOPEN_RUN = sa.update(RUNS).where(RUNS.c.id == sa.bindparam("run_id")).values(finished_at=None)
CAMPAIGN_REPEAT = sa.select(CAMPAIGNS.c.repeat).where(CAMPAIGNS.c.id == sa.bindparam("campaign_id"))
_NOT_CANCELLED = ATTEMPTS.alias("not_cancelled")
_LIVE_ATTEMPT_CONTACTS = sa.select(_NOT_CANCELLED.c.contact_id).where(
    _NOT_CANCELLED.c.campaign_id == sa.bindparam("campaign_id"),
    _NOT_CANCELLED.c.state != AttemptState.CANCELLED.value,
)
_IN_THIS_RUN = sa.select(ATTEMPTS.c.contact_id).where(ATTEMPTS.c.run_id == sa.bindparam("run_id"))
#: What a planned first attempt takes from the run (bound: run_id, state, due_at, now) and from
#: its contact, in the order of PLAN_COLUMNS. Planning is one INSERT ... SELECT in the
#: database: a run of a million contacts never passes through Python (a list of a row and a
#: parameter dict per contact took ~650 MB, most of a daemon's memory, for 1M contacts).
PLAN_COLUMNS = (
    "run_id",
    "campaign_id",
    "contact_id",
    "phone",
    "attempt_no",
    "state",
    "due_at",
    "created_at",
    "updated_at",
)


def _planned(attempt_no: Any) -> tuple[Any, ...]:
    """The select list of PLAN_COLUMNS for a contact getting attempt ``attempt_no``."""
    return (
        sa.bindparam("run_id", type_=ATTEMPTS.c.run_id.type),
        CONTACTS.c.campaign_id,
        CONTACTS.c.id,
        CONTACTS.c.phone,
        attempt_no,
        sa.bindparam("state", type_=ATTEMPTS.c.state.type),
        sa.bindparam("due_at", type_=ATTEMPTS.c.due_at.type),
        sa.bindparam("now", type_=ATTEMPTS.c.created_at.type),
        sa.bindparam("now", type_=ATTEMPTS.c.updated_at.type),
    )


_FIRST_ATTEMPT = sa.literal(1, type_=ATTEMPTS.c.attempt_no.type)
#: once per key: the campaign's live contacts that no run has an attempt for (cancelled
#: attempts aside: a key taken off the list and put back was never called), and that have no
#: attempt in this run either: each one's first attempt
PLAN_NEVER_PLANNED = sa.insert(ATTEMPTS).from_select(
    PLAN_COLUMNS,
    sa.select(*_planned(_FIRST_ATTEMPT))
    .where(
        CONTACTS.c.campaign_id == sa.bindparam("campaign_id"),
        CONTACTS.c.removed.is_(False),
        CONTACTS.c.id.not_in(_LIVE_ATTEMPT_CONTACTS),
        CONTACTS.c.id.not_in(_IN_THIS_RUN),
    )
    .order_by(CONTACTS.c.id),
)
#: the same, put back on the list after their attempt in this run was cancelled (rare): the
#: next attempt number in the run, since the cancelled one keeps its number. Run after
#: PLAN_NEVER_PLANNED: the two never plan one contact (this one needs an attempt in the run,
#: that one none), and what that one planned is live, so this one leaves it out.
PLAN_AGAIN = sa.insert(ATTEMPTS).from_select(
    PLAN_COLUMNS,
    sa.select(*_planned(sa.func.max(ATTEMPTS.c.attempt_no) + 1))
    .join_from(CONTACTS, ATTEMPTS, ATTEMPTS.c.contact_id == CONTACTS.c.id)
    .where(
        CONTACTS.c.campaign_id == sa.bindparam("campaign_id"),
        CONTACTS.c.removed.is_(False),
        CONTACTS.c.id.not_in(_LIVE_ATTEMPT_CONTACTS),
        ATTEMPTS.c.run_id == sa.bindparam("run_id"),
    )
    .group_by(CONTACTS.c.campaign_id, CONTACTS.c.id, CONTACTS.c.phone)
    .order_by(CONTACTS.c.id),
)
#: every run: the campaign's live contacts without an attempt in the run
PLAN_EVERY_RUN = sa.insert(ATTEMPTS).from_select(
    PLAN_COLUMNS,
    sa.select(*_planned(_FIRST_ATTEMPT))
    .where(
        CONTACTS.c.campaign_id == sa.bindparam("campaign_id"),
        CONTACTS.c.removed.is_(False),
        CONTACTS.c.id.not_in(
            sa.select(ATTEMPTS.c.contact_id).where(ATTEMPTS.c.run_id == sa.bindparam("run_id"))
        ),
    )
    .order_by(CONTACTS.c.id),
)
OPEN_RUNS = sa.select(RUNS.c.id, RUNS.c.campaign_id).where(RUNS.c.finished_at.is_(None))
RUN_HAS_PENDING = sa.select(
    sa.exists().where(
        ATTEMPTS.c.run_id == sa.bindparam("run_id"),
        state_in(set(AttemptState) - FINAL_STATES),
    )
)
FINISH_RUN = (
    sa.update(RUNS)
    .where(RUNS.c.id == sa.bindparam("run_id"), RUNS.c.finished_at.is_(None))
    .values(finished_at=sa.bindparam("finished_at", type_=RUNS.c.finished_at.type))
)


# ----- what is cancelled: a cancel, and what a newer run supersedes
PLANNED_IN_CAMPAIGN = sa.select(ATTEMPTS.c.id).where(
    ATTEMPTS.c.state == AttemptState.PLANNED.value,
    ATTEMPTS.c.campaign_id == sa.bindparam("campaign_id"),
)
PLANNED_IN_CANCELLED_CAMPAIGNS = sa.select(ATTEMPTS.c.id).where(
    ATTEMPTS.c.state == AttemptState.PLANNED.value,
    ATTEMPTS.c.campaign_id.in_(
        sa.select(CAMPAIGNS.c.id).where(CAMPAIGNS.c.state == CampaignState.CANCELLED.value)
    ),
)
_THIS_RUN = RUNS.alias("this_run")
_NEWER_RUN = RUNS.alias("newer_run")
#: open runs that a later fire's run of their campaign supersedes, in campaigns that call
#: everyone at every fire (once per key, a pending key keeps its attempts across fires): few,
#: whatever the number of attempts (a finished run has nothing planned), so the sweeps below
#: seek by (run, state)
_SUPERSEDED_RUNS = sa.select(_THIS_RUN.c.id).where(
    _THIS_RUN.c.finished_at.is_(None),
    _THIS_RUN.c.campaign_id.in_(sa.select(CAMPAIGNS.c.id).where(CAMPAIGNS.c.repeat == "every_run")),
    sa.exists(
        sa.select(_NEWER_RUN.c.id).where(
            _NEWER_RUN.c.campaign_id == _THIS_RUN.c.campaign_id,
            _NEWER_RUN.c.fire_time > _THIS_RUN.c.fire_time,
        )
    ),
)
PLANNED_IN_SUPERSEDED_RUNS = sa.select(ATTEMPTS.c.id).where(
    ATTEMPTS.c.state == AttemptState.PLANNED.value, ATTEMPTS.c.run_id.in_(_SUPERSEDED_RUNS)
)
PLANNED_IN_SUPERSEDED_RUNS_OF_CAMPAIGN = PLANNED_IN_SUPERSEDED_RUNS.where(
    ATTEMPTS.c.campaign_id == sa.bindparam("campaign_id")
)
ATTEMPT_IN_SUPERSEDED_RUN = sa.select(ATTEMPTS.c.id).where(
    ATTEMPTS.c.id == sa.bindparam("attempt_id"), ATTEMPTS.c.run_id.in_(_SUPERSEDED_RUNS)
)


# ----- reminder keys: each contact with its latest attempt that was not cancelled
_EACH = ATTEMPTS.alias("each_attempt")
_LATEST_ATTEMPT_OF_CONTACT = (
    sa.select(sa.func.max(_EACH.c.id))
    .where(_EACH.c.contact_id == CONTACTS.c.id, _EACH.c.state != AttemptState.CANCELLED.value)
    .correlate(CONTACTS)
    .scalar_subquery()
)
KEY_STATES_PAGE: sa.Select[Any] = (
    sa.select(
        CONTACTS.c.id,
        CONTACTS.c.key,
        CONTACTS.c.phone,
        CONTACTS.c.name,
        CONTACTS.c.source_line,
        CONTACTS.c.removed,
        ATTEMPTS.c.state.label("attempt_state"),
        ATTEMPTS.c.outcome,
        ATTEMPTS.c.attempt_no,
        ATTEMPTS.c.due_at,
        ATTEMPTS.c.reason,
    )
    .select_from(CONTACTS.outerjoin(ATTEMPTS, ATTEMPTS.c.id == _LATEST_ATTEMPT_OF_CONTACT))
    .where(
        CONTACTS.c.campaign_id == sa.bindparam("campaign_id"),
        CONTACTS.c.id > sa.bindparam("after"),
    )
    .order_by(CONTACTS.c.id)
    .limit(sa.bindparam("limit", type_=sa.Integer()))
)
LAST_EVENT_OF_CAMPAIGN = (
    sa.select(EVENTS)
    .where(
        EVENTS.c.campaign_id == sa.bindparam("campaign_id"),
        EVENTS.c.kind.in_(sa.bindparam("kinds", expanding=True)),
    )
    .order_by(EVENTS.c.id.desc())
    .limit(1)
)


# ----- workers
TOUCH_WORKER = (
    sa.update(WORKERS)
    .where(WORKERS.c.id == sa.bindparam("worker_id"))
    .values(heartbeat_at=sa.bindparam("now", type_=WORKERS.c.heartbeat_at.type))
)
INSERT_WORKER = sa.insert(WORKERS)
LIVE_WORKERS = sa.select(WORKERS.c.id).where(
    WORKERS.c.heartbeat_at >= sa.bindparam("since", type_=WORKERS.c.heartbeat_at.type)
)


# ----- the shared request budget
BUDGET_TAT = sa.select(BUDGETS.c.tat).where(BUDGETS.c.key_name == sa.bindparam("key_name"))
#: held to the commit on PostgreSQL: daemons sharing the key take its slots one at a time
BUDGET_TAT_LOCKED = BUDGET_TAT.with_for_update()
SET_BUDGET_TAT = (
    sa.update(BUDGETS)
    .where(BUDGETS.c.key_name == sa.bindparam("budget_key"))
    .values(tat=sa.bindparam("tat", type_=BUDGETS.c.tat.type))
)
INSERT_BUDGET = sa.insert(BUDGETS)
#: a compare-and-set of a campaign's pace row: moves it only if no other grant moved it since
MOVE_BUDGET_TAT = (
    sa.update(BUDGETS)
    .where(
        BUDGETS.c.key_name == sa.bindparam("budget_key"),
        BUDGETS.c.tat == sa.bindparam("expected", type_=BUDGETS.c.tat.type),
    )
    .values(tat=sa.bindparam("tat", type_=BUDGETS.c.tat.type))
)


@cache
def insert_budget_unless_there(dialect: str) -> sa.Insert:
    """INSERT of a key's budget row, returning its key, or no row when another daemon created
    it first (ON CONFLICT DO NOTHING: on PostgreSQL an error would abort the transaction)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(BUDGETS).on_conflict_do_nothing().returning(BUDGETS.c.key_name)


@cache
def add_request_counts(dialect: str) -> sa.Insert:
    """A daemon's requests of one key in one minute, added to what that minute holds (a
    daemon that writes a minute twice, at a stop and again after a restart, adds up)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(REQUEST_COUNTS)
    return statement.on_conflict_do_update(
        index_elements=["minute", "key_name", "worker_id"],
        set_={
            "requests": REQUEST_COUNTS.c.requests + statement.excluded.requests,
            "rate_limited": REQUEST_COUNTS.c.rate_limited + statement.excluded.rate_limited,
        },
    )


#: request counts of minutes before ``before`` (a range of the primary key's first column)
FORGET_REQUEST_COUNTS = sa.delete(REQUEST_COUNTS).where(
    REQUEST_COUNTS.c.minute < sa.bindparam("before", type_=REQUEST_COUNTS.c.minute.type)
)
#: every daemon's requests per key and minute since ``since``
REQUEST_COUNTS_SINCE = (
    sa.select(
        REQUEST_COUNTS.c.key_name,
        REQUEST_COUNTS.c.minute,
        sa.func.sum(REQUEST_COUNTS.c.requests).label("requests"),
        sa.func.sum(REQUEST_COUNTS.c.rate_limited).label("rate_limited"),
    )
    .where(REQUEST_COUNTS.c.minute >= sa.bindparam("since", type_=REQUEST_COUNTS.c.minute.type))
    .group_by(REQUEST_COUNTS.c.key_name, REQUEST_COUNTS.c.minute)
    .order_by(REQUEST_COUNTS.c.key_name, REQUEST_COUNTS.c.minute)
)


# ----- reports


@cache
def state_counts(*, with_campaign: bool) -> sa.Select[str, str | None, int]:
    """Attempts per (state, outcome), of one campaign (``campaign_id``) or of all."""
    query = sa.select(ATTEMPTS.c.state, ATTEMPTS.c.outcome, sa.func.count()).group_by(
        ATTEMPTS.c.state, ATTEMPTS.c.outcome
    )
    if with_campaign:
        query = query.where(ATTEMPTS.c.campaign_id == sa.bindparam("campaign_id"))
    return query


#: the campaign's attempts counted up to ``limit`` and no further: a bounded read of its index
#: whatever the campaign's size (a min and a max in one query made SQLite read it all)
ATTEMPTS_UP_TO = sa.select(sa.func.count()).select_from(
    sa.select(sa.literal(1))
    .where(ATTEMPTS.c.campaign_id == sa.bindparam("campaign_id"))
    .limit(sa.bindparam("limit"))
    .subquery()
)
#: the newest attempt of each contact of the campaign, by contact
LATEST_VIEWS = ATTEMPT_VIEWS.where(
    ATTEMPTS.c.id.in_(
        sa.select(sa.func.max(ATTEMPTS.c.id))
        .where(ATTEMPTS.c.campaign_id == sa.bindparam("campaign_id"))
        .group_by(ATTEMPTS.c.contact_id)
    )
).order_by(ATTEMPTS.c.contact_id)
#: every campaign's contacts by the (state, outcome) of their newest attempt, as counts (a
#: campaign without attempts yet is one row of NULLs): the progress display's one read
LATEST_STATE_COUNTS = (
    sa.select(CAMPAIGNS.c.name, ATTEMPTS.c.state, ATTEMPTS.c.outcome, sa.func.count(ATTEMPTS.c.id))
    .select_from(CAMPAIGNS)
    .outerjoin(
        ATTEMPTS,
        sa.and_(
            ATTEMPTS.c.campaign_id == CAMPAIGNS.c.id,
            # a contact belongs to one campaign: its newest attempt is the largest id
            ATTEMPTS.c.id.in_(
                sa.select(sa.func.max(ATTEMPTS.c.id)).group_by(ATTEMPTS.c.contact_id)
            ),
        ),
    )
    .group_by(CAMPAIGNS.c.name, ATTEMPTS.c.state, ATTEMPTS.c.outcome)
    .order_by(CAMPAIGNS.c.name)
)

# ----- metrics, read when a scrape asks (never on a timer)
#: calls that may exist now, by campaign name, every campaign (zero included)
SCRAPE_IN_FLIGHT = (
    sa.select(CAMPAIGNS.c.name, sa.func.count(ATTEMPTS.c.id))
    .select_from(CAMPAIGNS)
    .outerjoin(ATTEMPTS, sa.and_(ATTEMPTS.c.campaign_id == CAMPAIGNS.c.id, state_in(LIVE_STATES)))
    .group_by(CAMPAIGNS.c.name)
)
#: planned attempts of active campaigns that are due (a count on the index DUE_VIEWS seeks)
SCRAPE_DUE = (
    sa.select(sa.func.count())
    .select_from(ATTEMPTS)
    .join(CAMPAIGNS, CAMPAIGNS.c.id == ATTEMPTS.c.campaign_id)
    .where(
        *_PLANNED_AND_ACTIVE,
        ATTEMPTS.c.due_at <= sa.bindparam("now", type_=ATTEMPTS.c.due_at.type),
    )
)
#: attempts that reached an outcome, by outcome
SCRAPE_FINISHED = (
    sa.select(ATTEMPTS.c.outcome, sa.func.count())
    .where(ATTEMPTS.c.outcome.is_not(None), sa.not_(state_in(LIVE_STATES)))
    .group_by(ATTEMPTS.c.outcome)
)
#: a page of the campaign's audit trail: the ``batch`` events after id ``after``
EVENTS_PAGE = (
    sa.select(EVENTS)
    .where(
        EVENTS.c.campaign_id == sa.bindparam("campaign_id"),
        EVENTS.c.id > sa.bindparam("after", type_=sa.Integer()),
    )
    .order_by(EVENTS.c.id)
    .limit(sa.bindparam("batch", type_=sa.Integer()))
)
#: a page of the campaign's attempts, each with its contact's columns as ``contact__*``
#: (``contact_id`` is an attempt's column)
ATTEMPTS_WITH_CONTACTS_PAGE = (
    sa.select(ATTEMPTS, *(column.label(f"contact__{column.name}") for column in CONTACTS.c))
    .join_from(ATTEMPTS, CONTACTS, CONTACTS.c.id == ATTEMPTS.c.contact_id)
    .where(
        ATTEMPTS.c.campaign_id == sa.bindparam("campaign_id"),
        ATTEMPTS.c.id > sa.bindparam("after", type_=sa.Integer()),
    )
    .order_by(ATTEMPTS.c.id)
    .limit(sa.bindparam("batch", type_=sa.Integer()))
)


# ----- the status page (dialer.store.browse): each read a seek or a bounded range
#: the campaign's newest run (the one its progress bar follows)
NEWEST_RUN_OF_CAMPAIGN = (
    sa.select(RUNS.c.id, RUNS.c.fire_time)
    .where(RUNS.c.campaign_id == sa.bindparam("campaign_id"))
    .order_by(RUNS.c.fire_time.desc(), RUNS.c.id.desc())
    .limit(1)
)
#: the run's contacts: each has one first attempt in it (a range of its unique index)
CONTACTS_IN_RUN = sa.select(sa.func.count()).where(
    ATTEMPTS.c.run_id == sa.bindparam("run_id"), ATTEMPTS.c.attempt_no == 1
)
#: the run's attempts still to become final, by state (a contact has one at most in a run)
UNSETTLED_IN_RUN = (
    sa.select(ATTEMPTS.c.state, sa.func.count())
    .where(ATTEMPTS.c.run_id == sa.bindparam("run_id"), state_in(set(AttemptState) - FINAL_STATES))
    .group_by(ATTEMPTS.c.state)
)
#: the campaign's first planned attempt's due time (one seek of ix_attempts_campaign_due)
NEXT_DUE_OF_CAMPAIGN = sa.select(
    sa.func.min(ATTEMPTS.c.due_at, type_=ATTEMPTS.c.due_at.type)
).where(
    ATTEMPTS.c.campaign_id == sa.bindparam("campaign_id"),
    ATTEMPTS.c.state == AttemptState.PLANNED.value,
)
#: attempts per (state, reason) of the campaign in the given states
REASON_COUNTS = (
    sa.select(ATTEMPTS.c.state, ATTEMPTS.c.reason, sa.func.count())
    .where(
        ATTEMPTS.c.campaign_id == sa.bindparam("campaign_id"),
        ATTEMPTS.c.state.in_(sa.bindparam("states", expanding=True)),
    )
    .group_by(ATTEMPTS.c.state, ATTEMPTS.c.reason)
)
_LATER = ATTEMPTS.alias("later")
#: the contact has an attempt newer than this one (a retry, or a later run's)
_SUPERSEDED_BY_LATER = sa.exists(
    sa.select(_LATER.c.id).where(
        _LATER.c.contact_id == ATTEMPTS.c.contact_id, _LATER.c.id > ATTEMPTS.c.id
    )
)


@cache
def newest_in_groups(
    nulls: tuple[bool, ...],
    *,
    column: str,
    keyset: bool,
    latest_only: bool,
    nulls_are_all: tuple[bool, ...] = (),
) -> sa.Select[int]:
    """Ids of the campaign's newest attempts in any of the groups (``state_<i>``,
    ``value_<i>``) of ``(state, column)``, newest first: one seek of the index on
    (campaign_id, state, ``column``, id) per group, each taking ``limit`` at most, so a page
    costs the same in a million attempts as in ten. ``nulls[i]``: group i's value is NULL.

    Parameters: ``campaign_id``, ``limit``, ``before`` (ids below it) when ``keyset``.
    ``latest_only``: only attempts that are their contact's newest (nothing was planned
    after them). ``nulls_are_all[i]``: group i's state never has an outcome (planned,
    skipped…), so its NULL outcome need not be checked (the page stays in one index)."""
    nulls_are_all = nulls_are_all or (False,) * len(nulls)
    value_column = ATTEMPTS.c[column]
    parts: list[sa.Select[int]] = []
    for i, null in enumerate(nulls):
        part = sa.select(ATTEMPTS.c.id).where(
            ATTEMPTS.c.campaign_id == sa.bindparam("campaign_id"),
            ATTEMPTS.c.state == sa.bindparam(f"state_{i}"),
        )
        if not null:  # a seek of ix_attempts_campaign_<column>, in id order
            part = part.where(value_column == sa.bindparam(f"value_{i}"))
        elif column != "outcome" or not nulls_are_all[i]:
            # ix_attempts_campaign_state in id order; the value checked on the way
            part = part.where(value_column.is_(None))
        if keyset:
            part = part.where(ATTEMPTS.c.id < sa.bindparam("before", type_=sa.Integer()))
        if latest_only:
            part = part.where(~_SUPERSEDED_BY_LATER)
        limited = (
            part.order_by(ATTEMPTS.c.id.desc())
            .limit(sa.bindparam("limit", type_=sa.Integer()))
            .subquery(f"group_{i}")
        )
        parts.append(sa.select(limited.c.id))
    merged = sa.union_all(*parts).subquery("groups")
    return (
        sa.select(merged.c.id)
        .order_by(merged.c.id.desc())
        .limit(sa.bindparam("limit", type_=sa.Integer()))
    )


@cache
def attempts_matching(*, by_phone: bool, by_text: bool) -> sa.Select[int]:
    """Ids of the campaign's attempts whose contact matches, newest first, at most ``limit``.

    ``by_phone``: the number is ``phone`` (an index seek). ``by_text``: the contact's name
    contains ``name_like`` or the number ``phone_like`` (LIKE patterns), looked for only among
    the ids from ``floor`` up to ``before``: a search reads one window of ids per page, never
    the whole campaign."""
    if by_phone:
        # "+ 0": SQLite, which keeps no statistics here, would otherwise walk the campaign's
        # index in id order (no sort) rather than seek the number's few attempts
        return (
            sa.select(ATTEMPTS.c.id)
            .where(
                ATTEMPTS.c.phone == sa.bindparam("phone"),
                (ATTEMPTS.c.campaign_id + 0) == sa.bindparam("campaign_id"),
                (ATTEMPTS.c.id + 0) < sa.bindparam("before", type_=sa.Integer()),
            )
            .order_by(ATTEMPTS.c.id.desc())
            .limit(sa.bindparam("limit", type_=sa.Integer()))
        )
    # Each name looked up from its attempt (a scalar subquery, not a join): PostgreSQL would
    # otherwise read every contact's name, a name filter looking rare to it, whatever the window.
    name = (
        sa.select(CONTACTS.c.name)
        .where(CONTACTS.c.id == ATTEMPTS.c.contact_id)
        .correlate(ATTEMPTS)
        .scalar_subquery()
    )
    return (
        sa.select(ATTEMPTS.c.id)
        .where(
            ATTEMPTS.c.campaign_id == sa.bindparam("campaign_id"),
            ATTEMPTS.c.id < sa.bindparam("before", type_=sa.Integer()),
            ATTEMPTS.c.id >= sa.bindparam("floor", type_=sa.Integer()),
            sa.or_(
                name.ilike(sa.bindparam("name_like"), escape="\\"),
                ATTEMPTS.c.phone.like(sa.bindparam("phone_like"), escape="\\"),
            ),
        )
        .order_by(ATTEMPTS.c.id.desc())
        .limit(sa.bindparam("limit", type_=sa.Integer()))
    )


@cache
def calls_per_hour(dialect: str) -> sa.Select[Any, int]:
    """The campaign's dials per hour from ``since`` to ``until``, read from
    ix_attempts_campaign_dialing alone; the hour (UTC) as a naive timestamp (PostgreSQL) or
    as text, "YYYY-MM-DD HH" (SQLite)."""
    if dialect == "postgresql":
        hour: sa.ColumnElement[Any] = sa.func.date_trunc(
            "hour", sa.func.timezone("UTC", ATTEMPTS.c.dialing_at)
        )
    else:  # SQLite keeps UTC text: its first 13 characters are the hour (no date parsing)
        hour = sa.func.substr(ATTEMPTS.c.dialing_at, 1, 13)
    return (
        sa.select(hour.label("hour"), sa.func.count().label("calls"))
        .where(
            ATTEMPTS.c.campaign_id == sa.bindparam("campaign_id"),
            ATTEMPTS.c.dialing_at >= sa.bindparam("since", type_=ATTEMPTS.c.dialing_at.type),
            ATTEMPTS.c.dialing_at < sa.bindparam("until", type_=ATTEMPTS.c.dialing_at.type),
        )
        .group_by(hour)
    )


#: the campaign's latest dial (one seek of ix_attempts_campaign_dialing)
LAST_DIALLED_OF_CAMPAIGN = sa.select(
    sa.func.max(ATTEMPTS.c.dialing_at, type_=ATTEMPTS.c.dialing_at.type)
).where(ATTEMPTS.c.campaign_id == sa.bindparam("campaign_id"))
#: daemons whose last heartbeat is ``since`` or later, the latest first
WORKERS_SEEN_SINCE = (
    sa.select(WORKERS)
    .where(WORKERS.c.heartbeat_at >= sa.bindparam("since", type_=WORKERS.c.heartbeat_at.type))
    .order_by(WORKERS.c.heartbeat_at.desc(), WORKERS.c.id)
)
