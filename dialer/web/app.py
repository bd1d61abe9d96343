"""The status page's ASGI app: routes, the login, rendering, the CSV download.

    app = status_app(StatusSource(store=store), token=None, mask_phones=False)
    # dialer.daemon serves it with uvicorn on [web] listen, as it serves the webhooks

Routes (every one read-only; the login and logout only set or clear the session cookie):

    GET  /                                      the overview: every campaign, holds, budgets
    GET  /campaigns/{name}                      one campaign: charts, attempts (filters, search)
    GET  /campaigns/{name}/needs-a-person       contacts a person should call
    GET  /campaigns/{name}/needs-a-person.csv   the same, every one, as CSV
    GET  /login, POST /login, POST /logout      only when a token is set
    GET  /static/...                            the stylesheet, the refresh script, the icon

A page asked for with the ``X-Refresh: live`` header answers with its live part only: the
refresh script swaps it in every few seconds instead of reloading the whole page.

Store reads are synchronous and run in Starlette's thread pool (the endpoints are plain
functions), so a page being read never holds up the daemon's event loop.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import jinja2
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from dialer import phones
from dialer.errors import StoreError
from dialer.reports import spreadsheet_safe
from dialer.store import AttemptView, CampaignRecord
from dialer.web import pages
from dialer.web.figures import FigureCounter
from dialer.web.security import (
    COOKIE,
    COOKIE_MAX_AGE_S,
    SecurityHeaders,
    local_path,
    session_value,
    token_matches,
    valid_session,
)
from dialer.web.source import StatusSource
from dialer.web.words import ago, attempt_words, duration_words, outcome_words, state_words

__all__ = ["NEEDS_A_PERSON_FIELDS", "status_app"]

log = structlog.get_logger("dialer.web")

#: the CSV download's columns
NEEDS_A_PERSON_FIELDS = [
    "campaign",
    "name",
    "phone",
    "what_happened",
    "state",
    "outcome",
    "reason",
    "attempts",
    "last_call_at",
    "due_at",
    "source_line",
]
#: the most a login form may send (a token and where to go next)
MAX_LOGIN_BODY = 4096
_REFRESH_HEADER = "x-refresh"
_NO_STORE = {"cache-control": "no-store"}


def status_app(
    source: StatusSource,
    *,
    token: str | None,
    mask_phones: bool,
    refresh: timedelta = timedelta(seconds=5),
) -> ASGIApp:
    """The status page; ``token`` None: no login (loopback only, which the config ensures)."""
    view = _Views(source, token=token, mask_phones=mask_phones, refresh=refresh)
    routes = [
        Route("/", view.guarded(view.overview)),
        Route("/campaigns/{name}", view.guarded(view.campaign)),
        Route("/campaigns/{name}/needs-a-person", view.guarded(view.needs_a_person)),
        Route("/campaigns/{name}/needs-a-person.csv", view.guarded(view.needs_a_person_csv)),
        Route("/login", view.login_form, methods=["GET"]),
        Route("/login", view.login, methods=["POST"]),
        Route("/logout", view.logout, methods=["POST"]),
        Mount("/static", StaticFiles(packages=[("dialer.web", "static")]), name="static"),
    ]
    return SecurityHeaders(Starlette(routes=routes))


class _Views:
    def __init__(
        self, source: StatusSource, *, token: str | None, mask_phones: bool, refresh: timedelta
    ) -> None:
        self.source = source
        self.token = token
        self.mask_phones = mask_phones
        self.refresh_ms = max(int(refresh.total_seconds() * 1000), 500)
        self.templates = _environment(self.show_phone, self.show_text)
        self.counter = FigureCounter(source.store, max_age_s=refresh.total_seconds())

    def guarded(self, endpoint: Callable[[Request], Response]) -> Callable[[Request], Response]:
        """``endpoint``, answering 503 when the database does not (the page retries)."""

        def guarded(request: Request) -> Response:
            try:
                return endpoint(request)
            except StoreError as exc:
                log.warning("dialer.web.store_error", path=request.url.path, error=str(exc))
                return self._error(request, 503, "The database did not answer; try again soon.")

        return guarded

    # ------------------------------------------------------------------ showing numbers
    def show_phone(self, e164: str) -> str:
        """Every number on every page and in the CSV goes through here."""
        return phones.mask(e164) if self.mask_phones else e164

    def show_text(self, text: str | None) -> str:
        """Free text that may hold a number (a call's summary)."""
        if not text:
            return ""
        return phones.mask_in_text(text) if self.mask_phones else text

    # ------------------------------------------------------------------ pages
    def overview(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        return self._page(
            request,
            "overview.html",
            title="Overview",
            page=pages.overview(self.source, self.counter),
        )

    def campaign(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        campaign = self._campaign(request)
        if campaign is None:
            return self._not_found(request)
        before, floor = _int(request, "before"), _int(request, "floor")
        if before is False or floor is False:
            return self._bad_request(request)
        page = pages.campaign_page(
            self.source,
            self.counter,
            campaign,
            pages.Filters.parse(request.query_params),
            before=before,
            floor=floor,
            mask_phones=self.mask_phones,
        )
        return self._page(request, "campaign.html", title=campaign.name, page=page)

    def needs_a_person(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        campaign = self._campaign(request)
        if campaign is None:
            return self._not_found(request)
        before = _int(request, "before")
        if before is False:
            return self._bad_request(request)
        views = pages.needs_a_person_rows(self.source, self.counter, campaign, before=before)
        more = {"before": str(views[-1].id)} if len(views) == pages.PAGE_SIZE else None
        return self._page(
            request,
            "needs.html",
            title=f"{campaign.name}: needs a person",
            campaign=campaign,
            now=self.source.clock(),
            rows=[pages.Row.of(v) for v in views],
            next_page=more,
        )

    def needs_a_person_csv(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        campaign = self._campaign(request)
        if campaign is None:
            return self._not_found(request)
        filename = re.sub(r"[^A-Za-z0-9._-]", "_", campaign.name) + "-needs-a-person.csv"
        return StreamingResponse(
            self._csv(campaign),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{filename}"', **_NO_STORE},
        )

    def _csv(self, campaign: CampaignRecord) -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=NEEDS_A_PERSON_FIELDS)
        writer.writeheader()
        for i, view in enumerate(pages.every_needing_a_person(self.source, self.counter, campaign)):
            writer.writerow(spreadsheet_safe(self._csv_row(campaign, view)))
            if i % 500 == 499:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    def _csv_row(self, campaign: CampaignRecord, view: AttemptView) -> dict[str, Any]:
        return {
            "campaign": campaign.name,
            "name": view.contact.name,
            # masked or E.164: "+", digits, spaces and bullets, nothing a spreadsheet runs
            "phone": self.show_phone(view.phone),
            "what_happened": attempt_words(view.state, view.outcome, view.reason),
            "state": view.state.value,
            "outcome": view.outcome,
            "reason": view.reason,
            "attempts": view.attempt_no,
            "last_call_at": view.dialing_at.isoformat() if view.dialing_at else None,
            "due_at": view.due_at.isoformat(),
            "source_line": view.contact.source_line,
        }

    # ------------------------------------------------------------------ the login
    async def login_form(self, request: Request) -> Response:
        if self.token is None:
            return RedirectResponse("/", status_code=303)
        return self._login_page(request, error=None, status_code=200)

    async def login(self, request: Request) -> Response:
        if self.token is None:
            return RedirectResponse("/", status_code=303)
        form = await _small_form(request)
        if not token_matches(form.get("token", ""), self.token):
            log.warning("dialer.web.login_refused", client=_client(request))
            return self._login_page(request, error="That token is not right.", status_code=401)
        response = RedirectResponse(local_path(form.get("next")), status_code=303)
        response.set_cookie(
            COOKIE,
            session_value(self.token),
            max_age=COOKIE_MAX_AGE_S,
            path="/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        log.info("dialer.web.login", client=_client(request))
        return response

    async def logout(self, request: Request) -> Response:
        response = RedirectResponse("/login" if self.token else "/", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    def _login_page(self, request: Request, *, error: str | None, status_code: int) -> Response:
        html = self.templates.get_template("login.html").render(
            error=error, next=local_path(request.query_params.get("next")), static_url=_static_url
        )
        return HTMLResponse(html, status_code=status_code, headers=_NO_STORE)

    def _refused(self, request: Request) -> Response | None:
        """None when the request may see the pages; else where it goes instead."""
        if self.token is None or valid_session(request.cookies.get(COOKIE), self.token):
            return None
        if request.headers.get(_REFRESH_HEADER):
            return Response("login needed", status_code=401, headers=_NO_STORE)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(
            "/login?" + urlencode({"next": target}), status_code=303, headers=_NO_STORE
        )

    # ------------------------------------------------------------------ rendering
    def _campaign(self, request: Request) -> CampaignRecord | None:
        return self.source.store.campaign(request.path_params["name"])

    def _page(self, request: Request, template: str, **context: Any) -> Response:
        page = self.templates.get_template(template)
        values = {
            "refresh_ms": self.refresh_ms,
            "login": self.token is not None,
            "static_url": _static_url,
            "request_path": request.url.path,
            **context,
        }
        if request.headers.get(_REFRESH_HEADER) == "live":
            html = "".join(page.blocks["live"](page.new_context(values)))
        else:
            html = page.render(values)
        return HTMLResponse(html, headers=_NO_STORE)

    def _error(self, request: Request, status: int, message: str) -> Response:
        if request.headers.get(_REFRESH_HEADER):
            return Response(message, status_code=status, headers=_NO_STORE)
        html = self.templates.get_template("error.html").render(
            title="Not here" if status == 404 else "Error",
            message=message,
            static_url=_static_url,
            refresh_ms=self.refresh_ms,
            login=self.token is not None,
        )
        return HTMLResponse(html, status_code=status, headers=_NO_STORE)

    def _not_found(self, request: Request) -> Response:
        return self._error(request, 404, "No campaign of that name in the database.")

    def _bad_request(self, request: Request) -> Response:
        return self._error(request, 400, "That page number is not one the page gives.")


def _int(request: Request, name: str) -> int | bool | None:
    """A whole-number query parameter; None when absent, False when not a number."""
    text = request.query_params.get(name)
    if text is None or text == "":
        return None
    if not (text.isascii() and text.isdigit()) or int(text) > pages.ABOVE_EVERY_ID:
        return False
    return int(text)


async def _small_form(request: Request) -> dict[str, str]:
    """The URL-encoded login form, read up to MAX_LOGIN_BODY bytes (empty when larger)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_LOGIN_BODY:
            return {}
    try:
        fields = parse_qs(body.decode(), max_num_fields=8)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {name: values[0] for name, values in fields.items() if values}


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


# ------------------------------------------------------------------ templates and static files


def _static_digests() -> dict[str, str]:
    folder = resources.files("dialer.web").joinpath("static")
    return {
        entry.name: hashlib.sha256(entry.read_bytes()).hexdigest()[:10]
        for entry in folder.iterdir()
        if entry.is_file()
    }


_DIGESTS = _static_digests()


def _static_url(name: str) -> str:
    """A static file's URL, versioned by its content (a new release is fetched anew)."""
    return f"/static/{quote(name)}?v={_DIGESTS.get(name, '0')}"


def _environment(
    show_phone: Callable[[str], str], show_text: Callable[[str | None], str]
) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("dialer.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        phone=show_phone,
        text=show_text,
        utc=_utc,
        ago=ago,
        duration=_duration,
        thousands=lambda n: f"{n:,}",
        state_words=state_words,
        outcome_words=outcome_words,
        campaign_url=_campaign_url,
        query=_query,
    )
    return env


def _utc(value: datetime | None, format: str = "%Y-%m-%d %H:%M") -> str:
    return "" if value is None else f"{value:{format}} UTC"


def _duration(seconds: int | None) -> str:
    return "" if seconds is None else duration_words(timedelta(seconds=seconds))


def _campaign_url(name: str, suffix: str = "") -> str:
    return f"/campaigns/{quote(name, safe='')}{suffix}"


def _query(values: Mapping[str, str] | None) -> str:
    """A query string (autoescaping then writes its & as &amp; in the page)."""
    return "?" + urlencode(dict(values)) if values else ""
