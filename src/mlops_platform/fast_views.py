"""MLflow views the kit answers faster, with MLflow's exact bytes.

``GET /api/2.0/mlflow/metrics/get-history`` (and its ``ajax-api`` twin): MLflow turns
every point into a protobuf message, the message into a dict (``MessageToDict``), walks
the message again to turn int64 strings back into numbers, then dumps the dict. Once the
store reads plain rows (:mod:`mlops_platform.fast_store`) that conversion is most of the
request. The view here parses the request and calls the store exactly as MLflow's does,
then writes the same JSON straight from the entities: the same keys in the same order,
``NaN``/``Infinity`` as strings, int64 fields as numbers, two-space indentation. A point
that carries more than key, value, timestamp and step (a logged model's metric), or a
value of an unexpected type, goes through MLflow's protobuf messages, as MLflow does.

Every other view of MLflow's REST API keeps its code but writes its response with
:func:`mlops_platform.proto_json.message_to_json` (MLflow's bytes, a third of the time).

The view replaces MLflow's in Flask's table of views, under MLflow's endpoint name, so
every ``before_request`` hook (MLflow's permission check, the kit's rules) runs for it
as before. ``tests/integration/test_fast_views.py`` compares the bytes with MLflow's.
"""

from __future__ import annotations

import json
import math
from typing import Any

ENDPOINT = "_get_metric_history"
_SPECIAL = {math.inf: '"Infinity"', -math.inf: '"-Infinity"'}
_string = json.encoder.encode_basestring_ascii  # what json.dumps uses for a str


def _plain(metric: Any) -> bool:
    return (
        type(metric.key) is str
        and type(metric.value) in (float, int)
        and type(metric.timestamp) is int
        and type(metric.step) is int
        and not (metric.model_id or metric.dataset_name or metric.dataset_digest or metric.run_id)
    )


def _value(value: float) -> str:
    """A double as MLflow's JSON writes it: NaN and the infinities as strings."""
    value = float(value)  # the proto field is a double: an int comes back as a float
    if math.isnan(value):
        return '"NaN"'
    return _SPECIAL.get(value) or float.__repr__(value)  # json's own float text


def history_json(metrics: list[Any], token: str | bytes | None) -> str | None:
    """MLflow's JSON for a GetMetricHistory response, byte for byte, or None when a point
    is not plain. ``json.dumps(..., indent=2)`` runs json's pure-Python encoder (the C
    one does not indent), slower than the conversion it replaces: the fixed layout is
    written directly, each string through json's C encoder."""
    if not all(_plain(m) for m in metrics):
        return None
    fields = []
    if metrics:
        points = ",\n".join(
            f'    {{\n      "key": {_string(m.key)},\n      "value": {_value(m.value)},\n'
            f'      "timestamp": {m.timestamp},\n      "step": {m.step}\n    }}'
            for m in metrics
        )
        fields.append(f'  "metrics": [\n{points}\n  ]')
    if token:  # MLflow's page tokens are bytes; the proto's string field decodes them
        fields.append(
            f'  "next_page_token": {_string(token.decode() if isinstance(token, bytes) else token)}'
        )
    return "{\n" + ",\n".join(fields) + "\n}" if fields else "{}"


def get_metric_history() -> Any:
    """MLflow's ``_get_metric_history`` with the JSON written directly."""
    from flask import Response
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
    from mlflow.protos.service_pb2 import GetMetricHistory
    from mlflow.server import handlers

    request_message = handlers._get_request_message(
        GetMetricHistory(),
        schema={
            "run_id": [handlers._assert_string, handlers._assert_required],
            "metric_key": [handlers._assert_string, handlers._assert_required],
            "page_token": [handlers._assert_string],
        },
    )
    run_id = request_message.run_id or request_message.run_uuid
    # An unset proto2 int reads 0: only a present max_results pages (as in MLflow).
    max_results = request_message.max_results if request_message.HasField("max_results") else None
    if max_results is not None and max_results <= 0:
        raise MlflowException(
            f"Invalid value {max_results} for parameter 'max_results' supplied. "
            "It must be a positive integer.",
            error_code=INVALID_PARAMETER_VALUE,
        )
    metrics = handlers._get_tracking_store().get_metric_history(
        run_id,
        request_message.metric_key,
        max_results=max_results,
        page_token=request_message.page_token or None,
    )
    text = history_json(metrics, metrics.token)  # a PagedList is a list
    if text is not None:
        # No point names a model: MLflow's after-request redaction would change nothing.
        from flask import g

        from mlops_platform.auth_checks import PLAIN_HISTORY

        g.setdefault(PLAIN_HISTORY, True)
    else:  # through the proto, as MLflow does (written by proto_json)
        from mlops_platform.proto_json import message_to_json

        response_message = GetMetricHistory.Response()
        response_message.metrics.extend([m.to_proto() for m in metrics])
        if metrics.token:
            response_message.next_page_token = metrics.token
        text = message_to_json(response_message)
    response = Response(mimetype="application/json")
    response.set_data(text)
    return response


def install() -> None:
    """Answer the metric-history endpoint of MLflow's Flask app (``mlflow.server.app``,
    which every app the kit serves wraps) with :func:`get_metric_history`, and let
    MLflow's handlers write their JSON with the kit's ``message_to_json``.

    Raises RuntimeError when the endpoint is not where the kit knows it (a future MLflow
    that renamed it should fail the start loudly, not quietly keep a stale view).
    """
    from mlflow.server import app as flask_app
    from mlflow.server import handlers

    from mlops_platform import proto_json

    if flask_app.view_functions.get(ENDPOINT) is None:
        missing = f"MLflow's view {ENDPOINT} is not registered"
    elif not hasattr(handlers, "message_to_json"):
        missing = "MLflow's handlers do not write JSON with message_to_json"
    else:
        missing = ""
    if missing:
        raise RuntimeError(f"mlops-platform: {missing}; this MLflow is not the one the kit knows")
    view = handlers.catch_mlflow_exception(handlers._disable_if_artifacts_only(get_metric_history))
    view.__name__ = ENDPOINT
    flask_app.view_functions[ENDPOINT] = view
    handlers.message_to_json = proto_json.message_to_json  # the module global its views call
