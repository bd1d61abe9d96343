"""``Store``: all database access of the dialer, and every state transition of an attempt.

SQLite (WAL) by default, PostgreSQL when several daemons share the work; the same code runs on
both. The attempt state machine (dialer.attempts) is enforced here, in ``_transition``: each
transition is one compare-and-set UPDATE (``WHERE id = ? AND state IN (...)``) plus its event,
committed together. The compare-and-set is also what makes a claim safe between daemons: two
processes may select the same planned attempt, only one UPDATE matches.

The store is synchronous on purpose: every statement is a short indexed read or write, and
SQLAlchemy's sync engine is the well-trodden path on both backends. The engine calls it from the
event loop; a slow database shows up as loop latency, which the metrics make visible.

Every method runs prebuilt Core statements (dialer.store.statements) in one short transaction
and hands out frozen records (dialer.store.records), never table rows.

Errors leave as dialer.errors' StoreError; a database that is away for a while (unreachable,
locked, full) as its StoreUnavailable kinds (dialer.store.failures), on which the engine holds
and tries again. A transaction either commits or raises: only a connection lost during the
COMMIT leaves it unknown which (``StoreUnavailable.commit_unknown``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session, SQLModel

from dialer.attempts import AttemptState, can_transition, sources_of
from dialer.errors import StateChangeRefused, StoreError, TransitionRefused
from dialer.policy.pacing import Pace, Slot
from dialer.store import browse, budget, failures, importer
from dialer.store import statements as sql
from dialer.store.browse import Group, Search
from dialer.store.database import LOCK_WAIT_S, make_engine
from dialer.store.events import append_event
from dialer.store.records import (
    AttemptRecord,
    AttemptView,
    CallResult,
    CampaignRecord,
    CampaignState,
    ContactRecord,
    EventRecord,
    FollowedCall,
    KeyRecord,
    LatestCounts,
    RequestCount,
    Retry,
    RunProgress,
    RunRecord,
    ScrapeCounts,
    StateChange,
    StoredContact,
    WorkerRecord,
)
from dialer.store.tables import jsonable

T = TypeVar("T")

#: the longest reason an attempt keeps (see ``Store._transition``)
REASON_MAX_CHARS = 500


class _Commit:
    """Whether a transaction reached its COMMIT (see ``Store._connection``)."""

    started = False


class Store:
    """All database access. Open with ``with Store(url) as store:``.

    ``lock_wait_s``: how long a statement waits for SQLite's write lock held by another
    process before it fails with DatabaseBusy (dialer.store.database)."""

    def __init__(self, url: str, *, echo: bool = False, lock_wait_s: float = LOCK_WAIT_S) -> None:
        self.url = url
        self._engine: Engine = make_engine(url, echo=echo, lock_wait_s=lock_wait_s)

    # ----- lifecycle
    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._engine.dispose()

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    def create_schema(self) -> None:
        """Bring the schema to this code's revision (Alembic migrations; idempotent)."""
        from dialer import migrate

        with self._wrap():
            migrate.upgrade(self._engine)

    def open_schema(self) -> None:
        """What a daemon does at start: create the schema in an empty database, otherwise
        refuse (SchemaMismatch) unless it is exactly this code's revision — upgrading a
        shared database is a deliberate act (`dialer db upgrade`), not a side effect."""
        from dialer import migrate

        with self._wrap():
            if migrate.current_revision(self._engine) is None and not sa.inspect(
                self._engine
            ).has_table("attempts"):
                migrate.upgrade(self._engine)
            migrate.check(self._engine)

    def check_schema(self) -> None:
        """Raise SchemaMismatch unless the schema is exactly the revision this code expects."""
        from dialer import migrate

        with self._wrap():
            migrate.check(self._engine)

    def drop_schema(self) -> None:
        with self._wrap():
            SQLModel.metadata.drop_all(self._engine)
            with self._engine.begin() as connection:
                connection.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))

    @contextmanager
    def _wrap(self, commit: _Commit | None = None) -> Iterator[None]:
        """SQLAlchemy's errors become ours here and nowhere else (dialer.store.failures)."""
        try:
            yield
        except StoreError:
            raise
        except SQLAlchemyError as exc:
            raise failures.translate(exc, committing=commit is not None and commit.started) from exc

    @contextmanager
    def _connection(self) -> Iterator[sa.Connection]:
        """One Core transaction, in which every method runs its prebuilt statements.

        Core, not an ORM Session, for every kind of work: a Session costs more CPU to open and
        commit than the one or two statements most of these transactions run, and the records
        the store hands out are built from result rows (``from_row``), not from ORM objects.
        """
        commit = _Commit()
        with self._wrap(commit), self._engine.connect() as connection, connection.begin():
            yield connection
            commit.started = True  # what fails from here on may have committed

    @contextmanager
    def session(self) -> Iterator[Session]:
        """An ORM session on the store's database, committed at the end: for tests and
        one-off inspection (``session.exec(select(AttemptRow))``). The store's own methods
        never use one (see ``_connection``)."""
        with self._wrap(), Session(self._engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    # ----- events
    def add_event(
        self,
        *,
        at: datetime,
        kind: str,
        campaign_id: int | None = None,
        attempt_id: int | None = None,
        **data: Any,
    ) -> None:
        with self._connection() as connection:
            append_event(
                connection, at=at, kind=kind, campaign_id=campaign_id, attempt_id=attempt_id, **data
            )

    def events(
        self, *, attempt_id: int | None = None, kind: str | None = None
    ) -> list[EventRecord]:
        query = sql.events(of_attempt=attempt_id is not None, of_kind=kind is not None)
        with self._connection() as connection:
            rows = connection.execute(query, {"attempt_id": attempt_id, "kind": kind})
            return [EventRecord.from_row(row) for row in rows]

    # ----- campaigns and contacts
    def sync_campaign(
        self,
        *,
        name: str,
        source: str,
        definition_hash: str,
        api_key_name: str,
        contacts: Iterable[ContactRecord],
        now: datetime,
        repeat: str = "once",
        done_when: Sequence[str] = ("completed",),
        plan_new: bool = True,
    ) -> int:
        """Insert or update a campaign and its contacts in ONE transaction (nothing half-imported).

        Contacts are keyed on (campaign, reminder key): a re-import keeps their history. A key
        gone from the file has its planned attempts cancelled, each with its event (reason
        ``removed``, or ``rescheduled`` when its contact is still listed under another
        appointment); calls already placed are followed to their end. With ``plan_new``, keys
        new to a campaign that has fired join its latest run (re-opened if it had finished):
        they are called from the next dispatch pass, not the next fire.
        """
        with self._connection() as connection:
            synced = importer.sync_campaign(
                connection,
                name=name,
                source=source,
                definition_hash=definition_hash,
                api_key_name=api_key_name,
                repeat=repeat,
                done_when=done_when,
                contacts=contacts,
                now=now,
                lock=self.dialect == "postgresql",
            )
            if not synced.changed:
                return synced.campaign_id
            for reason, contact_ids in synced.gone.items():
                for start in range(0, len(contact_ids), 500):
                    planned = connection.execute(
                        sql.PLANNED_OF_CONTACTS, {"ids": contact_ids[start : start + 500]}
                    ).scalars()
                    self._cancel_each(connection, list(planned), now=now, reason=reason)
            latest = connection.execute(
                sql.LATEST_RUN_OF_CAMPAIGN, {"campaign_id": synced.campaign_id}
            ).first()
            if plan_new and latest is not None:
                planned_new = self._plan_missing(
                    connection,
                    run_id=latest.id,
                    campaign_id=synced.campaign_id,
                    fire_time=latest.fire_time,
                    now=now,
                    once=repeat == "once",
                )
                if planned_new and latest.finished_at is not None:
                    connection.execute(sql.REOPEN_RUN, {"run_id": latest.id})
                    append_event(
                        connection,
                        at=now,
                        kind="run.reopened",
                        campaign_id=synced.campaign_id,
                        run_id=latest.id,
                        planned=planned_new,
                    )
            return synced.campaign_id

    def campaign(self, name: str) -> CampaignRecord | None:
        with self._connection() as connection:
            row = connection.execute(sql.CAMPAIGN_BY_NAME, {"name": name}).first()
            return None if row is None else CampaignRecord.from_row(row)

    def campaigns(self) -> list[CampaignRecord]:
        with self._connection() as connection:
            return [
                CampaignRecord.from_row(row) for row in connection.execute(sql.CAMPAIGNS_BY_NAME)
            ]

    def change_campaign_state(
        self, name: str, state: CampaignState, *, now: datetime
    ) -> StateChange | None:
        """Set the campaign's state and, for a cancel, cancel what it had still to dial, in ONE
        transaction: a cancel that fails midway leaves the campaign as it was. None when no
        campaign has that name; StateChangeRefused for a cancelled campaign, unless the change
        is a cancel again (which sweeps what became planned since).

        Calls already placed keep being followed; only what was never dialled is cancelled.
        """
        locked = self.dialect == "postgresql"
        query = sql.CAMPAIGN_STATE_BY_NAME_LOCKED if locked else sql.CAMPAIGN_STATE_BY_NAME
        with self._connection() as connection:
            row = connection.execute(query, {"name": name}).first()
            if row is None:
                return None
            campaign_id, previous = row.id, CampaignState(row.state)
            if previous is CampaignState.CANCELLED and state is not CampaignState.CANCELLED:
                raise StateChangeRefused(f"campaign {name!r} is cancelled; that is final")
            connection.execute(
                sql.SET_CAMPAIGN_STATE,
                {"campaign_id": campaign_id, "state": state.value, "updated_at": now},
            )
            append_event(
                connection, at=now, kind=f"campaign.{state.value}", campaign_id=campaign_id
            )
            cancelled = 0
            if state is CampaignState.CANCELLED:
                planned = connection.execute(sql.PLANNED_IN_CAMPAIGN, {"campaign_id": campaign_id})
                cancelled = self._cancel_each(
                    connection, planned.scalars().all(), now=now, reason="campaign_cancelled"
                )
            return StateChange(previous=previous, state=state, cancelled=cancelled)

    def hold_campaign(
        self,
        campaign_id: int,
        *,
        reason: str,
        phone: str | None,
        line: int | None,
        now: datetime,
        attempt_ids: Sequence[int] = (),
    ) -> bool:
        """Hold an active campaign until a person releases it (`dialer resume`, an edited file):
        no daemon dials it meanwhile (only active campaigns' attempts are due). ``attempt_ids``,
        the attempts sent back to planned by the refusals that led to it, are due at once
        when it is released. False when it was not active (already held, paused, cancelled)."""
        with self._connection() as connection:
            held = connection.execute(
                sql.HOLD_CAMPAIGN,
                {
                    "campaign_id": campaign_id,
                    "now": now,
                    "reason": reason[:2000],
                    "phone": phone,
                    "line": line,
                },
            ).rowcount
            if not held:
                return False
            if attempt_ids:
                connection.execute(sql.BRING_FORWARD, {"ids": list(attempt_ids), "now": now})
            append_event(
                connection,
                at=now,
                kind="campaign.held",
                campaign_id=campaign_id,
                reason=reason[:500],
                phone=phone,
                line=line,
                attempts=list(attempt_ids),
            )
            return True

    def contacts(self, campaign_id: int) -> list[StoredContact]:
        with self._connection() as connection:
            rows = connection.execute(sql.CONTACTS_OF_CAMPAIGN, {"campaign_id": campaign_id})
            return [StoredContact.from_row(row) for row in rows]

    # ----- runs
    def create_run(self, campaign_id: int, *, fire_time: datetime, now: datetime) -> int | None:
        """Create the run for one schedule fire and plan what it calls.

        Keyed on (campaign, fire time): firing twice (a restart, a second daemon) creates nothing.
        Returns the new run's id, or None when that fire already has its run.

        Once per key (the default): the run plans the keys no earlier run ever planned; a key
        still pending keeps its attempt, its count and its timing, and a key that is done or
        whose attempts ran out is never called again.

        Every run: one first attempt per contact, and the attempts of the campaign's earlier
        runs still waiting to be dialled are cancelled (reason ``superseded``): the new run
        calls each contact once. Otherwise a daily round paused for a week would call everyone
        seven times on resume, and a contact deferred past the next fire would be called twice.
        """
        try:
            with self._connection() as connection:
                run_id: int = connection.execute(
                    sql.INSERT_RUN,
                    {"campaign_id": campaign_id, "fire_time": fire_time, "created_at": now},
                ).scalar_one()
                repeat = connection.execute(
                    sql.CAMPAIGN_REPEAT, {"campaign_id": campaign_id}
                ).scalar_one()
                planned = self._plan_missing(
                    connection,
                    run_id=run_id,
                    campaign_id=campaign_id,
                    fire_time=fire_time,
                    now=now,
                    once=repeat == "once",
                )
                # by fire time: a run created late for an earlier fire supersedes nothing
                # newer, and its own attempts are the ones cancelled
                stale = connection.execute(
                    sql.PLANNED_IN_SUPERSEDED_RUNS_OF_CAMPAIGN, {"campaign_id": campaign_id}
                ).scalars()
                self._cancel_each(
                    connection, list(stale), now=now, reason="superseded", by_run=run_id
                )
                append_event(
                    connection,
                    at=now,
                    kind="run.created",
                    campaign_id=campaign_id,
                    run_id=run_id,
                    fire_time=fire_time.isoformat(),
                    planned=planned,
                )
                return run_id
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                return None
            raise

    @staticmethod
    def _plan_missing(
        connection: sa.Connection,
        *,
        run_id: int,
        campaign_id: int,
        fire_time: datetime,
        now: datetime,
        once: bool,
    ) -> int:
        """Plan a first attempt for every live contact of the run's campaign that has none:
        ``once``, none in any run; otherwise none in this run."""
        params = {
            "run_id": run_id,
            "campaign_id": campaign_id,
            "state": AttemptState.PLANNED.value,
            "due_at": max(fire_time, now),
            "now": now,
        }
        planned: int = connection.execute(
            sql.PLAN_NEVER_PLANNED if once else sql.PLAN_EVERY_RUN, params
        ).rowcount
        if once:
            planned += connection.execute(sql.PLAN_AGAIN, params).rowcount
        return planned

    def runs(self, campaign_id: int) -> list[RunRecord]:
        with self._connection() as connection:
            rows = connection.execute(sql.RUNS_OF_CAMPAIGN, {"campaign_id": campaign_id})
            return [RunRecord.from_row(row) for row in rows]

    def finish_runs(self, *, now: datetime) -> list[int]:
        """Mark every open run whose attempts are all final as finished; return their ids."""
        finished: list[int] = []
        with self._connection() as connection:
            for run_id, campaign_id in connection.execute(sql.OPEN_RUNS).all():
                if connection.execute(sql.RUN_HAS_PENDING, {"run_id": run_id}).scalar():
                    continue
                closed = connection.execute(
                    sql.FINISH_RUN, {"run_id": run_id, "finished_at": now}
                ).rowcount
                if closed:  # not finished by another daemon in between: one event per run
                    append_event(
                        connection,
                        at=now,
                        kind="run.finished",
                        campaign_id=campaign_id,
                        run_id=run_id,
                    )
                    finished.append(run_id)
        return finished

    # ----- attempts: reads
    @staticmethod
    def _views(
        connection: sa.Connection, query: Any, params: Mapping[str, Any] | None = None
    ) -> list[AttemptView]:
        """Run a query built on ``sql.ATTEMPT_VIEWS``: one AttemptView per row."""
        return [AttemptView.from_row(row) for row in connection.execute(query, params)]

    def attempt(self, attempt_id: int) -> AttemptView:
        with self._connection() as connection:
            views = self._views(connection, sql.VIEW_BY_ID, {"attempt_id": attempt_id})
            if not views:
                raise StoreError(f"no attempt {attempt_id}")
            return views[0]

    def attempt_by_call_id(self, call_id: str) -> AttemptView | None:
        with self._connection() as connection:
            views = self._views(connection, sql.VIEW_BY_CALL_ID, {"call_id": call_id})
            return views[0] if views else None

    def attempts(
        self, *, campaign_id: int | None = None, states: Iterable[AttemptState] | None = None
    ) -> list[AttemptView]:
        with self._connection() as connection:
            query = sql.attempt_views(
                with_campaign=campaign_id is not None,
                states=None if states is None else frozenset(states),
            )
            return self._views(connection, query, {"campaign_id": campaign_id})

    def followed_calls(self) -> list[FollowedCall]:
        """Every attempt in flight with a call id, as little of it as a list needs."""
        with self._connection() as connection:
            return [FollowedCall(*row) for row in connection.execute(sql.FOLLOWED)]

    def attempts_by_ids(self, ids: Iterable[int]) -> list[AttemptView]:
        """These attempts (those that exist), by id."""
        wanted = list(ids)
        if not wanted:
            return []
        with self._connection() as connection:
            return self._views(connection, sql.VIEWS_BY_IDS, {"ids": wanted})

    def dialing_since(self, cutoff: datetime) -> list[AttemptView]:
        """Attempts in `dialing` since ``cutoff`` or earlier: what reconciliation looks at."""
        with self._connection() as connection:
            return self._views(connection, sql.DIALING_SINCE, {"cutoff": cutoff})

    def due_attempts(self, *, now: datetime, limit: int) -> list[AttemptView]:
        """Planned attempts whose time has come, oldest first, of campaigns that are active."""
        with self._connection() as connection:
            return self._views(connection, sql.DUE_VIEWS, {"now": now, "limit": limit})

    def due_attempts_of(self, campaign_id: int, *, now: datetime, limit: int) -> list[AttemptView]:
        """The campaign's planned attempts whose time has come, oldest first, if it is active."""
        with self._connection() as connection:
            return self._views(
                connection,
                sql.DUE_VIEWS_OF_CAMPAIGN,
                {"campaign_id": campaign_id, "now": now, "limit": limit},
            )

    def next_due_at(self) -> datetime | None:
        with self._connection() as connection:
            return connection.execute(sql.NEXT_DUE_AT).scalar()

    def live_counts(self) -> dict[int, int]:
        """Calls that may exist right now (dialing or in flight), per campaign id."""
        with self._connection() as connection:
            return {cid: n for cid, n in connection.execute(sql.LIVE_COUNTS_BY_CAMPAIGN).all()}

    def in_flight_attempt(
        self, *, call_id: str | None, attempt_id: int | None = None
    ) -> tuple[int, int] | None:
        """(attempt id, campaign id) of the attempt in flight with this call id, else of this
        attempt id if it is in flight; None if neither is (a read of two columns, not a view)."""
        with self._connection() as connection:
            row = None
            if call_id is not None:
                row = connection.execute(sql.IN_FLIGHT_BY_CALL_ID, {"call_id": call_id}).first()
            if row is None and attempt_id is not None:
                row = connection.execute(sql.IN_FLIGHT_BY_ID, {"attempt_id": attempt_id}).first()
        return None if row is None else (row[0], row[1])

    def live_among(self, ids: Collection[int]) -> dict[int, int]:
        """Those of these attempts still counted live (dialing or in flight): id -> campaign id."""
        if not ids:
            return {}
        with self._connection() as connection:
            rows = connection.execute(sql.LIVE_AMONG, {"ids": list(ids)}).all()
        return {attempt_id: campaign_id for attempt_id, campaign_id in rows}

    def claim_polls(
        self,
        *,
        now: datetime,
        limit: int,
        lease: timedelta,
        stragglers: Collection[int] | None = None,
    ) -> list[AttemptView]:
        """Take the calls whose next look is due, pushing that look ``lease`` ahead.

        With several daemons each due call is looked at by one of them: PostgreSQL skips rows
        another daemon is claiming (SKIP LOCKED), and the pushed-ahead time hides the claim until
        the claimer writes the real next look, or dies and the lease runs out.
        ``stragglers`` (while a list observes every call in flight): take only `unknown` calls
        and these attempts, so the listed calls keep their own next look.
        """
        with self._connection() as connection:
            ids = list(
                connection.execute(
                    sql.calls_due_a_look(
                        stragglers=stragglers is not None,
                        skip_locked=self.dialect == "postgresql",
                    ),
                    {"now": now, "limit": limit, "ids": list(stragglers or ())},
                ).scalars()
            )
            if not ids:
                return []
            connection.execute(sql.PUSH_POLLS, {"ids": ids, "until": now + lease})
            return self._views(connection, sql.VIEWS_BY_IDS, {"ids": ids})

    # ----- the shared request budget
    def take_request_slot(
        self, key_name: str, *, now: datetime, interval: timedelta, burst: int
    ) -> timedelta:
        """Ask for one request of ``key_name``'s budget; zero means granted, else wait that long
        (dialer.store.budget)."""
        with self._connection() as connection:
            return budget.take_request_slot(
                connection, key_name, now=now, interval=interval, burst=burst
            )

    def hold_request_slots(
        self, key_name: str, *, until: datetime, interval: timedelta, burst: int
    ) -> None:
        """No slot of ``key_name`` before ``until`` for any daemon (dialer.store.budget)."""
        with self._connection() as connection:
            budget.hold_request_slots(
                connection, key_name, until=until, interval=interval, burst=burst
            )

    def take_pace_slot(self, campaign: str, *, now: datetime, pace: Pace) -> Slot:
        """The next create slot of ``campaign``'s pace, shared by every daemon: granted, or
        refused with how long to wait (dialer.store.budget)."""
        with self._connection() as connection:
            return budget.take_pace_slot(connection, campaign, now=now, pace=pace)

    def move_pace_slot(self, campaign: str, *, expected: datetime, to: datetime) -> bool:
        """Move ``campaign``'s pace row from ``expected`` to ``to`` unless another grant came
        since (dialer.store.budget)."""
        with self._connection() as connection:
            return budget.move_pace_slot(connection, campaign, expected=expected, to=to)

    # ----- workers
    def database_now(self) -> datetime | None:
        """The database server's clock, where several daemons share it (PostgreSQL); None on
        SQLite, which one daemon uses alone. Daemons compare each other's timestamps (heartbeats,
        dial times, the budget row), so each checks its own clock against this one."""
        if self.dialect != "postgresql":
            return None
        with self._connection() as connection:
            return _aware(connection.execute(sa.select(sa.func.clock_timestamp())).scalar_one())

    def heartbeat(self, worker_id: str, *, now: datetime) -> None:
        with self._connection() as connection:
            touched = connection.execute(sql.TOUCH_WORKER, {"worker_id": worker_id, "now": now})
            if not touched.rowcount:
                connection.execute(
                    sql.INSERT_WORKER, {"id": worker_id, "started_at": now, "heartbeat_at": now}
                )

    def live_workers(self, *, now: datetime, ttl: timedelta) -> set[str]:
        with self._connection() as connection:
            return set(connection.execute(sql.LIVE_WORKERS, {"since": now - ttl}).scalars())

    def next_poll_at(self) -> datetime | None:
        with self._connection() as connection:
            return connection.execute(sql.NEXT_POLL_AT).scalar()

    def count_attempts(self, *, states: Iterable[AttemptState]) -> int:
        with self._connection() as connection:
            return int(connection.execute(sql.count_in_states(frozenset(states))).scalar_one())

    def phone_live(self, phone: str, *, busy_since: datetime) -> bool:
        """Whether a call to this number may be ringing or talking (any campaign): see
        ``begin_dialing``."""
        with self._connection() as connection:
            found = connection.execute(
                sql.LIVE_ATTEMPT_TO_PHONE, {"phone": phone, "busy_since": busy_since}
            )
            return found.first() is not None

    def calls_since(self, phone: str, since: datetime) -> list[datetime]:
        """When this number was dialled (any campaign) since ``since``: for frequency caps."""
        with self._connection() as connection:
            found = connection.execute(sql.DIALLED_SINCE, {"phone": phone, "since": since})
            return [dialled for dialled in found.scalars() if dialled is not None]

    def request_body(self, attempt_id: int) -> dict[str, Any] | None:
        """The body of the attempt's last create, as sent (None: never dialled)."""
        with self._connection() as connection:
            return connection.execute(sql.REQUEST_BODY, {"attempt_id": attempt_id}).scalar()

    def attempt_history(self, run_id: int, contact_id: int) -> list[AttemptView]:
        with self._connection() as connection:
            return self._views(
                connection, sql.HISTORY, {"run_id": run_id, "contact_id": contact_id}
            )

    # ----- attempts: transitions (the only writers of attempt state)
    def _transition(
        self,
        connection: sa.Connection,
        attempt_id: int,
        target: AttemptState,
        *,
        now: datetime,
        kind: str,
        expect: Iterable[AttemptState] | None = None,
        event_data: Mapping[str, Any] | None = None,
        dialed_at: datetime | None = None,
        campaign_active: bool = False,
        phone_free_since: datetime | None = None,
        **values: Any,
    ) -> None:
        """Compare-and-set one attempt into ``target``, with its event, in ``connection``.

        ``phone_free_since`` makes it conditional on no other attempt to the same number whose
        call may be ringing or talking: dialled, in flight, or `unknown` since then with its
        call last seen live (one call at a time to a person, whatever the campaign).

        ``campaign_active`` makes the move conditional on the campaign still being active, so a
        pause or cancel takes effect even for an attempt a dispatcher read just before it.

        ``dialed_at`` pins the dial a decision was made about: a reconciler acting on an old
        read must not touch the same attempt after it was released and dialled again (ABA).
        """
        allowed = sources_of(target) if expect is None else frozenset(expect)
        assert all(can_transition(s, target) for s in allowed), (allowed, target)
        values["updated_at"] = now
        if isinstance(values.get("reason"), str):
            # an index holds the reason (the status page's pages by reason): PostgreSQL
            # refuses an index row past ~2.7 kB, and no reason needs more than this
            values["reason"] = values["reason"][:REASON_MAX_CHARS]
        if target is AttemptState.PLANNED:
            values["dial_key_name"] = None  # its next dial goes out with the campaign's key
        statement = sql.transition(
            target,
            allowed,
            pinned=dialed_at is not None,
            campaign_active=campaign_active,
            phone_free=phone_free_since is not None,
            columns=tuple(sorted(values)),
        )
        params = {f"_{name}": value for name, value in values.items()}
        params["_attempt_id"] = attempt_id
        if dialed_at is not None:
            params["_dialed_at"] = dialed_at
        if phone_free_since is not None:
            params["busy_since"] = phone_free_since
        moved = connection.execute(statement, params).all()
        if len(moved) != 1:
            raise TransitionRefused(
                f"attempt {attempt_id} cannot move to {target} from its current state"
            )
        (campaign_id,) = moved[0]
        append_event(
            connection,
            at=now,
            kind=kind,
            campaign_id=campaign_id,
            attempt_id=attempt_id,
            state=target.value,
            **dict(event_data or {}),
        )

    def _move(self, attempt_id: int, target: AttemptState, **kwargs: Any) -> None:
        """One transition in its own transaction (see ``_transition``)."""
        with self._connection() as connection:
            self._transition(connection, attempt_id, target, **kwargs)

    def begin_dialing(
        self,
        attempt_id: int,
        *,
        owner: str,
        body: Mapping[str, Any],
        now: datetime,
        evidence: Mapping[str, Any] | None = None,
        key_name: str | None = None,
        busy_since: datetime | None = None,
    ) -> bool:
        """Claim a planned attempt and record that a call is about to be placed.

        Committed BEFORE the POST is sent. False when another worker claimed it first, or
        when another attempt to the same number is being dialled or in flight.
        ``evidence`` is the policy's reason for allowing the dial (audit trail). ``key_name``:
        the API key the POST goes out with (None: the campaign's), which the attempt keeps.
        ``busy_since``: an `unknown` attempt to the same number dialled since then, whose call
        was last seen ringing or talking, holds the number too (None: only live attempts).
        """
        try:
            with self._connection() as connection:
                if self.dialect == "postgresql":
                    # "no other live attempt to this number" is a read: under READ COMMITTED
                    # two daemons claiming two attempts to one number would both pass it.
                    # Held to the commit, the lock makes the second one see the first's claim.
                    connection.execute(sql.LOCK_PHONE, {"attempt_id": attempt_id})
                self._transition(
                    connection,
                    attempt_id,
                    AttemptState.DIALING,
                    now=now,
                    kind="attempt.dialing",
                    expect=[AttemptState.PLANNED],
                    owner=owner,
                    dialing_at=now,
                    request_body=jsonable(dict(body)),
                    dial_key_name=key_name,
                    reason=None,
                    event_data={"owner": owner, **dict(evidence or {})},
                    campaign_active=True,
                    phone_free_since=busy_since or now,
                )
            return True
        except TransitionRefused:
            return False

    def confirm_sending(self, attempt_id: int, *, dialed_at: datetime, now: datetime) -> bool:
        """Re-stamp a dial whose POST waited for the budget, right before it is sent.

        Pinned to ``dialed_at`` and to an active campaign: False when the attempt was released
        or taken over meanwhile (a reconciler read its wait as a dead POST) or its campaign was
        paused, and then nothing may be sent. The new ``dialing_at`` is when the POST really
        goes out, which is what reconciliation's settle delay is measured from.
        """
        try:
            self._move(
                attempt_id,
                AttemptState.DIALING,
                now=now,
                kind="attempt.sending",
                expect=[AttemptState.DIALING],
                dialing_at=now,
                dialed_at=dialed_at,
                campaign_active=True,
                event_data={"queued_s": round((now - dialed_at).total_seconds(), 3)},
            )
            return True
        except TransitionRefused:
            return False

    def mark_in_flight(
        self,
        attempt_id: int,
        *,
        call_id: str,
        now: datetime,
        next_poll_at: datetime,
        adopted: bool = False,
        dialed_at: datetime | None = None,
        response_status: int | None = None,
    ) -> None:
        self._move(
            attempt_id,
            AttemptState.IN_FLIGHT,
            now=now,
            kind="attempt.adopted" if adopted else "attempt.created",
            expect=[AttemptState.DIALING],
            call_id=call_id,
            next_poll_at=next_poll_at,
            event_data=_audit({"call_id": call_id}, response_status),
            dialed_at=dialed_at,
        )

    def mark_create_failed(
        self,
        attempt_id: int,
        *,
        error: str,
        now: datetime,
        dialed_at: datetime | None = None,
        response_status: int | None = None,
    ) -> None:
        """The POST was refused definitively: no call exists."""
        self._move(
            attempt_id,
            AttemptState.FAILED,
            now=now,
            kind="attempt.create_failed",
            expect=[AttemptState.DIALING],
            error=error[:2000],
            outcome="failed_permanent",
            event_data=_audit({"error": error[:500]}, response_status),
            dialed_at=dialed_at,
        )

    def release_unplaced(
        self,
        attempt_id: int,
        *,
        due_at: datetime,
        reason: str,
        now: datetime,
        dialed_at: datetime | None = None,
        response_status: int | None = None,
    ) -> None:
        """dialing -> planned: we KNOW no call was placed (429, account error, confirmed gone).

        Back to planned in a run that a newer run of its campaign has superseded meanwhile, it
        is cancelled at once: the newer run calls the contact."""
        with self._connection() as connection:
            self._transition(
                connection,
                attempt_id,
                AttemptState.PLANNED,
                now=now,
                kind="attempt.not_placed",
                expect=[AttemptState.DIALING],
                due_at=due_at,
                reason=reason,
                owner=None,
                dialing_at=None,
                event_data=_audit({"reason": reason}, response_status),
                dialed_at=dialed_at,
            )
            if connection.execute(
                sql.ATTEMPT_IN_SUPERSEDED_RUN, {"attempt_id": attempt_id}
            ).first():
                self._cancel_each(connection, [attempt_id], now=now, reason="superseded")

    def note_ambiguous(
        self,
        attempt_id: int,
        *,
        error: str,
        now: datetime,
        dialed_at: datetime | None = None,
        response_status: int | None = None,
    ) -> None:
        """The POST may have placed a call: stay in dialing until reconciliation decides."""
        self._move(
            attempt_id,
            AttemptState.DIALING,
            now=now,
            kind="attempt.ambiguous",
            expect=[AttemptState.DIALING],
            reason="ambiguous_create",
            error=error[:2000],
            event_data=_audit({"error": error[:500]}, response_status),
            dialed_at=dialed_at,
        )

    def defer(
        self, attempt_id: int, *, due_at: datetime, reason: str, now: datetime, **detail: Any
    ) -> None:
        self._move(
            attempt_id,
            AttemptState.PLANNED,
            now=now,
            kind="attempt.deferred",
            expect=[AttemptState.PLANNED],
            due_at=due_at,
            reason=reason,
            event_data={"reason": reason, "until": due_at.isoformat(), **detail},
        )

    def close_unplaced(
        self, attempt_id: int, *, state: AttemptState, reason: str, now: datetime, **detail: Any
    ) -> None:
        """planned -> skipped | expired | cancelled, with the reason status and reports show."""
        assert state in (AttemptState.SKIPPED, AttemptState.EXPIRED, AttemptState.CANCELLED)
        self._move(
            attempt_id,
            state,
            now=now,
            kind=f"attempt.{state.value}",
            expect=[AttemptState.PLANNED],
            reason=reason,
            event_data={"reason": reason, **detail},
        )

    def record_poll(
        self,
        attempt_id: int,
        *,
        call_status: str,
        raw: Mapping[str, Any],
        now: datetime,
        next_poll_at: datetime | None,
    ) -> None:
        """A non-terminal observation: keep the latest call object, schedule the next look
        (None: no more looks)."""
        with self._connection() as connection:
            connection.execute(
                sql.RECORD_POLL,
                {
                    "_attempt_id": attempt_id,
                    "_call_status": call_status,
                    "_raw": jsonable(dict(raw)),
                    "_next_poll_at": next_poll_at,
                    "_updated_at": now,
                },
            )

    def reschedule_poll(
        self, attempt_id: int, *, next_poll_at: datetime | None, now: datetime
    ) -> None:
        """Look again later without having learnt anything (a failed or refused GET).

        An attempt that ended meanwhile (another daemon's look) keeps its NULL next poll."""
        with self._connection() as connection:
            connection.execute(
                sql.RESCHEDULE_POLL,
                {"attempt_id": attempt_id, "next_poll_at": next_poll_at, "updated_at": now},
            )

    def known_call_ids(self, call_ids: Iterable[str]) -> set[str]:
        """Which of these VoiceDock call ids an attempt already owns."""
        wanted = list(call_ids)
        found: set[str] = set()
        with self._connection() as connection:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                found.update(connection.execute(sql.KNOWN_CALL_IDS, {"call_ids": chunk}).scalars())
        return {c for c in found if c is not None}

    def record_outcome(
        self, attempt_id: int, *, result: CallResult, now: datetime, retry: Retry | None = None
    ) -> bool:
        """in_flight | unknown -> ended, with every outcome field and the ``retry`` it leads to,
        in one transaction. False on a duplicate (then no retry is written either)."""
        assert retry is None or retry.after.id == attempt_id, (retry, attempt_id)
        try:
            with self._connection() as connection:
                self._transition(
                    connection,
                    attempt_id,
                    AttemptState.ENDED,
                    now=now,
                    kind="attempt.ended",
                    expect=[AttemptState.IN_FLIGHT, AttemptState.UNKNOWN],
                    call_status=result.call_status,
                    outcome=result.outcome,
                    error=result.error,
                    end_reason=result.end_reason,
                    started_at=result.started_at,
                    ended_at=result.ended_at,
                    duration_seconds=result.duration_seconds,
                    summary=result.summary,
                    analysis_result=jsonable(result.analysis_result),
                    messages=jsonable(result.messages),
                    raw=jsonable(result.raw),
                    next_poll_at=None,
                    reason=None,  # a late result: "still in-progress after 0:30:00" is over
                    event_data={"outcome": result.outcome, "call_status": result.call_status},
                )
                if retry is not None:
                    self._write_retry(connection, retry, now=now)
            return True
        except TransitionRefused:
            return False

    def _write_retry(self, connection: sa.Connection, retry: Retry, *, now: datetime) -> None:
        previous = retry.after
        state = connection.execute(sql.CAMPAIGN_STATE, {"campaign_id": previous.campaign_id})
        dropped = None
        if state.scalar() == CampaignState.CANCELLED:
            dropped = "campaign_cancelled"  # a call in flight at the cancel earns nothing more
        elif connection.execute(sql.ATTEMPT_IN_SUPERSEDED_RUN, {"attempt_id": previous.id}).first():
            dropped = "superseded"  # a newer run of the campaign calls the contact
        elif connection.execute(sql.CONTACT_REMOVED, {"contact_id": previous.contact_id}).scalar():
            dropped = "removed"  # its key left the list while the call was in flight
        if dropped is not None:
            append_event(
                connection,
                at=now,
                kind="retry.dropped",
                campaign_id=previous.campaign_id,
                attempt_id=previous.id,
                outcome=retry.outcome,
                reason=dropped,
            )
            return
        if retry.due_at is None:
            append_event(
                connection,
                at=now,
                kind="retry.expired",
                campaign_id=previous.campaign_id,
                attempt_id=previous.id,
                outcome=retry.outcome,
            )
            return
        reason = f"retry:{retry.outcome}"
        # An attempt with that number already exists only if something else planned it: keep
        # that one (DO NOTHING), rather than failing the outcome that is being recorded.
        new_id = connection.execute(
            sql.insert_retry(self.dialect),
            {
                "run_id": previous.run_id,
                "campaign_id": previous.campaign_id,
                "contact_id": previous.contact_id,
                "phone": previous.phone,
                "attempt_no": previous.attempt_no + 1,
                "state": AttemptState.PLANNED.value,
                "due_at": retry.due_at,
                "reason": reason,
                "created_at": now,
                "updated_at": now,
            },
        ).scalar()
        if new_id is not None:
            append_event(
                connection,
                at=now,
                kind="attempt.retry_planned",
                campaign_id=previous.campaign_id,
                attempt_id=new_id,
                previous_attempt_id=previous.id,
                due_at=retry.due_at.isoformat(),
                reason=reason,
            )

    def mark_unknown(
        self, attempt_id: int, *, now: datetime, next_poll_at: datetime | None, reason: str
    ) -> None:
        """A call that never ended in time: outcome unknown, but still watched for a late result."""
        self._move(
            attempt_id,
            AttemptState.UNKNOWN,
            now=now,
            kind="attempt.unknown",
            expect=[AttemptState.IN_FLIGHT],
            outcome="unknown",
            reason=reason,
            next_poll_at=next_poll_at,
            event_data={"reason": reason},
        )

    def cancel_stragglers(self, *, now: datetime) -> int:
        """Cancel what became planned in a cancelled campaign after it was cancelled: a dial
        released after the cancel (a 429, a withdrawn create, reconciliation) or a retry that
        a call in flight earned. Without this, such a row would keep its run open for ever.
        Likewise what became planned in a run after a newer run of its campaign was created
        (see ``create_run``)."""
        return self._cancel_planned(
            sql.PLANNED_IN_CANCELLED_CAMPAIGNS, {}, now=now, reason="campaign_cancelled"
        ) + self._cancel_planned(sql.PLANNED_IN_SUPERSEDED_RUNS, {}, now=now, reason="superseded")

    def _cancel_planned(
        self, which: sa.Select[int], params: Mapping[str, Any], *, now: datetime, reason: str
    ) -> int:
        # prebuilt Core statements: housekeeping runs the stragglers' query every
        # reconcile_interval, and it almost always finds nothing
        with self._connection() as connection:
            ids = connection.execute(which, params).scalars().all()
            return self._cancel_each(connection, ids, now=now, reason=reason)

    def _cancel_each(
        self,
        connection: sa.Connection,
        attempt_ids: Sequence[int],
        *,
        now: datetime,
        reason: str,
        **event: Any,
    ) -> int:
        """planned -> cancelled, each with its event, in ``connection``; how many moved. One that
        another daemon dialled since it was read is left to that dial (a refused move changes
        nothing and costs the transaction nothing)."""
        cancelled = 0
        for attempt_id in attempt_ids:
            with contextlib.suppress(TransitionRefused):
                self._transition(
                    connection,
                    attempt_id,
                    AttemptState.CANCELLED,
                    now=now,
                    kind="attempt.cancelled",
                    expect=[AttemptState.PLANNED],
                    reason=reason,
                    event_data={"reason": reason, **event},
                )
                cancelled += 1
        return cancelled

    # ----- reporting
    def state_counts(self, campaign_id: int | None = None) -> dict[tuple[str, str | None], int]:
        """Attempts per (state, outcome) — the backbone of `dialer status`."""
        query = sql.state_counts(with_campaign=campaign_id is not None)
        with self._connection() as connection:
            rows = connection.execute(query, {"campaign_id": campaign_id})
            return {(state, outcome): n for state, outcome, n in rows}

    def attempts_up_to(self, campaign_id: int, limit: int) -> int:
        """The campaign's attempts, counted no further than ``limit``: whether a full count
        is worth waiting for, at the cost of ``limit`` index entries at most."""
        with self._connection() as connection:
            query = sql.ATTEMPTS_UP_TO
            return int(
                connection.execute(query, {"campaign_id": campaign_id, "limit": limit}).scalar_one()
            )

    def latest_attempts(self, campaign_id: int) -> list[AttemptView]:
        """The newest attempt of each contact in the campaign: one row per contact for reports."""
        with self._connection() as connection:
            return self._views(connection, sql.LATEST_VIEWS, {"campaign_id": campaign_id})

    def iter_keys(self, campaign_id: int, *, batch: int = 1000) -> Iterator[KeyRecord]:
        """Every reminder key of the campaign (removed ones too) with its latest attempt that
        was not cancelled, in contact order, streamed (keyset paging: bounded memory)."""

        def page(connection: sa.Connection, after: int) -> list[KeyRecord]:
            rows = connection.execute(
                sql.KEY_STATES_PAGE, {"campaign_id": campaign_id, "after": after, "limit": batch}
            )
            return [KeyRecord.from_row(row) for row in rows]

        return self._in_id_order(page, lambda key: key.contact_id)

    def last_event(self, campaign_id: int, kinds: Sequence[str]) -> EventRecord | None:
        """The campaign's newest event of one of these kinds."""
        with self._connection() as connection:
            row = connection.execute(
                sql.LAST_EVENT_OF_CAMPAIGN, {"campaign_id": campaign_id, "kinds": list(kinds)}
            ).first()
            return None if row is None else EventRecord.from_row(row)

    def latest_state_counts(self) -> list[LatestCounts]:
        """Every campaign's contacts counted by their newest attempt's state and outcome, in
        one grouped read (no rows are loaded: the live progress display asks this often)."""
        found: dict[str, dict[tuple[AttemptState, str | None], int]] = {}
        with self._connection() as connection:
            for name, state, outcome, n in connection.execute(sql.LATEST_STATE_COUNTS):
                counts = found.setdefault(name, {})
                if state is not None:
                    counts[(AttemptState(state), outcome)] = n
        return [LatestCounts(campaign=name, counts=counts) for name, counts in found.items()]

    def scrape_counts(self, *, now: datetime) -> ScrapeCounts:
        """What a metrics scrape shows of the database: three counting reads, one transaction."""
        with self._connection() as connection:
            return ScrapeCounts(
                in_flight={name: n for name, n in connection.execute(sql.SCRAPE_IN_FLIGHT)},
                due=int(connection.execute(sql.SCRAPE_DUE, {"now": now}).scalar_one()),
                finished={outcome: n for outcome, n in connection.execute(sql.SCRAPE_FINISHED)},
            )

    def iter_events(self, campaign_id: int, *, batch: int = 1000) -> Iterator[EventRecord]:
        """The campaign's audit trail (every event of it and its attempts), streamed in order."""

        def page(connection: sa.Connection, after: int) -> list[EventRecord]:
            params = {"campaign_id": campaign_id, "after": after, "batch": batch}
            return [
                EventRecord.from_row(row) for row in connection.execute(sql.EVENTS_PAGE, params)
            ]

        return self._in_id_order(page, lambda event: event.id)

    def iter_attempt_records(
        self, campaign_id: int, *, batch: int = 1000
    ) -> Iterator[tuple[AttemptRecord, StoredContact]]:
        """Every attempt of a campaign with its contact, streamed in id order (bounded memory)."""

        def page(
            connection: sa.Connection, after: int
        ) -> list[tuple[AttemptRecord, StoredContact]]:
            params = {"campaign_id": campaign_id, "after": after, "batch": batch}
            return [
                (AttemptRecord.from_row(row), StoredContact.from_row(row, prefix="contact__"))
                for row in connection.execute(sql.ATTEMPTS_WITH_CONTACTS_PAGE, params)
            ]

        return self._in_id_order(page, lambda pair: pair[0].id)

    def _in_id_order(
        self, page: Callable[[sa.Connection, int], Sequence[T]], id_of: Callable[[T], int]
    ) -> Iterator[T]:
        """Rows a page at a time, each page read in its own short transaction after the last
        id seen (keyset paging: memory stays bounded and no transaction stays open between)."""
        after = 0
        while True:
            with self._connection() as connection:
                rows = page(connection, after)
            if not rows:
                return
            yield from rows
            after = id_of(rows[-1])

    # ----- the status page (dialer.store.browse: each read a seek or a bounded range)
    def run_progress(
        self, campaign_id: int, *, unsettled: Mapping[AttemptState, int] | None = None
    ) -> RunProgress | None:
        """How far the campaign's newest run is (None: it never fired); see browse."""
        with self._connection() as connection:
            return browse.run_progress(connection, campaign_id, unsettled=unsettled)

    def campaign_next_due_at(self, campaign_id: int) -> datetime | None:
        with self._connection() as connection:
            return browse.next_due_at(connection, campaign_id)

    def reason_counts(self, campaign_id: int, states: Collection[AttemptState]) -> dict[Group, int]:
        """Attempts per (state, reason) of the campaign, in ``states`` only."""
        with self._connection() as connection:
            return browse.reason_counts(connection, campaign_id, states)

    def newest_attempts(
        self,
        campaign_id: int,
        groups: Collection[Group],
        *,
        by: Literal["outcome", "reason"],
        before: int | None = None,
        limit: int = 50,
        latest_only: bool = False,
    ) -> list[AttemptView]:
        """A page of the campaign's attempts in ``groups``, newest first (see browse)."""
        with self._connection() as connection:
            return browse.newest_attempts(
                connection,
                campaign_id,
                groups,
                by=by,
                before=before,
                limit=limit,
                latest_only=latest_only,
            )

    def search_attempts(
        self, campaign_id: int, search: Search, *, before: int, floor: int = 0, limit: int = 50
    ) -> list[AttemptView]:
        """A page of the campaign's attempts whose contact matches ``search`` (see browse)."""
        with self._connection() as connection:
            return browse.search_attempts(
                connection, campaign_id, search, before=before, floor=floor, limit=limit
            )

    def calls_per_hour(
        self, campaign_id: int, *, since: datetime, until: datetime
    ) -> dict[datetime, int]:
        with self._connection() as connection:
            return browse.calls_per_hour(connection, campaign_id, since=since, until=until)

    def last_dialled_at(self, campaign_id: int) -> datetime | None:
        with self._connection() as connection:
            return browse.last_dialled_at(connection, campaign_id)

    def workers_seen_since(self, since: datetime) -> list[WorkerRecord]:
        with self._connection() as connection:
            return browse.workers_seen_since(connection, since)

    def add_request_counts(
        self,
        worker_id: str,
        *,
        minute: datetime,
        counts: Mapping[str, tuple[int, int]],
        forget_before: datetime,
    ) -> None:
        """This daemon's requests per key (requests, of them 429s) in ``minute``, added to
        what the minute holds; minutes before ``forget_before`` are forgotten."""
        with self._connection() as connection:
            budget.add_request_counts(
                connection, worker_id, minute=minute, counts=counts, forget_before=forget_before
            )

    def request_counts_since(self, since: datetime) -> list[RequestCount]:
        """Every daemon's requests per key and minute since ``since``."""
        with self._connection() as connection:
            return browse.request_counts_since(connection, since)


def _audit(data: dict[str, Any], response_status: int | None) -> dict[str, Any]:
    """An event's data with the HTTP status of the answer that caused it, when there was one."""
    return data if response_status is None else {**data, "response_status": response_status}


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
