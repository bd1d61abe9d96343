"""The append-only history: a write appends its events in the transaction of the change."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from dialer.store import statements as sql
from dialer.store.tables import jsonable


def append_event(
    connection: sa.Connection,
    *,
    at: datetime,
    kind: str,
    campaign_id: int | None = None,
    attempt_id: int | None = None,
    **data: Any,
) -> None:
    """One event (``kind``, e.g. ``attempt.dialing``) with ``data`` as its JSON."""
    connection.execute(
        sql.INSERT_EVENT,
        {
            "at": at,
            "kind": kind,
            "campaign_id": campaign_id,
            "attempt_id": attempt_id,
            "data": jsonable(data),
        },
    )
