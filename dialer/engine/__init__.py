"""The engine: the daemon's loops, the only place where policy, store and API client meet.

    settings.py   EngineSettings, the clock, the loops' constants
    shared.py     Shared: what the actors share (store, clients, campaigns, holds, DNC view)
    holds.py      Holds: an API key refused, a campaign misconfigured, a clock skewed
    outages.py    DatabaseWatch, Reachability: the database away, VoiceDock not answering
    dispatch.py   Dispatcher: due attempts through the dial gate to their create, once
    follow.py     Follower: every placed call watched to its end (poll, list, webhook), retries
    reconcile.py  Reconciler: an ambiguous dial settled against GET /calls before any re-dial
    loops.py      Engine: the loops that time the actors, the heartbeat, idleness

No actor imports another: what several need lives in ``shared``, ``holds`` and ``outages``
beneath them.
Every decision takes ``now`` from the injected clock; the loops only decide *when* to run.
"""

from dialer.engine.loops import Engine, contact_record, import_campaign
from dialer.engine.settings import YIELD_EVERY, Clock, EngineSettings, utc_now

__all__ = [
    "YIELD_EVERY",
    "Clock",
    "Engine",
    "EngineSettings",
    "contact_record",
    "import_campaign",
    "utc_now",
]
