"""The identity settings, the auth app's configuration and the kit's role rule."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import flask
import pytest
from flask import Flask, Response

from mlops_platform import auth_app
from mlops_platform.bootstrap import init_env_file
from mlops_platform.render.auth import auth_ini
from mlops_platform.render.server import auth_env, server_argv
from mlops_platform.settings import PlatformSettings
from tests.conftest import clear_mlops_env


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clear_mlops_env(monkeypatch)
    monkeypatch.setenv("MLOPS_SECRETS_DIR", str(tmp_path / "no-secrets"))
    monkeypatch.chdir(tmp_path)


def settings(**values: object) -> PlatformSettings:
    base: dict[str, object] = {"env": "dev", "proxy_secret": "s" * 48, "db_password": "pw-abc"}
    return PlatformSettings(_env_file=None, **{**base, **values})  # type: ignore[arg-type]


def test_identity_needs_a_secret_even_in_dev() -> None:
    assert any("MLOPS_PROXY_SECRET is empty" in p for p in settings(proxy_secret="").problems())
    assert not any(
        "PROXY_SECRET" in p for p in settings(auth_enabled=False, proxy_secret="").problems()
    )
    assert not any(
        "PROXY_SECRET" in p for p in settings(proxy_enabled=False, proxy_secret="").problems()
    )


def test_short_secret_refused_outside_dev() -> None:
    problems = settings(env="prod", proxy_secret="short").problems()
    assert any("MLOPS_PROXY_SECRET is shorter than 32" in p for p in problems)


def test_auth_store_must_not_be_the_tracking_database() -> None:
    problems = settings(auth_db_name="mlflow").problems()
    assert any("MLOPS_AUTH_DB_NAME=mlflow is the tracking database" in p for p in problems)
    with pytest.raises(ValueError):
        settings(auth_db_name="Bad-Name")


def test_auth_database_url_is_the_tracking_server_with_its_own_database() -> None:
    s = settings(db_url="postgresql://mlflow:pw@db.internal:5433/tracking?sslmode=require")
    assert (
        s.auth_database_url()
        == "postgresql+psycopg://mlflow@db.internal:5433/mlflow_auth?sslmode=require"
    )
    assert ":pw@" in s.auth_database_url(with_password=True)


def test_auth_ini_has_no_password_and_denies_by_default() -> None:
    text = auth_ini(settings(db_password="never-in-a-file"))
    assert "never-in-a-file" not in text
    assert "default_permission = NO_PERMISSIONS" in text
    assert "authorization_function = mlops_platform.auth_app:authenticate" in text
    assert "database_uri = postgresql+psycopg://mlflow@127.0.0.1:5432/mlflow_auth" in text


def test_server_runs_the_kit_app_only_with_identity() -> None:
    assert server_argv(settings())[-2:] == ["--app-name", "mlops-auth"]
    assert "--app-name" not in server_argv(settings(auth_enabled=False))
    assert "--app-name" not in server_argv(settings(proxy_enabled=False))
    env = auth_env(settings(), admin_password="x" * 32)
    assert env["MLOPS_PROXY_SECRET"] == "s" * 48
    assert env["MLFLOW_AUTH_CONFIG_PATH"].endswith("auth/basic_auth.ini")
    assert auth_env(settings(auth_enabled=False), admin_password="x") == {}


def test_init_adds_missing_secrets_and_keeps_the_rest(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("MLOPS_PROXY_PASSWORD=keep-this-one-please\n# MLOPS_PROXY_SECRET=\n")
    result = init_env_file(env_file)
    assert not result.written
    assert "MLOPS_PROXY_SECRET" in result.added
    text = env_file.read_text()
    assert text.startswith("MLOPS_PROXY_PASSWORD=keep-this-one-please\n")
    secret = [ln for ln in text.splitlines() if ln.startswith("MLOPS_PROXY_SECRET=")]
    assert len(secret) == 1 and len(secret[0].split("=", 1)[1]) >= 32
    assert env_file.stat().st_mode & 0o077 == 0
    assert init_env_file(env_file).added == []  # idempotent
    assert env_file.read_text() == text


@pytest.mark.parametrize(
    ("route", "method", "params", "need"),
    [
        ("experiments/create", "POST", {"name": "x"}, "editor"),
        ("registered-models/create", "POST", {"name": "m"}, "editor"),
        (
            "registered-models/create",
            "POST",
            {"name": "m", "tags": [{"key": "mlops.status", "value": "approved"}]},
            "approver",
        ),
        (
            "registered-models/alias",
            "POST",
            {"name": "m", "alias": "champion", "version": "1"},
            "approver",
        ),
        ("registered-models/alias", "DELETE", {"name": "m", "alias": "challenger"}, "approver"),
        (
            "registered-models/alias",
            "POST",
            {"name": "m", "alias": "staging", "version": "1"},
            None,
        ),
        (
            "model-versions/set-tag",
            "POST",
            {"name": "m", "version": "1", "key": "mlops.status"},
            "approver",
        ),
        (
            "model-versions/delete-tag",
            "DELETE",
            {"name": "m", "version": "1", "key": "mlops.gate.x"},
            "approver",
        ),
        ("registered-models/set-tag", "POST", {"name": "m", "key": "mlops.audit.1.x"}, "approver"),
        ("model-versions/set-tag", "POST", {"name": "m", "version": "1", "key": "team"}, None),
        (
            "model-versions/create",
            "POST",
            {"name": "m", "tags": [{"key": "mlops.status"}]},
            "approver",
        ),
        ("model-versions/create", "POST", {"name": "m", "tags": [{"key": "team"}]}, None),
        ("model-versions/transition-stage", "POST", {"name": "m", "version": "1"}, "approver"),
        ("runs/log-metric", "POST", {"run_id": "r"}, None),
    ],
)
def test_required_role(
    monkeypatch: pytest.MonkeyPatch,
    route: str,
    method: str,
    params: dict[str, object],
    need: str | None,
) -> None:
    monkeypatch.setattr(auth_app, "_settings", settings())
    got = auth_app.required_role(route, method, params)
    assert (got[0] if got else None) == need


def test_protected_aliases_follow_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth_app, "_settings", settings(auth_protected_aliases="prod, canary"))
    assert auth_app.required_role("registered-models/alias", "POST", {"alias": "prod"})
    assert auth_app.required_role("registered-models/alias", "POST", {"alias": "champion"}) is None


class _Store:
    """A tracking store that counts get_run calls (the unit under test is the cache)."""

    def __init__(self) -> None:
        self.calls = 0

    def get_run(self, run_id: str) -> object:
        self.calls += 1
        if run_id == "missing":
            raise KeyError(run_id)
        return SimpleNamespace(info=SimpleNamespace(experiment_id="7", status="RUNNING"))

    def get_experiment(self, experiment_id: str) -> str:
        return f"experiment {experiment_id}"


def test_permission_checks_learn_a_runs_experiment_once() -> None:
    real = _Store()
    store = auth_app.PermissionTrackingStore(real)
    assert store.get_run("r1").info.experiment_id == "7" and real.calls == 1
    again = store.get_run("r1")
    assert again.info.experiment_id == "7" and real.calls == 1  # remembered
    assert again.info.status == "RUNNING" and real.calls == 2  # anything else: fetched
    with pytest.raises(KeyError):
        store.get_run("missing")
    with pytest.raises(KeyError):
        store.get_run("missing")  # a missing run is never remembered
    assert real.calls == 4
    assert store.get_experiment("3") == "experiment 3"  # the rest is the real store's


class _AuthStore:
    """Counts the auth store's reads; one write that changes grants."""

    def __init__(self) -> None:
        self.reads = 0
        self.grants: list[str] = []

    def get_user(self, username: str) -> SimpleNamespace:
        self.reads += 1
        return SimpleNamespace(id=1, username=username)

    def list_grants(self, user_id: int, workspace: str, resource_types: object) -> list[str]:
        self.reads += 1
        return list(self.grants)

    def grant_user_permission(self, username: str, *args: object) -> None:
        self.grants.append(username)


@contextlib.contextmanager
def _checked_by_the_wrapped_hook() -> Iterator[None]:
    """A Flask request whose permission check went through ``recheck_refusals``."""
    with Flask("memo").test_request_context("/api/2.0/mlflow/runs/get"):
        flask.g.mlops_recheck_armed = True
        yield


def test_auth_memo_remembers_reads_and_forgets_on_every_write() -> None:
    store = _AuthStore()
    auth_app.AuthMemo(store, 60)
    with _checked_by_the_wrapped_hook():
        user = store.get_user("ann")
        assert user.id == 1 and store.list_grants(1, "default", {"experiment"}) == []
        store.get_user("ann")
        store.list_grants(1, "default", ["experiment"])  # same key, whatever the collection
        assert store.reads == 2
        store.grant_user_permission("ann", "experiment", "7", "EDIT")  # through this worker
        assert store.list_grants(1, "default", {"experiment"}) == ["ann"] and store.reads == 3


def test_auth_memo_expires() -> None:
    store = _AuthStore()
    auth_app.AuthMemo(store, 0.05)
    with _checked_by_the_wrapped_hook():
        store.get_user("ann")
        time.sleep(0.1)
        store.get_user("ann")
    assert store.reads == 2


def test_checks_without_a_second_pass_always_read_the_store() -> None:
    """MLflow's FastAPI permission middleware (artifact downloads) never re-decides a
    refusal, so it must never decide on remembered grants: a fresh grant applies at once."""
    store = _AuthStore()
    auth_app.AuthMemo(store, 60)
    with _checked_by_the_wrapped_hook():
        store.list_grants(1, "default", {"experiment"})
    store.grants.append("ann")  # granted through another worker or the CLI
    assert store.list_grants(1, "default", {"experiment"}) == ["ann"]  # no request context
    with Flask("fastapi-bridge").test_request_context("/api/2.0/mlflow-artifacts/artifacts/x"):
        assert store.list_grants(1, "default", {"experiment"}) == ["ann"]  # not wrapped
    assert store.reads == 3


def test_a_refusal_on_remembered_grants_is_decided_again_from_the_store() -> None:
    store = _AuthStore()
    memo = auth_app.AuthMemo(store, 60)
    app = Flask("refusals")
    decisions: list[int] = []

    def hook() -> Response | None:  # stands for MLflow's: allowed only with a grant
        allowed = bool(store.list_grants(1, "default", {"experiment"}))
        decisions.append(int(allowed))
        return None if allowed else Response("no", status=403)

    hook.__module__, hook.__name__ = "mlflow.server.auth", "_before_request"
    app.before_request(hook)
    app.add_url_rule("/x", "x", lambda: "ok")
    auth_app.recheck_refusals(app, memo)
    client = app.test_client()
    assert client.get("/x").status_code == 403  # read from the store: one decision
    store.grants.append("ann")  # granted elsewhere (another worker, the CLI)
    assert client.get("/x").status_code == 200  # remembered "no grant", then re-read
    assert decisions == [0, 0, 1]
    assert client.get("/x").status_code == 200 and decisions == [0, 0, 1, 1]
    store.grants.clear()  # revoked elsewhere: remembered until the memo expires
    assert client.get("/x").status_code == 200


@pytest.mark.parametrize(
    ("body", "ids"),
    [
        ({"run_id": "r", "metrics": [{"key": "a", "value": 1}]}, set()),
        (
            {"metrics": [{"key": "a", "model_id": "m-1"}, {"key": "b", "modelId": "m-2"}]},
            {"m-1", "m-2"},
        ),  # fmt: skip
        ({"run_id": "r"}, set()),
        ({"metrics": "not a list"}, None),  # MLflow's own check decides
        ({"metrics": [{"key": "a", "model_id": 7}]}, None),
        ([1, 2], None),
    ],
)
def test_log_batch_model_ids_are_read_from_the_json(body: object, ids: set[str] | None) -> None:
    with Flask("batch").test_request_context("/api/2.0/mlflow/runs/log-batch", json=body):
        assert auth_app.model_ids_of_batch() == ids


def test_the_lighter_log_batch_check_replaces_mlflows_in_its_table() -> None:
    import mlflow.server.auth as mlflow_auth

    original = mlflow_auth.validate_can_log_batch
    table = dict(mlflow_auth.BEFORE_REQUEST_VALIDATORS)
    try:
        auth_app.lighter_log_batch_check(mlflow_auth)
        routes = [k for k, v in table.items() if v is original]
        assert routes and all(
            mlflow_auth.BEFORE_REQUEST_VALIDATORS[k] is not original for k in routes
        )
    finally:
        mlflow_auth.BEFORE_REQUEST_VALIDATORS.clear()
        mlflow_auth.BEFORE_REQUEST_VALIDATORS.update(table)


STORE_IMPORT = """
import json, sys
from mlops_platform import auth_store
failed = auth_store._import_under_bare_packages(
    "mlflow.server.jobs", ("mlflow.server", "mlflow.no_such_package")
)
seen = {"fallback": failed is None and not any(m.startswith("mlflow.server") for m in sys.modules)}
store = auth_store._store_class()
seen["server_loaded"] = "mlflow.server" in sys.modules or "mlflow.server.handlers" in sys.modules
import mlflow.server.auth
from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore
seen["same_class"] = store is SqlAlchemyStore and type(mlflow.server.auth.store) is store
seen["server_app"] = hasattr(mlflow.server, "app") and hasattr(mlflow.server.auth, "create_app")
print(json.dumps(seen))
"""


def test_the_user_store_loads_without_mlflows_server_and_the_server_still_loads() -> None:
    """A `users` call imports MLflow's user store without running the tracking server's
    and auth app's package code; importing them afterwards in the same process gives the
    real packages and the same store class; a package that cannot stand bare leaves
    nothing behind."""
    import json

    from tests.support.proc import run

    result = run([sys.executable, "-W", "ignore", "-c", STORE_IMPORT], timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {
        "server_loaded": False,
        "same_class": True,
        "server_app": True,
        "fallback": True,
    }
