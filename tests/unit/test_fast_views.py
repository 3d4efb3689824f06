"""The kit's metric-history JSON is MLflow's, byte for byte, for any plain history."""

from __future__ import annotations

import math
import random

from mlflow.entities import Metric
from mlflow.protos.service_pb2 import GetMetricHistory
from mlflow.utils.proto_json_utils import message_to_json

from mlops_platform.fast_views import history_json

AWKWARD = [math.nan, math.inf, -math.inf, -0.0, 0.0, 5e-324, 1.7976931348623157e308, 1e16, 0.1]
KEYS = ["loss", 'quo"te', "back\\slash", "ünï/cödé ✓", "tab\tkey", ""]


def mlflows(metrics: list[Metric], token: bytes | None) -> str:
    response = GetMetricHistory.Response()
    response.metrics.extend([m.to_proto() for m in metrics])
    if token:
        response.next_page_token = token
    return message_to_json(response)


def test_random_histories_match_mlflows_bytes() -> None:
    rng = random.Random(20261203)
    for case in range(300):
        metrics = [
            Metric(
                rng.choice(KEYS),
                rng.choice([*AWKWARD, rng.uniform(-1e6, 1e6), rng.randint(-(2**53), 2**53)]),
                rng.randint(-(2**63), 2**63 - 1),
                rng.randint(-(2**63), 2**63 - 1),
            )
            for _ in range(rng.randint(0, 6))
        ]
        token = rng.choice([None, b"eyJvZmZzZXQiOiAxfQ==", "eyJvZmZzZXQiOiA3fQ=="])
        assert history_json(metrics, token) == mlflows(metrics, token), case


def test_a_point_with_more_than_the_plain_fields_is_left_to_mlflow() -> None:
    assert history_json([Metric("m", 1.0, 1, 0, run_id="r" * 32)], None) is None
    assert history_json([Metric("m", "1.0", 1, 0)], None) is None  # type: ignore[arg-type]
