"""``[window] holidays = ["contact"]`` in a campaign file: the loader's part (the key, the
``subdivision`` column, its errors and warnings) and what `dialer plan` makes of it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from dialer.campaign import load_campaign
from dialer.config import Config
from dialer.errors import CampaignError
from dialer.plan import plan_campaign

ASSISTANT = "3f2b6c1e-8a4d-4f7b-9c2e-5d1a7b8e9f01"


def campaign_file(folder: Path, holidays: str, rows: list[str], extra: str = "") -> Path:
    (folder / "c.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    path = folder / "c.toml"
    path.write_text(
        f'name = "c"\nassistant_id = "{ASSISTANT}"\ncontacts_file = "c.csv"\n{extra}\n'
        f'[window]\ndays = ["mon-sun"]\nholidays = {holidays}\n',
        encoding="utf-8",
    )
    return path


def test_contact_among_the_holidays_asks_for_each_contacts_own(tmp_path: Path) -> None:
    path = campaign_file(tmp_path, '["NL", "Contact"]', ["phone", "+4915112345601"])
    window = load_campaign(path).window
    assert (window.holiday_regions, window.contact_holidays) == (("NL",), True)
    assert "holidays NL,contact" in window.describe()
    alone = load_campaign(campaign_file(tmp_path, '["contact"]', ["phone", "+4915112345601"]))
    assert (alone.window.holiday_regions, alone.window.contact_holidays) == ((), True)
    plain = load_campaign(campaign_file(tmp_path, '["NL"]', ["phone", "+4915112345601"]))
    assert plain.window.contact_holidays is False


def test_a_misspelt_contact_is_refused_saying_what_is_accepted(tmp_path: Path) -> None:
    with pytest.raises(CampaignError) as info:
        load_campaign(campaign_file(tmp_path, '["NL", "contacts"]', ["phone", "+4915112345601"]))
    (problem,) = info.value.problems
    assert (problem.line, problem.field) == (7, "window.holidays[1]")
    assert "no holiday calendar for 'contacts'" in problem.message
    assert problem.accepted is not None and '"contact"' in problem.accepted


def test_the_subdivision_column_is_matched_in_any_case_and_checked(tmp_path: Path) -> None:
    rows = [
        "phone,name,SubDivision",
        "+4915112345601,Jonas Weber,by",  # case does not matter
        "+12125550199,Emma Miller,US-CA",  # ISO 3166-2, whole
        "+31612345678,Sanne de Vries,",  # none: the Dutch national calendar
    ]
    campaign = load_campaign(campaign_file(tmp_path, '["contact"]', rows))
    assert [c.variables.get("subdivision") for c in campaign.contacts] == ["by", "US-CA", None]
    assert campaign.warnings == ()


def test_every_subdivision_its_country_lacks_is_an_error_at_its_line(tmp_path: Path) -> None:
    rows = [
        "phone,name,subdivision",
        "+4915112345601,Jonas Weber,CA",
        "+4915112345602,Lena Fischer,BY",
        "+12125550199,Emma Miller,Bavaria",
    ]
    with pytest.raises(CampaignError) as info:
        load_campaign(campaign_file(tmp_path, '["NL", "contact"]', rows))
    problems = info.value.problems
    assert [(Path(p.file).name, p.line, p.field) for p in problems] == [
        ("c.csv", 2, "subdivision"),
        ("c.csv", 4, "subdivision"),
    ]
    assert "'CA' is not a subdivision of DE (the country of +4915112345601)" in (
        problems[0].message
    )
    assert "BY" in problems[0].message  # the country's own, to choose from
    assert "'Bavaria' is not a subdivision of US" in problems[1].message


def test_without_contact_the_subdivision_is_only_a_variable(tmp_path: Path) -> None:
    rows = ["phone,subdivision", "+4915112345601,Bavaria"]
    campaign = load_campaign(campaign_file(tmp_path, '["NL"]', rows))
    assert campaign.contacts[0].variables["subdivision"] == "Bavaria"
    assert campaign.warnings == ()


def test_contacts_of_countries_without_a_calendar_are_counted_in_one_warning(
    tmp_path: Path,
) -> None:
    rows = [
        "phone,timezone",
        "+31612345678,",
        "+24762889,Atlantic/St_Helena",  # Ascension Island: no calendar in the holidays package
        "+80012345678,Europe/Amsterdam",  # international freephone: no country at all
        "+24762890,Atlantic/St_Helena",
    ]
    campaign = load_campaign(campaign_file(tmp_path, '["contact"]', rows))
    (warning,) = campaign.warnings
    assert (Path(warning.file).name, warning.line, warning.field) == ("c.csv", 3, "phone")
    assert warning.message.startswith("3 contacts (the first on this line)")
    assert "AC (2), +800 (1)" in warning.message
    assert "no public holiday closes their window" in warning.message
    # not a word of it when the campaign does not ask for the contacts' holidays
    assert load_campaign(campaign_file(tmp_path, '["NL"]', rows)).warnings == ()


def test_a_national_number_has_the_country_of_the_default_region(tmp_path: Path) -> None:
    munich = ["phone,subdivision", "089 12345678,BY"]  # a Munich landline, written nationally
    campaign = load_campaign(
        campaign_file(tmp_path, '["contact"]', munich, 'default_region = "DE"')
    )
    assert campaign.contacts[0].phone == "+498912345678"
    dutch = ["phone,subdivision", "06 12345678,BY"]  # Bavaria is no Dutch province
    with pytest.raises(CampaignError, match="'BY' is not a subdivision of NL"):
        load_campaign(campaign_file(tmp_path, '["contact"]', dutch, 'default_region = "NL"'))


def test_plan_calls_each_contact_on_its_own_working_day(tmp_path: Path) -> None:
    rows = [
        "phone,name,subdivision",
        "+4915112345601,Jonas Weber,BY",  # Corpus Christi is a holiday in Bavaria
        "+4915112345602,Lena Fischer,BE",  # ... not in Berlin
        "+31612345678,Sanne de Vries,",
    ]
    campaign = load_campaign(campaign_file(tmp_path, '["NL", "contact"]', rows))
    corpus_christi = datetime(2027, 5, 27, 8, 0, tzinfo=UTC)  # Thursday, 10:00 in Berlin
    planned = plan_campaign(campaign, Config.default(tmp_path), now=corpus_christi)
    first_calls = {p.name: p.first_call for p in planned}
    assert first_calls["Jonas Weber"] == datetime(2027, 5, 28, 7, 0, tzinfo=UTC)  # Fri 09:00
    assert first_calls["Lena Fischer"] is not None
    assert first_calls["Lena Fischer"] < datetime(2027, 5, 27, 9, 0, tzinfo=UTC)
    assert first_calls["Sanne de Vries"] is not None
    assert first_calls["Sanne de Vries"] < datetime(2027, 5, 27, 9, 0, tzinfo=UTC)
