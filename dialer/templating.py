"""Per-contact ``{{ var }}`` templates inside the assistant tables of a campaign.

VoiceDock has no placeholder mechanism for ``POST /calls/outbound`` (voicedock-api.md §4.4), so
the dialer renders names, dates and the like into ``first_message``, ``llm_config.messages`` and
any other string itself, before the call is placed.

    >>> tree = TemplateTree.compile({"first_message": "Hi {{ name }}"}, root="assistant_override")
    >>> tree.render({"name": "Ada"})
    ({'first_message': 'Hi Ada'}, [])
    >>> tree.render({})[1][0].field
    'assistant_override.first_message'

Rules:

- Templates run in Jinja2's SandboxedEnvironment: a campaign file cannot reach Python objects.
- StrictUndefined: a variable a contact lacks is an error naming the variable, never "".
- Autoescaping is off: the output is spoken text and prompts, not HTML.
- Only strings are templates; keys, numbers and booleans pass through unchanged.
- Each string is compiled once per campaign; rendering per contact reuses the compiled form.
- Checking a contact (:meth:`TemplateTree.check`, the campaign loader's per-row test) renders
  only templates whose outcome depends on the values; a plain ``Hi {{ name }}`` fails exactly
  when a variable is missing, so for it a set difference gives the same answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import (
    StrictUndefined,
    TemplateError,
    TemplateSyntaxError,
    UndefinedError,
    meta,
    nodes,
)
from jinja2.environment import Template
from jinja2.sandbox import SandboxedEnvironment

from dialer.tomlsource import KeyPath, dotted

__all__ = ["TemplateIssue", "TemplateTree"]

_ENV = SandboxedEnvironment(
    undefined=StrictUndefined,
    autoescape=False,
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class TemplateIssue:
    """A template that does not compile, or does not render for one contact."""

    path: tuple[
        str | int, ...
    ]  # e.g. ("assistant_override", "llm_config", "messages", 0, "content")
    message: str

    @property
    def field(self) -> str:
        """The dotted form, e.g. ``assistant_override.llm_config.messages[0].content``."""
        return dotted(self.path)


#: filters that turn any string into a string without failing (a plain substitution may use them)
_TOTAL_STR_FILTERS = frozenset({"upper", "lower", "title", "capitalize", "trim"})


@dataclass(frozen=True)
class _Compiled:
    template: Template
    names: frozenset[str]  # every variable the template mentions, for the "missing" message
    #: text and ``{{ variable }}`` (optionally ``| upper``…) only: with string values it
    #: renders unless a variable is missing, so checking a contact needs no rendering
    plain: bool = False


def _is_plain(parsed: nodes.Template) -> bool:
    """Whether rendering can fail only by a missing variable (see ``_Compiled.plain``).

    A name that is a Jinja global (``{{ range }}``) is not among the undeclared variables
    and renders whether the contact has it or not, so it needs no exception here.
    """

    def plain_expr(node: nodes.Node) -> bool:
        if isinstance(node, nodes.Name):
            return node.ctx == "load"
        if isinstance(node, nodes.Filter):
            return (
                node.name in _TOTAL_STR_FILTERS
                and node.node is not None
                and not (node.args or node.kwargs or node.dyn_args or node.dyn_kwargs)
                and plain_expr(node.node)
            )
        return False

    for statement in parsed.body:
        if not isinstance(statement, nodes.Output):
            return False
        for node in statement.nodes:
            if not isinstance(node, nodes.TemplateData) and not plain_expr(node):
                return False
    return True


class TemplateTree:
    """A nested table whose strings may be templates, compiled once.

    ``compile`` never raises: syntax errors are kept in :attr:`issues` so the campaign loader
    can report them together with everything else.
    """

    def __init__(
        self,
        value: Any,
        compiled: Mapping[KeyPath, _Compiled],
        issues: tuple[TemplateIssue, ...],
        root: str,
    ) -> None:
        self._value = value
        self._compiled = compiled
        self.issues = issues
        self.root = root

    @classmethod
    def compile(cls, value: Mapping[str, Any], *, root: str) -> TemplateTree:
        compiled: dict[KeyPath, _Compiled] = {}
        issues: list[TemplateIssue] = []

        def walk(node: Any, path: KeyPath) -> None:
            if isinstance(node, str):
                # Strings without Jinja syntax are left alone: cheaper, and a literal "{" in
                # a prompt stays a literal.
                if "{{" not in node and "{%" not in node and "{#" not in node:
                    return
                try:
                    parsed = _ENV.parse(node)
                    names = frozenset(meta.find_undeclared_variables(parsed))
                    compiled[path] = _Compiled(
                        template=_ENV.from_string(parsed),
                        names=names,
                        plain=_is_plain(parsed),
                    )
                except TemplateSyntaxError as exc:
                    where = f" (line {exc.lineno} of the text)" if exc.lineno > 1 else ""
                    issues.append(
                        TemplateIssue(path=path, message=f"template error{where}: {exc.message}")
                    )
            elif isinstance(node, Mapping):
                for key, item in node.items():
                    walk(item, (*path, str(key)))
            elif isinstance(node, list | tuple):
                for index, item in enumerate(node):
                    walk(item, (*path, index))

        walk(value, (root,))
        return cls(value, compiled, tuple(issues), root)

    @property
    def variables(self) -> frozenset[str]:
        """Every variable any template in the tree mentions."""
        names: set[str] = set()
        for item in self._compiled.values():
            names |= item.names
        return frozenset(names)

    def render(self, variables: Mapping[str, str]) -> tuple[Any, list[TemplateIssue]]:
        """The tree with every template rendered for one contact, and what went wrong.

        On any issue the returned tree is still complete, with the failing strings left as
        their template source; callers must not send it.
        """
        issues: list[TemplateIssue] = []

        def walk(node: Any, path: KeyPath) -> Any:
            if isinstance(node, str):
                item = self._compiled.get(path)
                if item is None:
                    return node
                rendered = _render(item, path, variables, issues)
                return node if rendered is None else rendered
            if isinstance(node, Mapping):
                return {key: walk(item, (*path, str(key))) for key, item in node.items()}
            if isinstance(node, list | tuple):
                return [walk(item, (*path, index)) for index, item in enumerate(node)]
            return node

        return walk(self._value, (self.root,)), issues

    def check(self, variables: Mapping[str, str]) -> list[TemplateIssue]:
        """The issues :meth:`render` would report for these (string) variables, in its order.

        The loader checks every contact of a campaign, a million rows for a large CSV; a plain
        template is checked by a set difference (~0.2 µs) instead of a render (~20 µs). The
        others are rendered, so a value-dependent failure (``{{ count + 1 }}``) is still found.
        """
        issues: list[TemplateIssue] = []
        # the tree walk visits template strings in the order compile() stored them
        for path, item in self._compiled.items():
            if item.plain:
                if not item.names.issubset(variables.keys()):
                    issues.append(TemplateIssue(path=path, message=_missing(item, variables)))
            else:
                _render(item, path, variables, issues)
        return issues


_MISSING_HINT = "(add the column/key, or fill it in for this contact)"


def _missing(item: _Compiled, variables: Mapping[str, str]) -> str:
    names = ", ".join(sorted(item.names - set(variables)))
    return f"the contact has no value for {names} {_MISSING_HINT}"


def _render(
    item: _Compiled, path: KeyPath, variables: Mapping[str, str], issues: list[TemplateIssue]
) -> str | None:
    """One template rendered, or None with the reason appended to ``issues``."""
    try:
        return item.template.render(variables)
    except UndefinedError as exc:
        if item.names - set(variables):
            message = _missing(item, variables)
        else:
            message = f"template error: {exc.message}"
        issues.append(TemplateIssue(path=path, message=message))
    except TemplateError as exc:
        issues.append(TemplateIssue(path=path, message=f"template error: {exc}"))
    except Exception as exc:
        # e.g. {{ count + 1 }} on a string column, truncate() with too small a length, a
        # recursive macro: the campaign's template or the contact's data, never the code
        issues.append(
            TemplateIssue(path=path, message=f"template error: {type(exc).__name__}: {exc}")
        )
    return None
