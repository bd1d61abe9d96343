"""The store: every table, every query and every state transition of the dialer.

tables      the SQLModel tables and their column types
records     the frozen records the store hands out (no table row leaves the package)
statements  the prebuilt Core statements
importer    contact import
store       ``Store``: lifecycle, reads, transitions, runs, workers, reports
"""

from __future__ import annotations

from dialer.errors import TransitionRefused
from dialer.store.records import AttemptView, CallResult, ContactRecord, Retry
from dialer.store.store import Store
from dialer.store.tables import (
    AttemptRow,
    BudgetRow,
    CampaignRow,
    ContactRow,
    EventRow,
    RunRow,
    UTCDateTime,
    WorkerRow,
)

__all__ = [
    "AttemptRow",
    "AttemptView",
    "BudgetRow",
    "CallResult",
    "CampaignRow",
    "ContactRecord",
    "ContactRow",
    "EventRow",
    "Retry",
    "RunRow",
    "Store",
    "TransitionRefused",
    "UTCDateTime",
    "WorkerRow",
]
