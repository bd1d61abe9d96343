"""Campaign sync: the campaign row and its contacts, written in one transaction.

Contacts are keyed on (campaign, reminder key): a re-import keeps their history, and contacts
gone from the file are marked removed (the store cancels their planned attempts, saying
whether each was removed or rescheduled). A million-contact
file is imported in chunks (bounded memory) through a contacts INSERT compiled once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import repeat
from typing import Any

import sqlalchemy as sa

from dialer.errors import StoreError
from dialer.policy.reminders import key_identity
from dialer.store import statements as sql
from dialer.store.events import append_event
from dialer.store.records import ContactRecord
from dialer.store.tables import CONTACTS, jsonable


@dataclass(frozen=True, kw_only=True)
class Synced:
    """What a sync did: ``changed`` False when the campaign was stored with this definition.

    ``gone``: the contacts the file no longer has, by why: ``removed`` (the key is gone) or
    ``rescheduled`` (the key is gone, but its contact is still on the list under another
    appointment). Their planned attempts are the store's to cancel, with their events."""

    campaign_id: int
    changed: bool
    gone: Mapping[str, Sequence[int]] = field(default_factory=dict)


def sync_campaign(
    connection: sa.Connection,
    *,
    name: str,
    source: str,
    definition_hash: str,
    api_key_name: str,
    repeat: str,
    done_when: Sequence[str],
    contacts: Iterable[ContactRecord],
    now: datetime,
    lock: bool = False,
) -> Synced:
    """Insert or update the campaign and its contacts in ``connection``'s transaction.

    ``lock`` (PostgreSQL): the campaign row is held to the commit, so daemons that read one
    edit of the file at once import it one after the other, and the later ones find it done.
    """
    definition = {
        "source": source,
        "definition_hash": definition_hash,
        "api_key_name": api_key_name,
        "repeat": repeat,
        "done_when": sorted(done_when),
        "updated_at": now,
    }
    query = sql.CAMPAIGN_DEFINITION_LOCKED if lock else sql.CAMPAIGN_DEFINITION
    row = connection.execute(query, {"name": name}).first()
    if row is None:
        campaign_id: int = connection.execute(
            sql.INSERT_CAMPAIGN, {"name": name, "created_at": now, **definition}
        ).scalar_one()
        append_event(
            connection, at=now, kind="campaign.created", campaign_id=campaign_id, source=source
        )
    elif row.definition_hash == definition_hash:
        return Synced(campaign_id=row.id, changed=False)
    else:
        campaign_id = row.id
        connection.execute(
            sql.UPDATE_CAMPAIGN_DEFINITION, {"campaign_id": campaign_id, **definition}
        )
        append_event(
            connection,
            at=now,
            kind="campaign.updated",
            campaign_id=campaign_id,
            definition_hash=definition_hash,
        )
        # An edited file is what a person does to fix a held campaign: dialled again, and
        # held again after a few refusals if the edit did not fix it.
        if connection.execute(sql.RELEASE_HOLD, {"campaign_id": campaign_id}).rowcount:
            append_event(
                connection,
                at=now,
                kind="campaign.released",
                campaign_id=campaign_id,
                by="definition_changed",
            )
    gone = _write_contacts(connection, campaign_id, contacts)
    return Synced(campaign_id=campaign_id, changed=True, gone=gone)


def _write_contacts(
    connection: sa.Connection, campaign_id: int, contacts: Iterable[ContactRecord]
) -> dict[str, list[int]]:
    """New keys inserted, known ones updated, and the ones gone from the file removed: their
    ids by why (``removed`` or ``rescheduled``)."""
    existing: dict[str, tuple[int, bool]] = {
        key: (cid, removed)
        for cid, key, removed in connection.execute(
            sql.CONTACT_KEYS, {"campaign_id": campaign_id}
        ).all()
    }
    # A stored key with an appointment whose contact (identity) is still on the list under
    # another key was rescheduled, not removed: only those identities need remembering.
    rescheduling = {key_identity(key) for key in existing if key_identity(key) != key}
    still_listed: set[str] = set()
    insert = _ContactInsert(connection)
    # only keys already stored need remembering (to tell which ones are gone); a set of every
    # key of a first import would be ~100 MB at a million
    seen: set[str] = set()
    new_rows: list[tuple[Any, ...]] = []
    changed: list[dict[str, Any]] = []
    for contact in contacts:
        key = contact.key
        if rescheduling and (identity := contact.identity) in rescheduling:
            still_listed.add(identity)
        stored = existing.get(key) if existing else None
        if stored is None:
            # in _INSERT_COLUMNS order
            new_rows.append(
                (
                    campaign_id,
                    key,
                    contact.phone,
                    contact.name,
                    contact.timezone,
                    _json_variables(contact.variables),
                    contact.call_at,
                    contact.appointment_at,
                    contact.deadline,
                    contact.source_line,
                    False,
                )
            )
            if len(new_rows) >= _CHUNK:
                insert.execute(new_rows)
                new_rows = []
            continue
        seen.add(key)
        changed.append(
            {
                "contact_id": stored[0],
                "phone": contact.phone,
                "name": contact.name,
                "timezone": contact.timezone,
                "variables": _json_variables(contact.variables),
                "call_at": contact.call_at,
                "appointment_at": contact.appointment_at,
                "deadline": contact.deadline,
                "source_line": contact.source_line,
                "removed": False,
            }
        )
        if len(changed) >= _CHUNK:
            connection.execute(sql.UPDATE_CONTACT, changed)
            changed = []
    if changed:
        connection.execute(sql.UPDATE_CONTACT, changed)
    if new_rows:
        insert.execute(new_rows)
    gone: dict[str, list[int]] = {}
    for key, (cid, removed) in existing.items():
        if key in seen or removed:
            continue
        why = "rescheduled" if key_identity(key) in still_listed else "removed"
        gone.setdefault(why, []).append(cid)
    if gone:
        connection.execute(sql.REMOVE_CONTACTS, {"ids": [c for ids in gone.values() for c in ids]})
    return gone


def _json_variables(variables: Mapping[str, Any]) -> dict[str, Any]:
    """A contact's variables for the JSON column, as :func:`jsonable` would make them.

    Campaign files give strings only, which JSON keeps as they are: the round trip (two
    encodes and a decode per contact) is only for anything else.
    """
    # keys need no check: json.dumps writes any key it accepts the same way in both paths
    if type(variables) is dict and all(map(isinstance, variables.values(), repeat(str))):
        return variables
    plain: dict[str, Any] = jsonable(dict(variables))
    return plain


#: rows per executemany when importing contacts (memory stays bounded whatever the file size)
_CHUNK = 5000
#: a new contact's columns, in the order of the row tuples handed to ``_ContactInsert``
_INSERT_COLUMNS = ("campaign_id", "key", *sql.IMPORTED_CONTACT_COLUMNS)


class _ContactInsert:
    """``INSERT INTO contacts`` of many rows, the statement compiled once for the dialect.

    Core's executemany builds a parameter dict per row and runs every column's bind processor
    on it, ~6 us a row: a fifth of a million-row import. Here rows are tuples in
    ``_INSERT_COLUMNS`` order, handed to the driver in its parameter style after the same
    processors SQLAlchemy would run (so JSON, UTCDateTime and booleans come out exactly as
    through Core), applied only to the values that need them.
    """

    def __init__(self, connection: sa.Connection) -> None:
        dialect = connection.dialect
        compiled = CONTACTS.insert().compile(dialect=dialect, column_keys=list(_INSERT_COLUMNS))
        self._connection = connection
        self._sql = compiled.string
        names = list(compiled.positiontup or ()) if compiled.positional else list(compiled.binds)
        if sorted(names) != sorted(_INSERT_COLUMNS):  # pragma: no cover - an unusual dialect
            raise StoreError(f"unexpected parameters for the contacts insert: {names}")
        self._names = names if not compiled.positional else None
        #: where each driver parameter comes from in a row tuple
        self._order = [_INSERT_COLUMNS.index(name) for name in names]
        self._processors: list[tuple[int, Any, bool]] = []
        for position, name in enumerate(names):
            column_type = CONTACTS.c[name].type
            processor = column_type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                # None stays None through every processor but JSON's (it writes 'null')
                self._processors.append((position, processor, isinstance(column_type, sa.JSON)))

    def execute(self, rows: Sequence[tuple[Any, ...]]) -> None:
        order, processors = self._order, self._processors
        params: list[Any] = []
        in_order = order == list(range(len(order)))
        for row in rows:
            values = list(row) if in_order else [row[i] for i in order]
            for position, processor, even_none in processors:
                value = values[position]
                if value is not None or even_none:
                    values[position] = processor(value)
            params.append(
                dict(zip(self._names, values, strict=True)) if self._names else tuple(values)
            )
        self._connection.exec_driver_sql(self._sql, params)
