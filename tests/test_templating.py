"""TemplateTree.check (the loader's per-contact test) reports exactly what render would."""

from __future__ import annotations

import pytest

from dialer.templating import TemplateTree

TEMPLATES = [
    "Hi {{ name }}",
    "Hi {{ name }}, {{ slot }} at {{ clinic }}",
    "{{ name | upper }} {{ name|title }} {{ slot | trim }}",
    "{{ name | default('there') }}",
    "Hi {{ name }}{% if slot is defined %} at {{ slot }}{% endif %}",
    "{% if slot %}{{ slot }}{% endif %}",
    "{{ count + 1 }}",
    "{{ count | int + 1 }}",
    "{{ name[0] }}",
    "{{ range }} {{ name }}",
    "{{ name.upper() }}",
    "{# a comment #}{{ name }}",
    "{{ 'x' ~ name }}",
    "{% for x in [1, 2] %}{{ name }}{% endfor %}",
]
CONTACTS = [
    {},
    {"name": "Ada"},
    {"name": "Ada", "slot": "9:00"},
    {"name": "Ada", "slot": "9:00", "clinic": "North", "count": "3"},
    {"slot": "", "count": "x"},
]


@pytest.mark.parametrize("template", TEMPLATES)
def test_check_reports_what_render_reports(template: str) -> None:
    tree = TemplateTree.compile(
        {"first_message": template, "llm_config": {"messages": [{"content": template}]}},
        root="assistant_override",
    )
    assert tree.issues == ()
    for variables in CONTACTS:
        assert tree.check(variables) == tree.render(variables)[1], variables


def test_plain_templates_are_not_rendered_to_be_checked() -> None:
    plain = TemplateTree.compile({"a": "Hi {{ name | upper }}"}, root="r")
    not_plain = TemplateTree.compile({"a": "{{ n + 1 }}", "b": "{{ name.upper() }}"}, root="r")
    assert all(item.plain for item in plain._compiled.values())
    assert not any(item.plain for item in not_plain._compiled.values())
