"""The fields VoiceDock documents for an assistant in ``POST /calls/outbound``, in one place.

A campaign's ``[assistant]`` (transient mode) and ``[assistant_override]`` (hybrid mode) are
sent as they are; VoiceDock answers a body it does not accept with a 400/422 only once the
daemon dials. :func:`check_assistant` finds, before any call, the keys the reference does not
know (with the closest known key: ``frist_message`` -> ``first_message``) and the values whose
type the reference gives and that have another type. What it finds are warnings: the reference
is paraphrased from the docs and the SDK and may lag behind VoiceDock (``dialer validate
--strict`` makes them errors).

    >>> [f.message for f in check_assistant({"frist_message": "Hi"}, ("assistant_override",))]
    ["unknown key 'frist_message' (did you mean 'first_message'?)"]

Source: /work/shared/voicedock-api.md §4.3 (``TransientAssistant``, from the SDK's types, which
say they are generated from the OpenAPI spec), §4.2 and §10. What it leaves UNCONFIRMED:

- ``stt_config`` takes "provider-specific options" beyond the listed ones: its other keys are
  not flagged (``OPEN``).
- ``tts_config`` and ``llm_config`` are listed field by field for the providers the SDK knew;
  newer providers (``google``, ``xai``, ``openai_live``) may take fields not listed here.
- ``analysis_plan`` is only shown in assistant-request examples; ``structured_data_plan``'s
  members (``enabled``, ``schema`` or ``template_id``, ``messages``) are not typed there.
- ``metadata`` is free-form by design (echoed back in webhooks).
- ``voicemail_message`` may be null in JSON; TOML has no null, so only a string is checked.
- A tool's ``function.parameters`` is a JSON Schema object, not checked further.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from dialer.tomlsource import KeyPath, did_you_mean

__all__ = [
    "ASSISTANT",
    "OPEN",
    "Field",
    "SchemaFinding",
    "check_assistant",
]

Kind = Literal["string", "number", "boolean", "object", "array", "any"]

#: an object whose keys are not listed (free-form, or provider-specific): none is flagged
OPEN: Mapping[str, Field] = {}


@dataclass(frozen=True)
class Field:
    """One documented field: its JSON type and, for an object, its fields (``OPEN`` when
    free-form), for an array, the field of each item; ``choices`` for a documented enum."""

    kind: Kind
    fields: Mapping[str, Field] | None = None
    items: Field | None = None
    choices: tuple[str, ...] = ()
    note: str = ""


_STRING = Field("string")
_NUMBER = Field("number")
_BOOLEAN = Field("boolean")
_FREE = Field("object", OPEN)

_TOOL = Field(
    "object",
    {
        "type": Field("string", choices=("function",)),
        "function": Field(
            "object",
            {"name": _STRING, "description": _STRING, "parameters": _FREE},
        ),
        "server": Field("object", {"url": _STRING, "secret": _STRING}),
        "async": _BOOLEAN,
    },
)

_LLM_CONFIG = Field(
    "object",
    {
        "provider": Field(
            "string",
            choices=(
                "openai",
                "xai",
                "mistral",
                "google",
                "xai_realtime",
                "google_realtime",
                "openai_live",
            ),
        ),
        "model": _STRING,
        "voice": _STRING,
        "temperature": _NUMBER,
        "messages": Field(
            "array",
            items=Field(
                "object",
                {
                    "role": Field("string", choices=("system", "user", "assistant")),
                    "content": _STRING,
                },
            ),
        ),
        "tools": Field("array", items=_TOOL),
    },
)

_STT_CONFIG = Field(
    "object",
    OPEN,  # "keyterms? + provider-specific options" (§4.3): other keys are legitimate
    note="provider-specific options are allowed",
)
#: the listed stt_config fields, typed although the table is open
_STT_TYPED = {
    "provider": _STRING,
    "model": _STRING,
    "language": _STRING,
    "keyterms": Field("array", items=_STRING),
}

_TTS_CONFIG = Field(
    "object",
    {
        "provider": _STRING,
        "voice_id": _STRING,
        "model": _STRING,
        "language": _STRING,
        "stability": _NUMBER,
        "similarity_boost": _NUMBER,
        "style": _NUMBER,
        "speed": _NUMBER,
        "use_speaker_boost": _BOOLEAN,
    },
)

#: ``TransientAssistant``: the body of ``assistant``, and (every field optional) of
#: ``assistant_override``
ASSISTANT: Mapping[str, Field] = {
    "first_message": _STRING,
    "llm_config": _LLM_CONFIG,
    "stt_config": _STT_CONFIG,
    "tts_config": _TTS_CONFIG,
    "max_duration_seconds": _NUMBER,
    "autonomous_silence_handling": _BOOLEAN,
    "silence_timeout_seconds": _NUMBER,
    "voicemail_detection": _BOOLEAN,
    "voicemail_message": _STRING,
    "webhook_url": _STRING,
    "webhook_secret": _STRING,
    "webhook_events": Field(
        "array",
        items=Field(
            "string",
            choices=("assistant-request", "tool-calls", "status-update", "end-of-call-report"),
        ),
    ),
    "metadata": _FREE,
    "analysis_plan": Field("object", {"structured_data_plan": _FREE}),
}

_TYPED_EVEN_IF_OPEN: Mapping[KeyPath, Mapping[str, Field]] = {("stt_config",): _STT_TYPED}

_KIND_WORDS: Mapping[Kind, str] = {
    "string": "a string",
    "number": "a number",
    "boolean": "true or false",
    "object": "a table",
    "array": "a list",
    "any": "any value",
}


@dataclass(frozen=True)
class SchemaFinding:
    """A key or value of an assistant table the reference does not document as it is."""

    path: KeyPath  # from the campaign file's root, e.g. ("assistant_override", "frist_message")
    message: str
    accepted: str | None = field(default=None)


def check_assistant(table: Mapping[str, Any], root: KeyPath) -> list[SchemaFinding]:
    """What in ``table`` (an ``[assistant]`` or ``[assistant_override]`` at ``root``) the
    reference does not document: unknown keys (nested too) and values of the wrong type."""
    findings: list[SchemaFinding] = []
    _check_object(table, ASSISTANT, root, (), findings)
    return findings


def _check_object(
    table: Mapping[str, Any],
    fields: Mapping[str, Field],
    root: KeyPath,
    inner: KeyPath,
    findings: list[SchemaFinding],
) -> None:
    typed = _TYPED_EVEN_IF_OPEN.get(inner, fields)
    for key, value in table.items():
        spec = typed.get(key)
        if spec is None:
            if fields is OPEN:
                continue
            findings.append(
                SchemaFinding(
                    (*root, *inner, key),
                    f"unknown key {key!r}" + did_you_mean(key, fields),
                    _known(fields, inner),
                )
            )
            continue
        _check_value(value, spec, root, (*inner, key), findings)


def _check_value(
    value: Any, spec: Field, root: KeyPath, inner: KeyPath, findings: list[SchemaFinding]
) -> None:
    if not _has_kind(value, spec.kind):
        findings.append(
            SchemaFinding(
                (*root, *inner),
                f"is {_shown(value)}, where VoiceDock documents {_KIND_WORDS[spec.kind]}",
            )
        )
        return
    if (
        spec.choices
        and isinstance(value, str)
        and value not in spec.choices
        and not _templated(value)
    ):
        findings.append(
            SchemaFinding(
                (*root, *inner),
                f"{value!r} is not a documented value" + did_you_mean(value, spec.choices),
                "one of: " + ", ".join(spec.choices),
            )
        )
    if spec.kind == "object" and spec.fields is not None:
        _check_object(value, spec.fields, root, inner, findings)
    elif spec.kind == "array" and spec.items is not None:
        for index, item in enumerate(value):
            _check_value(item, spec.items, root, (*inner, index), findings)


def _has_kind(value: Any, kind: Kind) -> bool:
    match kind:
        case "string":
            return isinstance(value, str)
        case "number":
            return isinstance(value, int | float) and not isinstance(value, bool)
        case "boolean":
            return isinstance(value, bool)
        case "object":
            return isinstance(value, dict)
        case "array":
            return isinstance(value, list)
        case "any":
            return True


def _templated(value: str) -> bool:
    return "{{" in value or "{%" in value


def _known(fields: Mapping[str, Field], inner: KeyPath) -> str:
    where = ".".join(str(p) for p in inner if isinstance(p, str)) or "the assistant"
    return f"a field VoiceDock documents for {where}: " + ", ".join(fields)


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {value!r}"
    return f"{value!r}"
