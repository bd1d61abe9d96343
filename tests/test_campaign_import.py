"""Large contact lists (issue 6): the CSV is checked row by row and kept compactly.

``Campaign.contacts`` of a CSV campaign is a sequence that rebuilds each contact from its
(already checked) row; these tests hold it to what a tuple of contacts would be, and the
import into the store to what the engine reads back.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialer.campaign import Campaign, load_campaign
from dialer.campaign.compact import _resolve, _SeenKeys
from dialer.engine import contact_record, import_campaign
from dialer.policy.timezones import candidate_zones, resolve_zone
from dialer.store import ContactRecord, Store

ASSISTANT = "3f2b6c1e-8a4d-4f7b-9c2e-5d1a7b8e9f01"
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def campaign_with_csv(directory: Path, csv: str | bytes, extra: str = "") -> Path:
    data = csv.encode("utf-8") if isinstance(csv, str) else csv
    (directory / "c.csv").write_bytes(data)
    toml = directory / "c.toml"
    toml.write_text(
        f'name = "c"\nassistant_id = "{ASSISTANT}"\ncontacts_file = "c.csv"\n{extra}\n',
        encoding="utf-8",
    )
    return toml


def rows(n: int, start: int = 0) -> str:
    return "".join(f"+3161{i:07d},Person {i},{9 + i % 8}:00\n" for i in range(start, start + n))


def sync(store: Store, campaign: Campaign) -> int:
    return import_campaign(store, campaign, now=T0)


def test_csv_contacts_behave_like_a_tuple(tmp_path: Path) -> None:
    campaign = load_campaign(campaign_with_csv(tmp_path, "phone,name,slot\n" + rows(5)))
    contacts = campaign.contacts
    as_tuple = tuple(contacts)
    assert not isinstance(contacts, tuple)
    assert len(contacts) == 5
    assert contacts[0] == as_tuple[0] and contacts[-1] == as_tuple[4]
    assert tuple(contacts[1:3]) == as_tuple[1:3]
    assert contacts == as_tuple and contacts == list(as_tuple)
    assert as_tuple[2] in contacts
    assert [c.line for c in contacts] == [2, 3, 4, 5, 6]
    assert dict(contacts[1].variables) == {
        "phone": "+31610000001",
        "name": "Person 1",
        "slot": "10:00",
    }
    with pytest.raises(IndexError):
        contacts[5]
    # the same file loaded twice gives equal campaigns
    assert load_campaign(tmp_path / "c.toml") == campaign
    assert "5 contacts" in repr(contacts)


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending_keeps_lines_and_values(tmp_path: Path, newline: bytes) -> None:
    lines = [b"phone,name,note", b'+31612345601,Anna,"two', b'lines"', b"", b"+31612345602,Bram,x"]
    campaign = load_campaign(campaign_with_csv(tmp_path, newline.join(lines) + newline))
    anna, bram = campaign.contacts
    assert (anna.name, anna.line, anna.variables["note"]) == (
        "Anna",
        2,
        f"two{newline.decode()}lines",
    )
    assert (bram.name, bram.line, bram.variables["note"]) == ("Bram", 5, "x")


def test_timing_is_rebuilt_in_the_zone_it_was_checked_in(tmp_path: Path) -> None:
    csv = (
        "phone,appointment_at,timezone\n"
        "+31612345601,2027-03-02 09:30,\n"  # from the number: Amsterdam
        "+12125550123,2027-03-02 09:30,America/Chicago\n"  # explicit beats the number
        "+61491570156,2027-03-02 09:30,\n"  # a mobile of several zones: the campaign's
    )
    extra = 'timezone = "Australia/Perth"\nunknown_timezone = "campaign"\n'
    ams, chicago, perth = load_campaign(campaign_with_csv(tmp_path, csv, extra)).contacts
    assert ams.timing.appointment_at == datetime(2027, 3, 2, 8, 30, tzinfo=UTC)
    assert chicago.timing.appointment_at == datetime(2027, 3, 2, 15, 30, tzinfo=UTC)
    assert chicago.timezone == "America/Chicago"
    assert perth.timing.appointment_at == datetime(2027, 3, 2, 1, 30, tzinfo=UTC)


@pytest.mark.parametrize("phone", ["+31612345601", "+12125550123", "+61491570156", "+79123456789"])
@pytest.mark.parametrize("explicit", [None, "Europe/Paris"])
@pytest.mark.parametrize(
    "campaign_zone", [None, "Australia/Perth", "Australia/Melbourne", "America/New_York"]
)
@pytest.mark.parametrize("policy", ["skip", "campaign"])
def test_the_loaders_zone_is_the_engines(
    phone: str, explicit: str | None, campaign_zone: str | None, policy: str
) -> None:
    expected = resolve_zone(
        phone,
        explicit=explicit,
        campaign_zone=campaign_zone,
        unknown_policy=policy,  # type: ignore[arg-type]
    ).zone
    got = _resolve(
        phone,
        candidate_zones(phone),
        explicit=explicit,
        campaign_zone=campaign_zone,
        unknown_policy=policy,  # type: ignore[arg-type]
    )
    assert got == expected


def test_many_duplicates_each_name_the_first_line(tmp_path: Path) -> None:
    csv = "phone,name,slot\n" + rows(50) + rows(50)
    campaign = load_campaign(campaign_with_csv(tmp_path, csv))
    assert len(campaign.contacts) == 50
    first = campaign.warnings[0]
    assert (
        first.line == 52 and "+31610000000 is already a contact (line 2 of c.csv)" in first.message
    )
    assert "30 more like the above" in campaign.warnings[-1].message


def test_a_csv_contact_costs_well_under_200_bytes(tmp_path: Path) -> None:
    n = 20_000
    path = campaign_with_csv(tmp_path, "phone,name,slot\n" + rows(n))
    load_campaign(path)  # warm every cache (phone metadata, zones) first
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        campaign = load_campaign(path)
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(campaign.contacts) == n
    # the file itself is ~33 bytes a row; a Contact object per row was ~600
    assert kept / n < 200


def test_loading_a_csv_holds_no_object_per_contact_beyond_what_it_keeps(tmp_path: Path) -> None:
    """The reminder keys seen while loading are slots of one table, not a set of int objects
    (~60 bytes a contact, the peak of a 1,000,000-contact load above what it keeps)."""
    n = 20_000
    path = campaign_with_csv(tmp_path, "phone,name,slot\n" + rows(n))
    load_campaign(path)  # warm every cache (phone metadata, zones) first
    tracemalloc.start()
    try:
        campaign = load_campaign(path)
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(campaign.contacts) == n
    # the table itself is an anonymous map tracemalloc does not see: 16 bytes a line here
    assert (peak - kept) / n < 20, (peak - kept) / n
    seen = _SeenKeys(n)
    assert len(seen._slots) * 8 <= 32 * n
    seen.close()


PHONE_KEYS = st.integers(min_value=1, max_value=10**15)
DIGEST_KEYS = st.integers(min_value=1 << 127, max_value=(1 << 128) - 1)


@given(st.lists(st.one_of(PHONE_KEYS, DIGEST_KEYS, st.sampled_from([1, 2, 1025, 2049]))))
def test_the_keys_seen_are_a_set(keys: list[int]) -> None:
    seen, model = _SeenKeys(), set()  # from 1,024 slots: a long draw makes the table grow
    for key in keys:
        assert seen.add(key) is (key not in model)
        model.add(key)
    seen.close()


def test_import_writes_what_the_engine_reads_back(store: Store, tmp_path: Path) -> None:
    csv = "phone,name,slot,appointment_at\n" + "".join(
        f"+3161{i:07d},Person {i},{i}:00,2027-03-0{1 + i % 3} 09:30\n" for i in range(12)
    )
    campaign = load_campaign(campaign_with_csv(tmp_path, csv))
    cid = sync(store, campaign)
    stored = store.contacts(cid)
    assert [c.phone for c in stored] == [c.phone for c in campaign.contacts]
    for row, contact in zip(stored, campaign.contacts, strict=True):
        assert row.variables == dict(contact.variables)
        assert row.appointment_at == contact.timing.appointment_at
        assert (row.name, row.source_line, row.removed) == (contact.name, contact.line, False)
    ams = ZoneInfo("Europe/Amsterdam")
    assert stored[0].appointment_at == datetime(2027, 3, 1, 9, 30, tzinfo=ams)

    # a new version of the file: one contact gone, one changed, one new
    changed = csv.replace("Person 3,", "Persoon 3,").replace(
        "+31610000005,Person 5,5:00,2027-03-03 09:30\n", ""
    )
    changed += "+31619999999,New,1:00,2027-03-01 09:30\n"
    cid2 = sync(store, load_campaign(campaign_with_csv(tmp_path, changed)))
    assert cid2 == cid
    by_phone = {c.phone: c for c in store.contacts(cid)}
    assert by_phone["+31610000003"].name == "Persoon 3"
    assert by_phone["+31610000005"].removed
    assert not by_phone["+31619999999"].removed and len(by_phone) == 13


def test_non_text_variables_still_reach_the_json_column_as_text(store: Store) -> None:
    cid = store.sync_campaign(
        name="typed",
        source="t.toml",
        definition_hash="h",
        api_key_name="default",
        contacts=[
            ContactRecord(
                phone="+31612345601",
                name=None,
                timezone=None,
                variables={"when": T0, "n": 3},
            )
        ],
        now=T0,
    )
    (row,) = store.contacts(cid)
    assert row.variables == {"when": str(T0), "n": 3}


def test_an_import_that_fails_midway_leaves_nothing(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # several chunks are written before the failure
    monkeypatch.setattr("dialer.store.importer._CHUNK", 4)
    campaign = load_campaign(campaign_with_csv(tmp_path, "phone,name,slot\n" + rows(20)))

    def records(failing: Campaign) -> Iterator[ContactRecord]:
        for i, contact in enumerate(failing.contacts):
            if i == 15:
                raise RuntimeError("the disk is full")
            yield contact_record(contact)

    with pytest.raises(RuntimeError, match="disk is full"):
        import_campaign(store, campaign, now=T0, records=records)
    assert store.campaign(campaign.name) is None
    cid = sync(store, campaign)
    assert len(store.contacts(cid)) == 20


def test_the_table_of_keys_seen_grows_past_what_was_expected() -> None:
    seen = _SeenKeys(10)
    assert all(seen.add(key) for key in range(31_610_000_000, 31_610_005_000))
    assert not any(seen.add(key) for key in range(31_610_000_000, 31_610_005_000))
    assert len(seen._slots) >= 10_000
    seen.close()
