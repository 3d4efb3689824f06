"""Cheaper inputs for MLflow's per-request permission checks, with the same answers:
the run's experiment remembered per worker (a run never moves), ``runs/log-batch``'s
model ids read from the JSON Flask has already parsed, and a metric history that names
no logged model not parsed again to look for one. Used by
:func:`mlops_platform.auth_app.create_app`."""

from __future__ import annotations

from typing import Any

from flask import g, request

# Set by the kit's history view (mlops_platform.fast_views) when every point it wrote is
# plain: key, value, timestamp and step, no model id.
PLAIN_HISTORY = "mlops_plain_history"


class _ExperimentOfRun:
    """What MLflow's permission checks read of a run: ``info.experiment_id``.

    Anything else is fetched in full on first use, so a check that needs more still gets it.
    """

    def __init__(self, experiment_id: str, fetch: Any) -> None:
        self._fetch, self._run = fetch, None
        self.info = _ExperimentOfRunInfo(experiment_id, self)

    def full(self) -> Any:
        if self._run is None:
            self._run = self._fetch()
        return self._run

    def __getattr__(self, name: str) -> Any:
        return getattr(self.full(), name)


class _ExperimentOfRunInfo:
    def __init__(self, experiment_id: str, run: _ExperimentOfRun) -> None:
        self.experiment_id, self._run = experiment_id, run

    def __getattr__(self, name: str) -> Any:
        return getattr(self._run.full().info, name)


class PermissionTrackingStore:
    """The tracking store as MLflow's permission checks see it: runs' experiments cached.

    Every check on a run (log_metric, log_batch, set_tag, ...) fetches the whole run to
    learn its experiment: as much database work as the write itself. A run never moves
    to another experiment, so each worker remembers the answer; everything else goes to
    the real store unchanged.
    """

    def __init__(self, real: Any, max_runs: int = 100_000) -> None:
        self._real, self._max = real, max_runs
        self._experiments: dict[str, str] = {}

    def get_run(self, run_id: str) -> Any:
        experiment_id = self._experiments.get(run_id)
        if experiment_id is not None:
            return _ExperimentOfRun(experiment_id, lambda: self._real.get_run(run_id))
        run = self._real.get_run(run_id)  # a missing run raises, as before: not remembered
        if len(self._experiments) >= self._max:
            self._experiments.clear()
        self._experiments[run_id] = run.info.experiment_id
        return run

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def cache_run_experiments(auth_module: Any) -> None:
    """Give MLflow's permission checks :class:`PermissionTrackingStore`."""
    from mlflow.server import handlers

    wrapped: dict[int, PermissionTrackingStore] = {}

    def tracking_store() -> Any:
        real = handlers._get_tracking_store()
        store = wrapped.get(id(real))
        if store is None or store._real is not real:
            store = wrapped[id(real)] = PermissionTrackingStore(real)
        return store

    auth_module._get_tracking_store = tracking_store


def model_ids_of_batch() -> set[str] | None:
    """The per-metric model ids of a log-batch JSON body, both spellings; None when the
    body is not the plain JSON shape (MLflow's own check then decides)."""
    body = request.get_json(silent=True, cache=True)
    if not isinstance(body, dict):
        return None
    metrics = body.get("metrics") or []
    if not isinstance(metrics, list):
        return None
    ids: set[str] = set()
    for metric in metrics:
        if not isinstance(metric, dict):
            return None
        for key in ("model_id", "modelId"):
            value = metric.get(key)
            if value is None or value == "":
                continue
            if not isinstance(value, str):
                return None
            ids.add(value)
    return ids


def lighter_log_batch_check(auth_module: Any) -> None:
    """MLflow's check of ``runs/log-batch`` converts the whole body into its protobuf
    message only to collect per-metric model ids, and the handler converts it again: for
    100 metrics that is a third of the check's CPU. The kit reads the same ids from the
    JSON Flask has already parsed and hands them to MLflow's own
    ``_validate_can_update_run_and_models``; any other body shape goes to MLflow's check."""
    original = auth_module.validate_can_log_batch
    decide = auth_module._validate_can_update_run_and_models

    def validate_can_log_batch() -> bool:
        ids = model_ids_of_batch()
        return original() if ids is None else bool(decide(ids))

    table = auth_module.BEFORE_REQUEST_VALIDATORS
    for key, validator in list(table.items()):
        if validator is original:
            table[key] = validate_can_log_batch


def lighter_history_redaction(auth_module: Any) -> None:
    """MLflow's after-request handler of ``metrics/get-history`` parses the response back
    into its protobuf message (every point) to clear the model ids a non-admin may not
    see; when no point names a model it changes nothing. The kit's history view knows
    that already (:data:`PLAIN_HISTORY`): such a response skips the parse. Any other
    response (MLflow's own view, points of logged models) goes to MLflow's handler."""
    original = auth_module.redact_metric_history_model_ids

    def redact_metric_history_model_ids(resp: Any) -> None:
        if g.get(PLAIN_HISTORY):
            return
        original(resp)

    for table_name in ("AFTER_REQUEST_HANDLERS", "AFTER_REQUEST_PATH_HANDLERS"):
        table = getattr(auth_module, table_name, None) or {}
        for key, handler in list(table.items()):
            if handler is original:
                table[key] = redact_metric_history_model_ids
