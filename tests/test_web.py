"""The status page through Starlette's TestClient, on SQLite and PostgreSQL: every route, the
login, the security headers, masked numbers everywhere (the CSV included), formula cells."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from dialer.attempts import AttemptState
from dialer.store import ContactRecord, Store
from dialer.web import DaemonFacts, KeyHold, StatusSource, pages, status_app
from dialer.web.figures import FigureCounter
from dialer.web.security import COOKIE, session_value
from tests.status_world import T0, campaign_in_every_state, contacts

NOW = T0 + timedelta(minutes=5)
TOKEN = "a-long-page-token-nobody-guesses"
SUMMARY = "Confirmed the slot; call back on +31 6 1234 5699 if it moves."
NAME_LIKE_A_FORMULA = '=HYPERLINK("http://evil.example","click")'


def people() -> list[ContactRecord]:
    records = contacts(60)
    records[8] = ContactRecord(  # busy, not retried: it needs a person
        phone=records[8].phone, name=NAME_LIKE_A_FORMULA, timezone=None, variables={}
    )
    return records


@pytest.fixture
def world(store: Store) -> Store:
    campaign_in_every_state(store, people=people(), summary=SUMMARY)
    store.heartbeat("daemon-that-stopped", now=T0)
    store.heartbeat("daemon-serving", now=NOW)
    store.add_request_counts(
        "daemon-serving",
        minute=NOW - timedelta(minutes=2),
        counts={"default": (40, 3)},
        forget_before=T0,
    )
    return store


def source(store: Store, **facts: object) -> StatusSource:
    values: dict[str, object] = {"worker_id": "daemon-serving"}
    values.update(facts)
    return StatusSource(
        store=store,
        clock=lambda: NOW,
        key_limits={"default": 100},
        facts=lambda: DaemonFacts(**values),  # type: ignore[arg-type]
    )


def client(store: Store, *, token: str | None = None, mask_phones: bool = False) -> TestClient:
    app = status_app(source(store), token=token, mask_phones=mask_phones)
    return TestClient(app, base_url="http://127.0.0.1:8788", follow_redirects=False)


ROUTES = [
    "/",
    "/campaigns/browse",
    "/campaigns/browse?state=ended",
    "/campaigns/browse?state=ended&outcome=busy",
    "/campaigns/browse?outcome=no_answer",
    "/campaigns/browse?reason=dnc",
    "/campaigns/browse?state=skipped&reason=unknown_timezone",
    "/campaigns/browse?q=person+1",
    "/campaigns/browse?q=%2B31612300044",
    "/campaigns/browse?q=0044",
    "/campaigns/browse/needs-a-person",
    "/campaigns/browse/needs-a-person.csv",
]


def pages_of(c: TestClient) -> Iterator[tuple[str, str]]:
    for route in ROUTES:
        response = c.get(route)
        assert response.status_code == 200, route
        yield route, response.text


def rows_of(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'data-attempt="(\d+)"', html)]


# ---------------------------------------------------------------------------- every route


def test_every_route_answers(world: Store) -> None:
    c = client(world)
    for route, text in pages_of(c):
        if route.endswith(".csv"):
            assert text.startswith("campaign,name,phone,")
        else:
            assert "<!doctype html>" in text and "VoiceDock dialer" in text
    assert c.get("/static/app.css").headers["content-type"].startswith("text/css")
    assert c.get("/static/refresh.js").status_code == 200
    assert c.get("/campaigns/nothing-of-the-sort").status_code == 404
    assert c.get("/campaigns/browse?before=not-a-number").status_code == 400
    assert c.get("/login").status_code == 303  # no token: no login page


def test_the_overview_counts_as_dialer_status(world: Store) -> None:
    html = client(world).get("/").text
    (campaign,) = world.campaigns()
    progress = world.run_progress(campaign.id)
    assert progress is not None
    assert f'data-settled="{progress.settled}" data-total="{progress.contacts}"' in html
    for (state, outcome), n in world.state_counts(campaign.id).items():
        row = re.search(
            rf'data-state="{state}" data-outcome="{outcome or ""}">.*?<td class="n">(\d+)</td>',
            html,
            re.DOTALL,
        )
        assert row is not None and int(row.group(1)) == n, (state, outcome)


def test_holds_are_said_in_plain_words(world: Store) -> None:
    app = status_app(
        source(
            world,
            key_holds=[KeyHold(key="default", status=402, since=T0)],
            clock_skew=timedelta(seconds=-7.25),
        ),
        token=None,
        mask_phones=False,
    )
    html = TestClient(app).get("/").text
    assert "API key &#39;default&#39; is out of credits (VoiceDock answered 402)" in html
    assert "7.2 s behind the database" in html
    assert "Daemon daemon-that-stopped has not been heard from since 5 min ago" in html
    assert 'daemon-serving <span class="quiet">(serves this page)' in html


def test_a_held_campaign_says_why_and_what_to_do(world: Store) -> None:
    (campaign,) = world.campaigns()
    assert world.hold_campaign(
        campaign.id,
        reason="422: Unknown field in assistant_override: frist_message (param=frist_message)",
        phone="+31612345601",
        line=2,
        now=NOW,
    )
    c = client(world)
    for route in ("/", f"/campaigns/{campaign.name}"):
        html = c.get(route).text
        assert (
            "VoiceDock said: 422: Unknown field in assistant_override: frist_message "
            "(param=frist_message) (first: line 2, +31612345601)" in html
        ), route
        assert "Fix the campaign file, or `dialer resume` it once fixed." in html
    masked = TestClient(status_app(source(world), token=None, mask_phones=True))
    for route in ("/", f"/campaigns/{campaign.name}"):
        html = masked.get(route).text
        assert "+31612345601" not in html and "(first: line 2, ••••)" in html, route


def test_request_budget_use_includes_what_this_daemon_has_not_written(world: Store) -> None:
    app = status_app(
        source(world, unwritten_requests={"default": (7, 1)}), token=None, mask_phones=False
    )
    html = TestClient(app).get("/").text
    assert 'data-key="default" data-total="47"' in html
    assert "<b>47</b> requests · busiest minute 40 of 100 allowed · 4 answered 429" in html


def test_the_live_part_alone_for_the_refresh_script(world: Store) -> None:
    c = client(world)
    for route in ("/", "/campaigns/browse", "/campaigns/browse/needs-a-person"):
        live = c.get(route, headers={"X-Refresh": "live"}).text
        assert "<html" not in live and "data-updated=" in live
        assert "<form" not in live  # the filters stay put while the figures change


def test_keyset_pages_walk_every_attempt_once(world: Store) -> None:
    c = client(world)
    (campaign,) = world.campaigns()
    everyone = sorted((a.id for a in world.attempts(campaign_id=campaign.id)), reverse=True)
    seen: list[int] = []
    url: str | None = "/campaigns/browse"
    while url is not None:
        html = c.get(url).text
        seen.extend(rows_of(html))
        older = re.search(r'class="older" href="([^"]+)"', html)
        url = older.group(1).replace("&amp;", "&") if older else None
    assert seen == everyone


def test_filters_and_searches_show_what_they_name(world: Store) -> None:
    c = client(world)
    (campaign,) = world.campaigns()
    attempts = {a.id: a for a in world.attempts(campaign_id=campaign.id)}

    def shown(route: str) -> set[int]:
        return set(rows_of(c.get(route).text))

    assert shown("/campaigns/browse?state=ended&outcome=busy") == {
        i for i, a in attempts.items() if a.outcome == "busy"
    }
    assert shown("/campaigns/browse?reason=dnc") == {
        i for i, a in attempts.items() if a.reason == "dnc"
    }
    assert shown("/campaigns/browse?q=PERSON+4") == {
        i for i, a in attempts.items() if (a.contact.name or "").startswith("Person 4")
    }
    phone = attempts[max(attempts)].phone
    assert shown(f"/campaigns/browse?q={phone.replace('+', '%2B')}") == {
        i for i, a in attempts.items() if a.phone == phone
    }


def test_needs_a_person_lists_each_contact_s_newest_attempt_if_unreached(world: Store) -> None:
    (campaign,) = world.campaigns()
    attempts = world.attempts(campaign_id=campaign.id)
    newest = {a.contact_id: a for a in sorted(attempts, key=lambda a: a.id)}
    expected = {
        a.id
        for a in newest.values()
        if a.state in (AttemptState.SKIPPED, AttemptState.EXPIRED)
        or (
            a.state in (AttemptState.ENDED, AttemptState.FAILED, AttemptState.UNKNOWN)
            and a.outcome not in ("completed", "declined")
        )
    }
    c = client(world)
    assert set(rows_of(c.get("/campaigns/browse/needs-a-person").text)) == expected
    rows = list(csv.DictReader(io.StringIO(c.get("/campaigns/browse/needs-a-person.csv").text)))
    assert {r["phone"] for r in rows} == {a.phone for a in attempts if a.id in expected}
    assert {r["state"] for r in rows} >= {"skipped", "expired", "ended", "failed"}


def test_the_csv_keeps_a_formula_as_text(world: Store) -> None:
    response = client(world).get("/campaigns/browse/needs-a-person.csv")
    assert response.headers["content-disposition"] == (
        'attachment; filename="browse-needs-a-person.csv"'
    )
    names = {row["name"] for row in csv.DictReader(io.StringIO(response.text))}
    assert "'" + NAME_LIKE_A_FORMULA in names
    assert NAME_LIKE_A_FORMULA not in names


# ---------------------------------------------------------------------------- security


def test_every_response_carries_the_security_headers(world: Store) -> None:
    c = client(world, token=TOKEN)
    for route in ["/", "/login", "/static/app.css", "/campaigns/nope", *ROUTES]:
        headers = client(world).get(route).headers if route != "/login" else c.get(route).headers
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp, route
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert "server" not in headers


def test_no_inline_script_or_style_on_any_page(world: Store) -> None:
    for _, text in pages_of(client(world)):
        assert "<script>" not in text and "onclick" not in text and " style=" not in text


def test_a_request_without_the_token_cookie_is_refused(world: Store) -> None:
    c = client(world, token=TOKEN)
    for route in ROUTES:
        response = c.get(route)
        assert response.status_code == 303, route
        assert response.headers["location"].startswith("/login?next=")
        assert "Person" not in response.text and "+316" not in response.text
        refresh = c.get(route, headers={"X-Refresh": "live"})
        assert refresh.status_code == 401 and "Person" not in refresh.text
    c.cookies.set(COOKIE, "0" * 64)
    assert c.get("/").status_code == 303
    c.cookies.set(COOKIE, TOKEN)  # the token itself is not the cookie
    assert c.get("/").status_code == 303


def test_the_token_entered_once_opens_every_page(world: Store) -> None:
    c = client(world, token=TOKEN)
    wrong = c.post("/login", data={"token": TOKEN[:-1] + "x", "next": "/"})
    assert wrong.status_code == 401 and COOKIE not in wrong.cookies
    assert "That token is not right" in wrong.text
    right = c.post("/login", data={"token": TOKEN, "next": "/campaigns/browse?state=ended"})
    assert right.status_code == 303
    assert right.headers["location"] == "/campaigns/browse?state=ended"
    cookie = right.headers["set-cookie"]
    assert f"{COOKIE}={session_value(TOKEN)}" in cookie
    assert TOKEN not in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=" in cookie
    c.cookies.set(COOKIE, session_value(TOKEN))
    for route, _ in pages_of(c):
        assert TOKEN not in c.get(route).text
    out = c.post("/logout")
    assert out.status_code == 303 and f'{COOKIE}=""' in out.headers["set-cookie"]


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "\\\\evil", ""])
def test_the_login_goes_back_to_this_site_only(world: Store, target: str) -> None:
    response = client(world, token=TOKEN).post("/login", data={"token": TOKEN, "next": target})
    assert response.headers["location"] == "/"


def test_masked_numbers_are_masked_everywhere_the_csv_included(world: Store) -> None:
    (campaign,) = world.campaigns()
    numbers = {c.phone for c in world.contacts(campaign.id)}
    c = client(world, mask_phones=True)
    for route, text in pages_of(c):
        digits = re.sub(r"[^\d+]", "", text)
        for number in numbers:
            assert number not in text and number not in digits, (route, number)
        assert "1234 5699" not in text, route  # the number in a call's summary
    assert "+31 6 •••• 0044" in c.get("/campaigns/browse?q=0044").text
    csv_text = c.get("/campaigns/browse/needs-a-person.csv").text
    assert all(
        re.fullmatch(r"\+31 6 •••• \d{4}", row["phone"])
        for row in csv.DictReader(io.StringIO(csv_text))
    )


def test_masked_numbers_cannot_be_searched_digit_by_digit(world: Store) -> None:
    c = client(world, mask_phones=True)
    refused = c.get("/campaigns/browse?q=123000")
    assert "Numbers are masked" in refused.text and not rows_of(refused.text)
    assert rows_of(c.get("/campaigns/browse?q=0044").text)  # the last four, which it shows
    assert rows_of(c.get("/campaigns/browse?q=%2B31612300044").text)  # a whole number
    assert not rows_of(c.get("/campaigns/browse?q=1230").text)  # not at the end: no match


def test_a_big_campaign_s_figures_are_recounted_in_the_background(world: Store) -> None:
    """Past ``big`` attempts a page answers from the last count, at most ``max_age`` old,
    and starts a recount; a small campaign is counted for every page."""
    (campaign,) = world.campaigns()
    now = [0.0]
    queued: list[tuple[Callable[[], None], str]] = []
    counter = FigureCounter(
        world, max_age_s=5, big=10, clock=lambda: now[0], spawn=lambda *w: queued.append(w)
    )
    first = counter.of(campaign.id)
    assert first.counts == world.state_counts(campaign.id)
    planned = world.attempts(campaign_id=campaign.id, states=[AttemptState.PLANNED])[0]
    world.close_unplaced(planned.id, state=AttemptState.SKIPPED, reason="dnc", now=NOW)
    assert counter.of(campaign.id) is first and not queued  # young enough
    now[0] = first.counted_at + 6
    assert counter.of(campaign.id) is first  # stale: answered at once, recounted aside
    assert counter.of(campaign.id) is first and len(queued) == 1  # one recount at a time
    work, name = queued.pop()
    assert name == f"count-campaign-{campaign.id}"
    work()
    assert counter.of(campaign.id).counts == world.state_counts(campaign.id) != first.counts
    small = FigureCounter(world, max_age_s=5, big=10**6, clock=lambda: now[0])
    assert small.of(campaign.id) is not small.of(campaign.id)  # counted for every page


def test_a_first_count_slower_than_a_page_says_counting_and_the_next_view_has_it(
    world: Store,
) -> None:
    """After a start no count exists yet: a page waits ``wait_s`` for one, then answers
    "counting…" rather than keep the person waiting for a million-attempt count."""
    (campaign,) = world.campaigns()
    queued: list[tuple[Callable[[], None], str]] = []
    # a campaign that cannot be big (id span within ``big``) is counted there and then
    small = FigureCounter(world, max_age_s=5, spawn=lambda *w: queued.append(w))
    assert small.glance(campaign.id, wait_s=0.0) is not None and not queued
    counter = FigureCounter(world, max_age_s=5, big=1, spawn=lambda *w: queued.append(w))
    assert counter.glance(campaign.id, wait_s=0.0) is None
    overview = pages.overview(source(world), counter)
    assert [c.counting for c in overview.campaigns] == [True]
    assert overview.campaigns[0].counts == () and overview.campaigns[0].settled == 0
    page = pages.campaign_page(
        source(world),
        counter,
        campaign,
        pages.Filters(),
        before=None,
        floor=None,
        mask_phones=False,
    )
    assert page.summary.counting and page.note is not None and "Counting" in page.note
    assert len(queued) == 1  # one first count, however many pages asked meanwhile
    work, _ = queued.pop()
    work()
    figures = counter.glance(campaign.id, wait_s=0.0)
    assert figures is not None and figures.counts == world.state_counts(campaign.id)
    after = pages.overview(source(world), counter).campaigns[0]
    assert not after.counting and after.counts
    # what must be complete (the needs-a-person list and its CSV) counts there and then
    fresh = FigureCounter(world, max_age_s=5, big=1, spawn=lambda *w: None)
    assert fresh.of(campaign.id).counts == world.state_counts(campaign.id)
