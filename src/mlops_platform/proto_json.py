"""MLflow's ``message_to_json``, byte for byte, without its three passes.

MLflow answers its REST API with ``message_to_json(response)``: protobuf's
``MessageToDict`` (int64 fields become strings), a second walk of the message that turns
the int64 strings back into numbers, and ``json.dumps(indent=2)``, whose indenting encoder
is json's pure-Python one. Listing 100 runs, that was 40 % of the tracking server's time
for the request (py-spy). :func:`message_to_json` writes the same text in one walk:
fields in the order ``ListFields`` gives them (by field number, as ``MessageToDict``),
proto field names, enum values by name, int64 as numbers, ``NaN``/``Infinity`` as
strings, ``ensure_ascii`` strings, two-space indentation.

Anything it does not write exactly as MLflow does (map fields, extensions, protobuf's
well-known types, bytes, 32-bit floats, an enum number without a name, other keyword
arguments) goes through MLflow's own function. ``tests/unit/test_proto_json.py``
compares the bytes with MLflow's for random messages of every type of MLflow's service.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

_string = json.encoder.encode_basestring_ascii  # what json.dumps uses for a str
# Written as numbers: MessageToDict makes the 64-bit ones strings, and MLflow's second
# walk turns those back into numbers.
_INTEGERS = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_SFIXED32,
}
_SPECIAL = {math.inf: '"Infinity"', -math.inf: '"-Infinity"'}


class _Unsupported(Exception):
    """A field this writer does not render as MLflow does: MLflow's function takes over."""


def _well_known(descriptor: Any) -> bool:
    """Protobuf's own types (Timestamp, Struct, ...), which MessageToDict writes its way."""
    return str(descriptor.full_name).startswith("google.protobuf.")


def _double(value: float) -> str:
    if value != value:
        return '"NaN"'
    return _SPECIAL.get(value) or float.__repr__(value)


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _enum(field: FieldDescriptor) -> Callable[[int], str]:
    names = {}
    for named in field.enum_type.values:
        if not named.GetOptions().ListFields():  # a json_name option: protobuf's own rule
            names[named.number] = _string(named.name)

    def render(value: int) -> str:
        text = names.get(value)
        if text is None:
            raise _Unsupported(field.full_name)
        return text

    return render


# How each field is written, worked out once per field: its key text, whether it is
# repeated, and a function from one value to its text (None: a nested message).
_Plan = tuple[str, bool, Callable[[Any], str] | None]
_plans: dict[FieldDescriptor, _Plan] = {}


def _plan(field: FieldDescriptor) -> _Plan:
    plan = _plans.get(field)
    if plan is not None:
        return plan
    kind = field.type
    render: Callable[[Any], str] | None
    if field.is_extension:
        raise _Unsupported(field.full_name)
    if kind == FieldDescriptor.TYPE_MESSAGE:
        nested = field.message_type
        if nested.GetOptions().map_entry or _well_known(nested):
            raise _Unsupported(field.full_name)
        render = None
    elif kind == FieldDescriptor.TYPE_STRING:
        render = _string
    elif kind in _INTEGERS:
        render = int.__repr__
    elif kind == FieldDescriptor.TYPE_DOUBLE:
        render = _double
    elif kind == FieldDescriptor.TYPE_BOOL:
        render = _bool
    elif kind == FieldDescriptor.TYPE_ENUM:
        render = _enum(field)
    else:  # bytes, 32-bit float, group
        raise _Unsupported(field.full_name)
    plan = (_string(field.name) + ": ", field.is_repeated, render)
    _plans[field] = plan
    return plan


def _message(message: Message, depth: int) -> str:
    fields = message.ListFields()
    if not fields:
        return "{}"
    inner = "\n" + "  " * (depth + 1)
    parts = []
    for field, value in fields:
        key, repeated, render = _plan(field)
        if repeated:
            pad = inner + "  "
            if render is None:
                items = [_message(item, depth + 2) for item in value]
            else:
                items = [render(item) for item in value]
            parts.append(inner + key + "[" + pad + ("," + pad).join(items) + inner + "]")
        elif render is None:
            parts.append(inner + key + _message(value, depth + 1))
        else:
            parts.append(inner + key + render(value))
    return "{" + ",".join(parts) + "\n" + "  " * depth + "}"


def message_to_json(message: Any, **kwargs: Any) -> str:
    """``mlflow.utils.proto_json_utils.message_to_json(message)``'s exact text."""
    from mlflow.utils import proto_json_utils

    if not kwargs and isinstance(message, Message) and not _well_known(message.DESCRIPTOR):
        try:
            return _message(message, 0)
        except _Unsupported:
            pass
    return str(proto_json_utils.message_to_json(message, **kwargs))
