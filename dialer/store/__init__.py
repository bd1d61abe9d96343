"""The store: every table, every query and every state transition of the dialer.

- ``tables``: the SQLModel tables and their column types (rows never leave the package)
- ``records``: the frozen records the store takes and hands out
- ``statements``: the store's SQL, prebuilt Core statements by name
- ``store``: ``Store`` itself: lifecycle, reads, the attempt transitions, runs, workers, reports
- ``importer``: campaign sync and contact import, in the sync's transaction
- ``budget``: the request budget daemons share (one GCRA row per API key), and its use
- ``browse``: what the status page reads, each a seek or a bounded range of an index
- ``events``: the append-only history every write adds to
- ``database``: opening the database (the driver we ship, SQLite's settings)
"""

from __future__ import annotations

from dialer.errors import StateChangeRefused, TransitionRefused
from dialer.store.browse import Group, Search
from dialer.store.records import (
    AttemptRecord,
    AttemptView,
    CallResult,
    CampaignHold,
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
from dialer.store.store import Store

__all__ = [
    "AttemptRecord",
    "AttemptView",
    "CallResult",
    "CampaignHold",
    "CampaignRecord",
    "CampaignState",
    "ContactRecord",
    "EventRecord",
    "FollowedCall",
    "Group",
    "KeyRecord",
    "LatestCounts",
    "RequestCount",
    "Retry",
    "RunProgress",
    "RunRecord",
    "ScrapeCounts",
    "Search",
    "StateChange",
    "StateChangeRefused",
    "Store",
    "StoredContact",
    "TransitionRefused",
    "WorkerRecord",
]
