"""The kit's message_to_json is MLflow's, byte for byte, for every message of MLflow's API.

Every message type of MLflow's tracking, registry, artifacts and webhooks services is
filled at random (nested messages, timestamps, repeated fields, maps, oneofs, NaN, ±inf, -0, 64-bit
ints, quotes, control characters and non-ASCII text, bytes, 32-bit floats) and both
functions write it; the texts must be equal. The responses the server writes most (runs,
experiments, metric histories, registered models) must take the kit's path, not the
fallback to MLflow's function.
"""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from mlflow.protos import mlflow_artifacts_pb2, model_registry_pb2, service_pb2, webhooks_pb2
from mlflow.utils.proto_json_utils import message_to_json as mlflows

from mlops_platform import proto_json

DOUBLES = [math.nan, math.inf, -math.inf, -0.0, 0.0, 5e-324, 1.7976931348623157e308, 0.1, 1e16]
STRINGS = ["", "loss", 'quo"te', "back\\slash", "ünï/cödé ✓", "tab\tnew\nline\x01", "😀"]
INT64 = [0, -1, 2**63 - 1, -(2**63), 2**53 + 1, 1_700_000_000_000]


def _messages(*modules: Any) -> list[type[Message]]:
    out: list[type[Message]] = []

    def walk(cls: type[Message]) -> None:
        out.append(cls)
        for nested in cls.DESCRIPTOR.nested_types:
            if not nested.GetOptions().map_entry:
                walk(getattr(cls, nested.name))

    for module in modules:
        for name in module.DESCRIPTOR.message_types_by_name:
            walk(getattr(module, name))
    return out


MESSAGES = _messages(service_pb2, model_registry_pb2, mlflow_artifacts_pb2, webhooks_pb2)


def _scalar(field: FieldDescriptor, rng: random.Random) -> Any:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return rng.choice(STRINGS)
    if kind == FieldDescriptor.TYPE_BYTES:
        return rng.randbytes(rng.randint(0, 5))
    if kind == FieldDescriptor.TYPE_BOOL:
        return rng.random() < 0.5
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        value = rng.choice([*DOUBLES, rng.uniform(-1e6, 1e6)])
        return value if kind == FieldDescriptor.TYPE_DOUBLE or abs(value) < 1e38 else 1.5
    if kind == FieldDescriptor.TYPE_ENUM:
        return rng.choice(field.enum_type.values).number
    unsigned = kind in (
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_FIXED64,
    )
    if field.cpp_type in (FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64):
        value = rng.choice(INT64)
    else:
        value = rng.choice([0, -1, 2**31 - 1, -(2**31), 7])
    return abs(value) if unsigned else value


def fill(message: Message, rng: random.Random, depth: int = 0) -> Message:
    for field in message.DESCRIPTOR.fields:
        if rng.random() < 0.35:
            continue
        is_message = field.type == FieldDescriptor.TYPE_MESSAGE
        if is_message and field.message_type.full_name.startswith("google.protobuf."):
            # Well-known types (Timestamp, Struct, ...) have rules of their own that
            # random values break in MLflow's writer too; the kit's hands them to it.
            if field.message_type.full_name == "google.protobuf.Timestamp":
                getattr(message, field.name).FromMilliseconds(rng.randint(0, 2**41))
            continue
        if is_message and field.message_type.GetOptions().map_entry:
            target = getattr(message, field.name)
            key_field = field.message_type.fields_by_name["key"]
            value_field = field.message_type.fields_by_name["value"]
            for _ in range(rng.randint(0, 2)):
                key = _scalar(key_field, rng)
                if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                    if depth < 3:
                        fill(target[key], rng, depth + 1)
                else:
                    target[key] = _scalar(value_field, rng)
        elif field.is_repeated:
            target = getattr(message, field.name)
            for _ in range(rng.randint(0, 3)):
                if is_message:
                    if depth < 3:
                        fill(target.add(), rng, depth + 1)
                else:
                    target.append(_scalar(field, rng))
        elif is_message:
            if depth < 3:
                fill(getattr(message, field.name), rng, depth + 1)
            else:
                getattr(message, field.name).SetInParent()
        else:
            setattr(message, field.name, _scalar(field, rng))
    return message


@pytest.mark.parametrize("cls", MESSAGES, ids=lambda c: c.DESCRIPTOR.full_name)
def test_every_message_type_is_written_as_mlflow_writes_it(cls: type[Message]) -> None:
    rng = random.Random(cls.DESCRIPTOR.full_name)
    for case in range(12):
        message = fill(cls(), rng)
        assert proto_json.message_to_json(message) == mlflows(message), (case, message)


@pytest.mark.parametrize(
    "cls",
    [
        service_pb2.SearchRuns.Response,
        service_pb2.GetRun.Response,
        service_pb2.SearchExperiments.Response,
        service_pb2.GetMetricHistory.Response,
        model_registry_pb2.SearchRegisteredModels.Response,
        model_registry_pb2.SearchModelVersions.Response,
    ],
    ids=lambda c: c.DESCRIPTOR.full_name,
)
def test_the_busy_responses_take_the_kits_path(cls: type[Message]) -> None:
    """Filled without maps and bytes (none of these responses has one on its path), the
    kit's writer itself must answer, not the fallback."""
    rng = random.Random(cls.DESCRIPTOR.full_name)
    written = 0
    for _ in range(20):
        message = fill(cls(), rng)
        try:
            text = proto_json._message(message, 0)
        except proto_json._Unsupported:
            continue
        assert text == mlflows(message)
        written += 1
    assert written >= 10, f"{cls.DESCRIPTOR.full_name}: the kit's writer answered {written}/20"


def test_other_arguments_and_non_messages_go_to_mlflow() -> None:
    message = service_pb2.GetRun.Response()
    message.run.info.run_id = "abc"
    compact = proto_json.message_to_json(message, pretty=False)
    assert compact == mlflows(message, pretty=False)
    assert "\n" not in compact
