"""The malformed-input corpus: every file in tests/malformed/ must be refused, and every
problem must say where (file, line) and what (dotted field), as listed in expected.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from dialer.campaign import load_campaign, validate_paths
from dialer.errors import CampaignError, Problem

CORPUS = Path(__file__).parent / "malformed"
EXPECTED: dict[str, list[list[object]]] = tomllib.loads(
    (CORPUS / "expected.toml").read_text(encoding="utf-8")
)
CAMPAIGNS = sorted(p for p in CORPUS.glob("*.toml") if p.name != "expected.toml")


def _listing(problems: list[Problem]) -> str:
    return "\n".join(f"  {p.line}|{p.field}|{p}" for p in problems)


def test_the_corpus_is_large_and_every_file_has_expectations() -> None:
    assert len(CAMPAIGNS) >= 25
    assert {p.name for p in CAMPAIGNS} == set(EXPECTED)
    assert len(list(CORPUS.glob("*.csv"))) >= 5


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_malformed_file_is_refused_with_located_problems(name: str) -> None:
    with pytest.raises(CampaignError) as info:
        load_campaign(CORPUS / name)
    problems = info.value.problems
    for problem in problems:
        assert problem.file, problem
        assert problem.line is not None and problem.line >= 1, problem
        assert problem.field, problem
        assert f"{problem.file}:{problem.line}: {problem.field}: " in str(problem)
    for line, field, text, *other in EXPECTED[name]:
        wanted_file = other[0] if other else name
        assert any(
            Path(p.file).name == wanted_file
            and p.line == line
            and p.field == field
            and str(text) in p.message
            for p in problems
        ), f"expected {wanted_file}:{line} {field} ~ {text!r}; got:\n{_listing(problems)}"


def test_every_problem_of_one_file_is_reported_together() -> None:
    with pytest.raises(CampaignError) as info:
        load_campaign(CORPUS / "many-problems.toml")
    fields = {p.field for p in info.value.problems}
    assert {
        "timezone",
        "max_concurrent_calls",
        "call_before",
        "window.days[0]",
        "contacts[0].phone",
    } <= fields


def test_validate_paths_reports_every_file_in_one_run() -> None:
    problems = validate_paths(CAMPAIGNS)
    files_with_problems = {Path(p.file).stem.split(".")[0] for p in problems}
    # each campaign is named by at least one problem, in its own file or in its CSV / DNC list
    for path in CAMPAIGNS:
        assert path.stem in files_with_problems, path.name
    assert all(p.line is not None for p in problems)


def test_problems_are_sorted_by_line_within_a_file() -> None:
    with pytest.raises(CampaignError) as info:
        load_campaign(CORPUS / "many-problems.toml")
    lines = [p.line or 0 for p in info.value.problems]
    assert lines == sorted(lines)
