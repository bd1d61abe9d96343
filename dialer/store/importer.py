"""Contact import: many contacts written fast, in the campaign sync's transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import Any

import sqlalchemy as sa
from sqlmodel import SQLModel

from dialer.errors import StoreError
from dialer.store.tables import ContactRow, jsonable


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
#: the contact columns an import writes (besides campaign_id and phone, the key)
_CONTACT_FIELDS = (
    "name",
    "timezone",
    "variables",
    "call_at",
    "appointment_at",
    "deadline",
    "source_line",
    "removed",
)
_INSERT_COLUMNS = ("campaign_id", "phone", *_CONTACT_FIELDS)


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
        table = SQLModel.metadata.tables[ContactRow.__tablename__]
        compiled = table.insert().compile(dialect=dialect, column_keys=list(_INSERT_COLUMNS))
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
            column_type = table.c[name].type
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
