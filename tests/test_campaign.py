"""Campaign files -> records: the examples, call bodies, templates, CSV reading, time handling.

Malformed inputs live in tests/malformed/ (test_malformed.py); here are the files that load.
"""

from __future__ import annotations

import tomllib
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger

from dialer.campaign import Campaign, Contact, load_campaign, parse_when, validate_paths
from dialer.errors import CampaignError
from dialer.policy.outcomes import Outcome
from dialer.policy.retries import RetryPolicy, RetryRule
from dialer.policy.timezones import resolve_zone
from dialer.policy.windows import CallingWindow, TimeRange
from dialer.tomlsource import TomlSource

CAMPAIGNS = Path(__file__).resolve().parent.parent / "campaigns"
DEMO = Path(__file__).resolve().parent.parent / "dialer" / "demo_data"
ASSISTANT = "3f2b6c1e-8a4d-4f7b-9c2e-5d1a7b8e9f01"
AMS = ZoneInfo("Europe/Amsterdam")


def write(directory: Path, name: str, text: str | bytes) -> Path:
    path = directory / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def minimal(directory: Path, extra: str = "", contacts: str | None = None) -> Path:
    body = contacts if contacts is not None else '[[contacts]]\nphone = "+31612345601"\n'
    return write(
        directory,
        "c.toml",
        f'name = "c"\nassistant_id = "{ASSISTANT}"\n{extra}\n{body}',
    )


# ---------------------------------------------------------------------------- the examples


def test_appointment_example_loads_completely() -> None:
    campaign = load_campaign(CAMPAIGNS / "appointment-reminders.toml")
    assert campaign.name == "appointment-reminders"
    assert campaign.assistant_id == ASSISTANT
    assert campaign.assistant is None
    assert campaign.number_id == "a1c4e7f0-2b5d-4c8e-9f1a-3b6d9e2c5f80"
    assert campaign.timezone == "Europe/Amsterdam"
    assert campaign.unknown_timezone == "campaign"
    assert campaign.call_before == timedelta(hours=24)
    assert campaign.expires_at == datetime(2027, 6, 30, 21, 59, tzinfo=UTC)
    assert (campaign.max_concurrent_calls, campaign.calls_per_minute) == (3, 6.0)
    assert campaign.start_at is None and campaign.cron is None
    assert campaign.api_key_name == "default"
    assert len(campaign.contacts) == 8
    assert campaign.suppressed == frozenset({"+31687654306"})
    assert campaign.warnings == ()

    window = campaign.window
    assert window.days == frozenset({0, 1, 2, 3, 4, 5})
    assert window.ranges == (
        TimeRange(start=time(9), end=time(12, 30)),
        TimeRange(start=time(13, 30), end=time(19)),
    )
    assert window.holiday_regions == ("NL",)
    assert window.skip_dates == frozenset({date(2027, 5, 7)})
    assert window.min_time_before_close == timedelta(minutes=10)

    retry = campaign.retry
    assert retry.max_attempts == 3
    assert retry.rules[Outcome("busy")] == RetryRule(
        after=timedelta(minutes=20), max=2, backoff=1.5, jitter=timedelta(minutes=5)
    )
    assert retry.rules[Outcome("no_answer")] == RetryRule(after=timedelta(hours=2), max=2)


def test_appointment_example_contacts_are_normalised_and_timed() -> None:
    campaign = load_campaign(CAMPAIGNS / "appointment-reminders.toml")
    by_name = {c.name: c for c in campaign.contacts}
    # national and spaced numbers become E.164 (default_region = "NL")
    assert by_name["Daan Jansen"].phone == "+31612345602"
    assert by_name["Fatima El Amrani"].phone == "+31612345603"
    # local time of the number's zone (winter time, UTC+1)
    sanne = by_name["Sanne de Vries"]
    assert sanne.timing.appointment_at == datetime(2027, 3, 2, 8, 30, tzinfo=UTC)
    assert sanne.line == 2 and sanne.source.name == "appointment-reminders.csv"
    # an explicit offset wins
    assert by_name["Fatima El Amrani"].timing.appointment_at == datetime(
        2027, 3, 2, 13, 15, tzinfo=UTC
    )
    # a UK number of someone living in Amsterdam: the timezone column decides
    oliver = by_name["Oliver Hughes"]
    assert oliver.timezone == "Europe/Amsterdam"
    assert oliver.timing.appointment_at == datetime(2027, 3, 3, 9, 0, tzinfo=UTC)
    assert oliver.variables["dentist"] == "Dr. Bakker"
    assert oliver.variables["name"] == "Oliver Hughes"
    assert oliver.variables["phone"] == "+442079460101"
    # a quoted CSV cell with the separator in it
    assert by_name["Emma Mulder"].variables["treatment"] == "root canal, part 2"


def test_appointment_example_call_body_is_rendered_per_contact() -> None:
    campaign = load_campaign(CAMPAIGNS / "appointment-reminders.toml")
    sanne = campaign.contacts[0]
    body = campaign.call_body(sanne, metadata={"dialer_attempt_id": 41, "clinic": "ours"})
    assert body["destination"] == "+31612345601"
    assert body["assistant_id"] == ASSISTANT
    assert body["number_id"] == "a1c4e7f0-2b5d-4c8e-9f1a-3b6d9e2c5f80"
    assert "assistant" not in body
    override = body["assistant_override"]
    assert override["first_message"].startswith("Good afternoon Sanne de Vries,")
    assert "Dr. Bakker on Tuesday 2 March at 9:30" in override["first_message"]
    assert "{{" not in str(override)
    system = override["llm_config"]["messages"][0]["content"]
    assert "calling Sanne de Vries" in system and "check-up appointment" in system
    # the complete llm_config block travels (VoiceDock replaces top-level blocks)
    assert override["llm_config"]["model"] == "gpt-4o-mini"
    # our metadata is merged into the file's, and wins on a clash
    assert override["metadata"] == {"clinic": "ours", "dialer_attempt_id": 41}
    # the campaign's own tables are not changed by rendering
    assert campaign.assistant_override is not None
    assert dict(campaign.assistant_override["metadata"]) == {"clinic": "amsterdam-zuid"}
    again = campaign.call_body(campaign.contacts[1])
    assert again["assistant_override"]["metadata"] == {"clinic": "amsterdam-zuid"}
    assert "Daan Jansen" in again["assistant_override"]["first_message"]


def test_demo_campaign_spans_zones_and_forced_outcomes_exist() -> None:
    campaign = load_campaign(DEMO / "demo.toml")
    assert len(campaign.contacts) == 24
    assert campaign.warnings == ()
    zones = {}
    for contact in campaign.contacts:
        resolution = resolve_zone(
            contact.phone,
            explicit=contact.timezone,
            campaign_zone=campaign.timezone,
            unknown_policy=campaign.unknown_timezone,
        )
        assert resolution.zone is not None, contact.phone
        zones[contact.phone] = resolution.zone
    assert len({z.key for z in zones.values()}) >= 5
    forced = tomllib.loads((DEMO / "demo-outcomes.toml").read_text())["outcomes"]
    assert set(forced) <= set(zones)
    assert "no_answer" in forced.values()
    assert not any(phone.startswith("+1555") for phone in zones)


def test_demo_always_has_a_deferred_contact_and_a_callable_no_answer_one() -> None:
    """The claims in demo.toml's header hold at any moment of the year (DST included)."""
    campaign = load_campaign(DEMO / "demo.toml")
    forced = tomllib.loads((DEMO / "demo-outcomes.toml").read_text())["outcomes"]
    zones = {
        c.phone: resolve_zone(
            c.phone, explicit=c.timezone, campaign_zone=None, unknown_policy="skip"
        ).zone
        for c in campaign.contacts
    }
    no_answer = [phone for phone, outcome in forced.items() if outcome == "no_answer"]
    at = datetime(2027, 1, 1, tzinfo=UTC)
    while at < datetime(2028, 1, 1, tzinfo=UTC):
        open_now = {p for p, z in zones.items() if z and campaign.window.allows(at, z)}
        assert len(open_now) < len(zones), f"nobody deferred at {at}"
        assert any(p in open_now for p in no_answer), f"no no_answer contact callable at {at}"
        at += timedelta(hours=13, minutes=7)  # drifts through every hour of the day


def test_examples_validate_together_without_problems() -> None:
    paths = [CAMPAIGNS / "appointment-reminders.toml", DEMO / "demo.toml"]
    assert validate_paths(paths) == []


def test_every_example_number_is_e164_and_unique() -> None:
    for path in (CAMPAIGNS / "appointment-reminders.toml", DEMO / "demo.toml"):
        contacts = load_campaign(path).contacts
        phones = [c.phone for c in contacts]
        assert len(set(phones)) == len(phones)
        assert all(p.startswith("+") and p[1:].isdigit() for p in phones)


# ---------------------------------------------------------------------------- call bodies


def test_reference_mode_body_without_override(tmp_path: Path) -> None:
    campaign = load_campaign(minimal(tmp_path))
    contact = campaign.contacts[0]
    assert campaign.call_body(contact) == {"destination": "+31612345601", "assistant_id": ASSISTANT}
    assert campaign.call_body(contact, metadata={"dialer_attempt_id": 7}) == {
        "destination": "+31612345601",
        "assistant_id": ASSISTANT,
        "assistant_override": {"metadata": {"dialer_attempt_id": 7}},
    }


def test_transient_mode_renders_the_assistant_and_carries_metadata(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "t.toml",
        """
name = "transient"
number_id = "n-1"

[assistant]
first_message = "Hi {{ name }}!"
metadata = { source = "file" }
llm_config = { provider = "xai_realtime", model = "grok", messages = [
  { role = "system", content = "Speak to {{ name | upper }} about {{ topic }}." },
] }

[[contacts]]
phone = "+442079460101"
name = "O'Brien & Sons"
topic = "the <invoice>"
""",
    )
    campaign = load_campaign(path)
    body = campaign.call_body(campaign.contacts[0], metadata={"dialer_attempt_id": 3})
    assert set(body) == {"destination", "assistant", "number_id"}
    assistant = body["assistant"]
    # autoescape is off: the text is spoken, not HTML
    assert assistant["first_message"] == "Hi O'Brien & Sons!"
    content = assistant["llm_config"]["messages"][0]["content"]
    assert content == "Speak to O'BRIEN & SONS about the <invoice>."
    assert assistant["metadata"] == {"source": "file", "dialer_attempt_id": 3}


def test_call_body_for_a_contact_lacking_a_variable_raises(tmp_path: Path) -> None:
    campaign = load_campaign(
        minimal(
            tmp_path,
            '[assistant_override]\nfirst_message = "Hi {{ name }}"\n',
            '[[contacts]]\nphone = "+31612345601"\nname = "A"\n',
        )
    )
    stranger = Contact(phone="+31612345609", source=tmp_path / "x.csv", line=9)
    with pytest.raises(CampaignError) as info:
        campaign.call_body(stranger)
    (problem,) = info.value.problems
    assert (problem.line, problem.field) == (9, "assistant_override.first_message")
    assert "name" in problem.message


def test_campaign_built_in_code_compiles_its_templates() -> None:
    campaign = Campaign(
        name="code",
        source=Path("code.toml"),
        assistant_id="a",
        assistant_override={"first_message": "Hello {{ name }}"},
    )
    contact = Contact(phone="+31612345601", variables={"name": "Ada"})
    assert campaign.call_body(contact)["assistant_override"] == {"first_message": "Hello Ada"}
    assert campaign.window == CallingWindow.default()
    assert campaign.retry == RetryPolicy.default()


# ---------------------------------------------------------------------------- templates


def test_sandbox_refuses_python_internals(tmp_path: Path) -> None:
    path = minimal(
        tmp_path,
        "[assistant_override]\n"
        'first_message = "{{ name.__class__.__mro__[1].__subclasses__() }}"\n',
        '[[contacts]]\nphone = "+31612345601"\nname = "x"\n',
    )
    with pytest.raises(CampaignError) as info:
        load_campaign(path)
    assert any("template error" in p.message for p in info.value.problems)


def test_missing_variables_are_all_named_and_collapsed_for_big_files(tmp_path: Path) -> None:
    rows = "\n".join(f"+316123456{i:02d},Person {i}," for i in range(30))
    write(tmp_path, "big.csv", "phone,name,dentist\n" + rows + "\n")
    path = minimal(
        tmp_path,
        'contacts_file = "big.csv"\n[assistant_override]\n'
        'first_message = "{{ name }}, {{ dentist }} and {{ room }}"\n',
        "",
    )
    with pytest.raises(CampaignError) as info:
        load_campaign(path)
    problems = info.value.problems
    assert len(problems) == 21  # 20 shown, then one summary of the other 10
    assert problems[0].line == 2
    assert "dentist, room" in problems[0].message
    assert "10 more" in problems[-1].message and "lines 22-31" in problems[-1].message


def test_guarded_optional_variable_is_fine(tmp_path: Path) -> None:
    write(tmp_path, "c.csv", "phone,name,dentist\n+31612345601,A,Dr. B\n+31612345602,C,\n")
    path = minimal(
        tmp_path,
        'contacts_file = "c.csv"\n[assistant_override]\n'
        'first_message = "Hi {{ name }}'
        '{% if dentist is defined %} from {{ dentist }}{% endif %}"\n',
        "",
    )
    campaign = load_campaign(path)
    first, second = (campaign.call_body(c)["assistant_override"] for c in campaign.contacts)
    assert first["first_message"] == "Hi A from Dr. B"
    assert second["first_message"] == "Hi C"


def test_dates_in_api_tables_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CampaignError) as info:
        load_campaign(minimal(tmp_path, "[assistant_override.metadata]\nsent = 2027-01-01\n"))
    (problem,) = info.value.problems
    assert (problem.line, problem.field) == (4, "assistant_override.metadata.sent")
    assert "JSON" in problem.message


def test_inline_contact_values_become_text_variables(tmp_path: Path) -> None:
    campaign = load_campaign(
        minimal(
            tmp_path,
            contacts='[[contacts]]\nphone = "+31612345601"\nvisits = 3\nvip = true\n'
            "since = 2020-01-31\n",
        )
    )
    assert dict(campaign.contacts[0].variables) == {
        "phone": "+31612345601",
        "visits": "3",
        "vip": "true",
        "since": "2020-01-31",
    }


# ---------------------------------------------------------------------------- contacts


def test_duplicate_numbers_keep_the_first_with_a_warning(tmp_path: Path) -> None:
    write(tmp_path, "c.csv", "phone,name\n+31612345601,First\n06 1234 5601,Second\n")
    campaign = load_campaign(
        minimal(tmp_path, 'contacts_file = "c.csv"\ndefault_region = "NL"\n', "")
    )
    assert [c.name for c in campaign.contacts] == ["First"]
    (warning,) = campaign.warnings
    assert warning.line == 3 and warning.field == "phone"
    assert "already a contact (line 2" in warning.message


def test_csv_with_bom_semicolons_and_multiline_cells_keeps_line_numbers(tmp_path: Path) -> None:
    text = '\ufeffPhone;Name;note\n+31612345601;Anna;"two\nlines"\n\n+31612345602;Bram;x\n'
    write(tmp_path, "c.csv", text.encode("utf-8"))
    campaign = load_campaign(minimal(tmp_path, 'contacts_file = "c.csv"', ""))
    anna, bram = campaign.contacts
    assert (anna.name, anna.line, anna.variables["note"]) == ("Anna", 2, "two\nlines")
    assert (bram.name, bram.line) == ("Bram", 5)


def test_misspelt_special_columns_are_warned_about(tmp_path: Path) -> None:
    write(tmp_path, "c.csv", "phone,timezon,appointment_day\n+31612345601,Europe/Paris,Monday\n")
    campaign = load_campaign(minimal(tmp_path, 'contacts_file = "c.csv"', ""))
    assert [w.field for w in campaign.warnings] == ["timezon"]
    assert "did you mean 'timezone'" in campaign.warnings[0].message
    assert campaign.contacts[0].timezone is None


def test_number_with_several_zones_warns_and_follows_unknown_timezone(tmp_path: Path) -> None:
    contacts = '[[contacts]]\nphone = "+61491570156"\nappointment_at = "2027-03-02 09:30"\n'
    skipped = load_campaign(minimal(tmp_path, "", '[[contacts]]\nphone = "+61491570156"\n'))
    assert [w.field for w in skipped.warnings] == ["contacts[0].phone"]
    campaign = load_campaign(
        minimal(
            tmp_path,
            'timezone = "Australia/Perth"\nunknown_timezone = "campaign"\n',
            contacts,
        )
    )
    assert campaign.warnings == ()
    # read in the campaign zone (Perth, UTC+8, no DST)
    assert campaign.contacts[0].timing.appointment_at == datetime(2027, 3, 2, 1, 30, tzinfo=UTC)


def test_contact_that_can_never_be_called_is_a_warning(tmp_path: Path) -> None:
    campaign = load_campaign(
        minimal(
            tmp_path,
            'call_before = "24h"\n',
            '[[contacts]]\nphone = "+31612345601"\n'
            'appointment_at = "2027-03-02 09:30"\ndeadline = "2027-03-01 08:00"\n',
        )
    )
    (warning,) = campaign.warnings
    assert "will expire without a call" in warning.message
    assert warning.line == 7


# ---------------------------------------------------------------------------- time


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2027-03-02T09:30:00+01:00", datetime(2027, 3, 2, 8, 30, tzinfo=UTC)),
        ("2027-03-02T09:30Z", datetime(2027, 3, 2, 9, 30, tzinfo=UTC)),
        ("2027-03-02 09:30", datetime(2027, 3, 2, 8, 30, tzinfo=UTC)),
        ("2027-07-02 09:30", datetime(2027, 7, 2, 7, 30, tzinfo=UTC)),  # summer time
        # 02:30 happens twice on 2027-10-31: the first (still summer time) is meant
        ("2027-10-31 02:30", datetime(2027, 10, 31, 0, 30, tzinfo=UTC)),
        (datetime(2027, 3, 2, 9, 30), datetime(2027, 3, 2, 8, 30, tzinfo=UTC)),
    ],
)
def test_parse_when(value: object, expected: datetime) -> None:
    assert parse_when(value, zone=AMS) == expected
    assert parse_when(value, zone=AMS).tzinfo is UTC


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2027-03-28 02:30", "does not exist"),
        ("2027-03-02", "without a time of day"),
        (date(2027, 3, 2), "without a time of day"),
        ("tomorrow", "is not a date and time"),
        (1700000000, "is not a date and time"),
    ],
)
def test_parse_when_refuses(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_when(value, zone=AMS)


def test_naive_time_without_any_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="no UTC offset"):
        parse_when("2027-03-02 09:30", zone=None)


# ---------------------------------------------------------------------------- schedule


def test_trigger_start_at(tmp_path: Path) -> None:
    campaign = load_campaign(minimal(tmp_path, "start_at = 2027-03-01T08:00:00+01:00"))
    trigger = campaign.trigger()
    assert isinstance(trigger, DateTrigger)
    assert trigger.run_date == datetime(2027, 3, 1, 7, 0, tzinfo=UTC)


def test_naive_start_at_is_campaign_local(tmp_path: Path) -> None:
    campaign = load_campaign(
        minimal(tmp_path, 'timezone = "America/New_York"\nstart_at = "2027-07-01 08:00"')
    )
    assert campaign.start_at == datetime(2027, 7, 1, 12, 0, tzinfo=UTC)


def test_trigger_cron_runs_in_the_campaign_zone(tmp_path: Path) -> None:
    campaign = load_campaign(
        minimal(tmp_path, 'timezone = "Europe/Amsterdam"\ncron = "0 9 * * mon-fri"')
    )
    trigger = campaign.trigger()
    assert isinstance(trigger, CronTrigger)
    # Saturday 2027-03-06 -> Monday 09:00 Amsterdam = 08:00 UTC
    fire = trigger.get_next_fire_time(None, datetime(2027, 3, 6, 12, tzinfo=UTC))
    assert fire is not None
    assert fire.astimezone(UTC) == datetime(2027, 3, 8, 8, 0, tzinfo=UTC)


def test_trigger_without_schedule_fires_now(tmp_path: Path) -> None:
    campaign = load_campaign(minimal(tmp_path))
    now = datetime(2027, 1, 1, 12, tzinfo=UTC)
    trigger = campaign.trigger(now=now)
    assert isinstance(trigger, DateTrigger) and trigger.run_date == now


# ---------------------------------------------------------------------------- the rest


def test_defaults_when_nothing_is_said(tmp_path: Path) -> None:
    campaign = load_campaign(minimal(tmp_path))
    assert campaign.window == CallingWindow.default()
    assert campaign.retry == RetryPolicy.default()
    assert campaign.unknown_timezone == "skip"
    assert campaign.api_key_name == "default"
    assert campaign.suppressed == frozenset()


def test_retry_tables_change_only_what_they_say(tmp_path: Path) -> None:
    campaign = load_campaign(
        minimal(
            tmp_path,
            '[retry]\nmax_attempts = 5\nno_answer = { after = "15s" }\nvoicemail = { max = 0 }\n',
        )
    )
    default = RetryPolicy.default().rules
    rules = campaign.retry.rules
    assert campaign.retry.max_attempts == 5
    assert rules[Outcome("no_answer")] == RetryRule(
        after=timedelta(seconds=15),
        max=default[Outcome("no_answer")].max,
        backoff=default[Outcome("no_answer")].backoff,
        jitter=default[Outcome("no_answer")].jitter,
    )
    assert rules[Outcome("voicemail")].max == 0
    assert rules[Outcome("busy")] == default[Outcome("busy")]


def test_definition_hash_covers_the_csv(tmp_path: Path) -> None:
    csv_path = write(tmp_path, "c.csv", "phone\n+31612345601\n")
    path = minimal(tmp_path, 'contacts_file = "c.csv"', "")
    first = load_campaign(path).definition_hash
    assert load_campaign(path).definition_hash == first
    csv_path.write_text("phone\n+31612345602\n", encoding="utf-8")
    assert load_campaign(path).definition_hash != first


def test_window_and_key_options(tmp_path: Path) -> None:
    campaign = load_campaign(
        minimal(
            tmp_path,
            'key = "clinic-north"\n[window]\ndays = ["sat", "sun"]\n'
            'hours = ["20:00-02:00"]\nholidays = ["US-CA"]\nskip_dates = ["2027-12-24"]\n'
            'min_time_before_close = "0s"\n',
        )
    )
    assert campaign.api_key_name == "clinic-north"
    window = campaign.window
    assert window.days == frozenset({5, 6})
    assert window.ranges == (TimeRange(start=time(20), end=time(2)),)
    assert window.holiday_regions == ("US-CA",)
    assert window.skip_dates == frozenset({date(2027, 12, 24)})
    assert window.min_time_before_close == timedelta(0)


def test_suppression_files_of_the_campaign(tmp_path: Path) -> None:
    write(tmp_path, "dnc.csv", "phone,reason\n+31612345601,asked\n")
    write(tmp_path, "dnc.txt", "# list\n06 1234 5602  # phoned in\n\n")
    campaign = load_campaign(
        minimal(tmp_path, 'default_region = "NL"\nsuppression_files = ["dnc.csv", "dnc.txt"]')
    )
    assert campaign.suppressed == frozenset({"+31612345601", "+31612345602"})


def test_a_dnc_entry_without_its_plus_blocks_the_international_number_too(
    tmp_path: Path,
) -> None:
    # "4915123456789" as a CRM exports +49 1512 3456789; read in DE alone, it is another valid
    # number (+49 4915123456789), and the person on the list would be called
    write(tmp_path, "dnc.txt", "4915123456789\n06 1234 5602\n")
    campaign = load_campaign(
        minimal(tmp_path, 'default_region = "DE"\nsuppression_files = ["dnc.txt"]')
    )
    assert "+4915123456789" in campaign.suppressed
    assert "+494915123456789" in campaign.suppressed  # the national reading stays blocked too


@pytest.mark.parametrize("region", [None, "NL"])
def test_a_dnc_entry_its_region_cannot_read_stays_an_error(
    tmp_path: Path, region: str | None
) -> None:
    # "2015111703" is a US number without its +1; with a "+" it would be an Egyptian one, and
    # blocking that stranger instead would call the person who asked not to be called
    write(tmp_path, "dnc.txt", "2015111703\n")
    settings = f'default_region = "{region}"\n' if region else ""
    with pytest.raises(CampaignError) as info:
        load_campaign(minimal(tmp_path, settings + 'suppression_files = ["dnc.txt"]'))
    assert [(Path(p.file).name, p.line, p.field) for p in info.value.problems] == [
        ("dnc.txt", 1, "phone")
    ]


def test_validate_paths_flags_names_used_twice_and_missing_files(tmp_path: Path) -> None:
    one = minimal(tmp_path)
    two = write(tmp_path, "d.toml", one.read_text().replace("[[contacts]]", "\n[[contacts]]"))
    problems = validate_paths([one, two, tmp_path / "nope.toml"])
    assert [(Path(p.file).name, p.field, p.line) for p in problems] == [
        ("d.toml", "name", 1),
        ("nope.toml", "file", None),
    ]
    assert "already used by" in problems[0].message
    assert "not found" in problems[1].message


def test_problem_text_names_file_line_field_and_accepted(tmp_path: Path) -> None:
    with pytest.raises(CampaignError) as info:
        load_campaign(minimal(tmp_path, 'call_before = "soon"'))
    text = str(info.value)
    assert text.startswith(f"{tmp_path / 'c.toml'}:3: call_before: ")
    assert "(accepted: " in text


# ---------------------------------------------------------------------------- line finding

TRICKY_TOML = '''a = "quote \\" inside # not a comment"
"dotted.key" = 1
b = \'\'\'
[not_a_table]
x = 1
\'\'\'
c = """ends with a quote"""""
d = """\\\\"""
e = 1979-05-27 07:32:00 # comment
f = [ [1, 2], { g = "h", i = [3,
  4] }, # comment
  "j" ]
site."google.com".x = true
[ spaced . table ]
k = 1
[[arr]]
[[arr.sub]]
l = 1
[[arr.sub]]
m = 2
[[arr]]
[arr.t]
n = 3
'''


def _leaves(node: object, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in _leaves(v, (*path, k))]
    if isinstance(node, list):
        return [path] + [leaf for i, v in enumerate(node) for leaf in _leaves(v, (*path, i))]
    return [path]


def test_lines_are_found_past_strings_comments_and_nested_tables(tmp_path: Path) -> None:
    source = TomlSource.read(write(tmp_path, "t.toml", TRICKY_TOML))
    assert isinstance(source, TomlSource)
    assert source.data["b"].startswith("[not_a_table]")
    expected = {
        ("a",): 1, ("dotted.key",): 2, ("b",): 3, ("c",): 7, ("d",): 8, ("e",): 9,
        ("f", 1, "i", 1): 11, ("f", 2): 12, ("site", "google.com", "x"): 13,
        ("spaced", "table", "k"): 15, ("arr", 0, "sub", 1, "m"): 20, ("arr", 1, "t", "n"): 23,
    }  # fmt: skip
    assert {path: source.lines.get(path) for path in expected} == expected
    assert ("not_a_table",) not in source.lines
    assert source.line(("arr", 1, "t", "missing")) == 22  # nearest enclosing table
    assert source.line(("nowhere",)) == 1


@pytest.mark.parametrize(
    "path",
    [
        *sorted(CAMPAIGNS.glob("*.toml")),
        CAMPAIGNS.parent / "config.example.toml",
        *sorted((Path(__file__).parent / "malformed").glob("*.toml")),
    ],
    ids=lambda p: p.name,
)
def test_every_value_of_the_repository_toml_files_has_its_own_line(path: Path) -> None:
    source = TomlSource.read(path)
    if not isinstance(source, TomlSource):
        return  # the corpus' deliberately unreadable files
    missing = [leaf for leaf in _leaves(source.data) if leaf not in source.lines]
    assert missing == []
