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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, UndefinedError, meta
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


@dataclass(frozen=True)
class _Compiled:
    template: Template
    names: frozenset[str]  # every variable the template mentions, for the "missing" message


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
                    compiled[path] = _Compiled(
                        template=_ENV.from_string(parsed),
                        names=frozenset(meta.find_undeclared_variables(parsed)),
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
                try:
                    return item.template.render(variables)
                except UndefinedError as exc:
                    missing = sorted(item.names - set(variables))
                    if missing:
                        names = ", ".join(missing)
                        message = (
                            f"the contact has no value for {names} "
                            "(add the column/key, or fill it in for this contact)"
                        )
                    else:
                        message = f"template error: {exc.message}"
                    issues.append(TemplateIssue(path=path, message=message))
                except TemplateError as exc:
                    issues.append(TemplateIssue(path=path, message=f"template error: {exc}"))
                except (TypeError, ValueError, ArithmeticError) as exc:
                    # e.g. {{ count + 1 }} on a string column: the contact's data, not the code
                    issues.append(TemplateIssue(path=path, message=f"template error: {exc}"))
                return node
            if isinstance(node, Mapping):
                return {key: walk(item, (*path, str(key))) for key, item in node.items()}
            if isinstance(node, list | tuple):
                return [walk(item, (*path, index)) for index, item in enumerate(node)]
            return node

        return walk(self._value, (self.root,)), issues
