"""The one exception tree of the dialer.

    DialerError
    ├── InputError                 bad user input: exit code 2
    │   ├── ConfigError            the daemon's config.toml
    │   └── CampaignError          a campaign TOML / CSV; carries every Problem found
    ├── ProviderError              talking to VoiceDock (raised only by dialer.voicedock)
    │   ├── RateLimited            429; .retry_after seconds
    │   ├── AccountError           our own account blocks calls: pause, never fail a contact
    │   │   ├── Unauthorized       401 / 403
    │   │   └── InsufficientCredits 402
    │   ├── NotFound               404
    │   ├── InvalidRequest         400 / 409 / 422; .message from the body
    │   ├── ServerError            5xx on a request that is safe to repeat
    │   ├── TransportFailure       no answer at all on a request that is safe to repeat
    │   └── AmbiguousCreate        a POST /calls/outbound that may or may not have placed a call
    ├── CreateWithdrawn            a create withdrawn before it was sent (nothing went out)
    ├── WebhookRejected            a webhook that failed verification; .status to answer with
    ├── NeedsAPerson               `run --until-idle`: all that is left waits for a person
    └── StoreError                 the database
        ├── StoreUnavailable       for now, not for good: hold, back off, try again
        │   ├── DatabaseUnreachable  no connection, or it was lost (refused, dropped, ended)
        │   ├── DatabaseBusy       a lock held elsewhere outlasted our wait
        │   └── DatabaseFull       no room to write (SQLITE_FULL, a full disk)
        ├── SchemaMismatch         the schema is older or newer than this code
        ├── TransitionRefused      an attempt was not in a state the transition starts from
        └── StateChangeRefused     a cancelled campaign cannot be paused or resumed

Third-party exceptions (httpx, sqlalchemy, pydantic, tomllib) are translated at the edge
with ``raise Ours(...) from exc``; code above the edges never catches them.
Messages never contain the API key: the client never formats request headers into them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class DialerError(Exception):
    """Base of every error the dialer raises on purpose."""


@dataclass(frozen=True, kw_only=True)
class Problem:
    """One thing wrong with an input file, located as precisely as we can."""

    file: Path | str
    field: str
    message: str
    line: int | None = None
    accepted: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else f"{self.file}"
        text = f"{where}: {self.field}: {self.message}"
        if self.accepted:
            text += f" (accepted: {self.accepted})"
        return text


class InputError(DialerError):
    """Bad user input; the CLI exits with code 2 and nothing is written."""

    def __init__(self, problems: list[Problem]) -> None:
        if not problems:
            raise ValueError("InputError needs at least one problem")
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ConfigError(InputError):
    """The daemon's configuration file is wrong."""


class CampaignError(InputError):
    """A campaign definition (TOML or its contacts CSV) is wrong."""


class ProviderError(DialerError):
    """A VoiceDock request did not succeed."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        param: str | None = None,
        said: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        #: the error body's code and the field it names, when it had them
        self.code = code
        self.param = param
        #: what VoiceDock said, its message alone (``message`` adds the request and status)
        self.said = said


class RateLimited(ProviderError):
    """429: nothing was processed; safe to repeat after ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float, status_code: int = 429) -> None:
        super().__init__(message, status_code=status_code)
        self.retry_after = retry_after


class AccountError(ProviderError):
    """Our own account cannot place calls. Dispatch pauses; no contact is blamed."""


class Unauthorized(AccountError):
    """401/403: the API key is missing, invalid, expired, revoked or lacks access."""


class InsufficientCredits(AccountError):
    """402: the credit balance is zero."""


class NotFound(ProviderError):
    """404: the call, assistant or number does not exist."""


class InvalidRequest(ProviderError):
    """400/409/422: VoiceDock refused the request as malformed; repeating will not help."""


class ServerError(ProviderError):
    """5xx on a request that is safe to repeat (retries were exhausted)."""


class TransportFailure(ProviderError):
    """No HTTP answer (connect error, timeout) on a request that is safe to repeat."""


class AmbiguousCreate(ProviderError):
    """The create request may have placed a call: timeout after sending, 5xx, dropped
    connection. Never re-send; reconcile against ``GET /calls`` first."""


class CreateWithdrawn(DialerError):
    """The caller withdrew a create after its budget slot came and before it was sent:
    nothing went out. Not a ProviderError, so no retry and no ambiguity applies."""


class NeedsAPerson(DialerError):
    """Everything left to dial is held by something only a person can fix (a held campaign,
    an API key VoiceDock refuses): `dialer run --until-idle` stops waiting and says what."""


class WebhookRejected(DialerError):
    """A webhook that failed verification or could not be understood."""

    def __init__(self, message: str, *, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


class StoreError(DialerError):
    """The database failed or refused an operation."""


class StoreUnavailable(StoreError):
    """The database cannot serve us for now; nothing about the request is wrong. The engine's
    loops hold and try again (dialer.store.failures says which driver errors these are).

    ``commit_unknown``: the connection was lost while the COMMIT was under way, so the
    transaction may have been committed or not; re-read before acting on either."""

    def __init__(self, message: str, *, commit_unknown: bool = False) -> None:
        super().__init__(message)
        self.commit_unknown = commit_unknown


class DatabaseUnreachable(StoreUnavailable):
    """No connection to the database, or it was lost: refused, dropped, terminated by an
    administrator, the server shutting down; SQLite's file unreadable."""


class DatabaseBusy(StoreUnavailable):
    """A lock held by someone else outlasted our wait (SQLite's `database is locked` from a
    backup or the CLI; a PostgreSQL deadlock or serialization failure): nothing was written."""


class DatabaseFull(StoreUnavailable):
    """No room to write (SQLITE_FULL, PostgreSQL's disk_full): nothing was written."""


class SchemaMismatch(StoreError):
    """The database schema revision is not the one this code expects."""


class TransitionRefused(StoreError):
    """The attempt was not in a state from which the transition is allowed (someone else won)."""


class StateChangeRefused(StoreError):
    """A campaign cannot take that state: cancelling is final."""
