"""Who may do what, decided by the tracking server: a black-box matrix through the real proxy.

Four roles (viewer, editor, approver, admin) against eighteen operations on resources
someone else owns and on their own: every cell's status is asserted, and every refused
write is shown to have changed nothing (the platform's whole state, read as the admin,
is the same before and after). Identity cannot be forged: the server refuses a user
header without the proxy secret, and a client's own identity headers do not get
through nginx.

One module, because its tests share the module-scoped users (`people`, added with
`users add` on the session stack); split, each part would add its own.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.conftest import CLI, Platform, down_later, make_stack_dir, write_env
from tests.support.users import add_role_users, add_user

pytestmark = pytest.mark.integration

ROLES = ("viewer", "editor", "approver", "admin")
API = "/api/2.0/mlflow"


class Client:
    def __init__(self, base: str, user: str, password: str) -> None:
        self.base, self.session = base, requests.Session()
        self.session.auth = (user, password)
        self.user = user

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, **kw: Any) -> Any:
        params = body if method == "GET" else None
        payload = None if method == "GET" else body
        return self.session.request(
            method, self.base + path, params=params, json=payload, timeout=60, **kw
        )

    def ok(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.call(method, path, body)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json() if response.content else {}


def snapshot(admin: Client) -> dict[str, str]:
    """Everything the refused writes could touch, as the admin sees it, in a stable order
    (MLflow lists users in table order, which a database may change at will)."""
    exps = admin.ok("POST", f"{API}/experiments/search", {"max_results": 1000, "view_type": 3})
    experiments = exps.get("experiments", [])
    ids = [e["experiment_id"] for e in experiments]
    runs = admin.ok("POST", f"{API}/runs/search", {"experiment_ids": ids, "max_results": 1000})
    models = admin.ok("GET", f"{API}/registered-models/search", {"max_results": 1000})
    versions = admin.ok("GET", f"{API}/model-versions/search", {"max_results": 1000})
    state: dict[str, list[Any]] = {
        "experiments": experiments,
        "runs": runs.get("runs", []),
        "models": models.get("registered_models", []),
        "versions": versions.get("model_versions", []),
        "users": admin.ok("GET", f"{API}/users/list").get("users", []),
    }
    return {
        key: json.dumps(sorted(json.dumps(item, sort_keys=True) for item in items))
        for key, items in state.items()
    }


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return [key for key in before if before[key] != after[key]]


@pytest.fixture(scope="module")
def people(platform: Platform) -> dict[str, Client]:
    out = {"admin": Client(platform.url, platform.user, platform.password)}
    for role, (name, password) in add_role_users(platform).items():
        out[role] = Client(platform.url, name, password)
    return out


def _experiment_with_model(
    me: Client, name: str, model: str, metric: tuple[str, float]
) -> tuple[str, dict[str, Any]]:
    """ME's experiment NAME, a run in it logging METRIC, and MODEL registered from the run
    (version 1): the experiment id and the run's info."""
    exp = me.ok("POST", f"{API}/experiments/create", {"name": name})["experiment_id"]
    run = me.ok("POST", f"{API}/runs/create", {"experiment_id": exp})["run"]["info"]
    key, value = metric
    me.ok(
        "POST",
        f"{API}/runs/log-metric",
        {"run_id": run["run_id"], "key": key, "value": value, "timestamp": 1, "step": 0},
    )
    me.ok("POST", f"{API}/registered-models/create", {"name": model})
    me.ok(
        "POST",
        f"{API}/model-versions/create",
        {"name": model, "source": run["artifact_uri"], "run_id": run["run_id"]},
    )
    return exp, run


def _admin_world(admin: Client, tag: str) -> dict[str, str]:
    """An experiment, a run with a metric and an artifact, a model with one version."""
    model = f"perm-model-{tag}"
    exp, run = _experiment_with_model(admin, f"perm-{tag}", model, ("m", 1))
    for alias in ("candidate", "champion"):
        admin.ok(
            "POST",
            f"{API}/registered-models/alias",
            {"name": model, "alias": alias, "version": "1"},
        )
    art = f"/api/2.0/mlflow-artifacts/artifacts/{exp}/{run['run_id']}/artifacts/a.txt"
    assert admin.session.put(admin.base + art, data=b"admin's", timeout=60).status_code == 200
    return {
        "exp": exp,
        "run": run["run_id"],
        "source": run["artifact_uri"],
        "model": model,
        "artifact": art,
    }


# Each operation: (name, request builder). The builder gets the actor and a world of
# resources the admin owns, and returns the response.
Op = Callable[[Client, dict[str, str]], requests.Response]

OPS: dict[str, Op] = {
    "read experiment": lambda c, w: c.call(
        "GET", f"{API}/experiments/get", {"experiment_id": w["exp"]}
    ),
    "create experiment": lambda c, w: c.call(
        "POST", f"{API}/experiments/create", {"name": f"new-{uuid.uuid4().hex}"}
    ),
    "rename experiment": lambda c, w: c.call(
        "POST",
        f"{API}/experiments/update",
        {"experiment_id": w["exp"], "new_name": f"renamed-{uuid.uuid4().hex}"},
    ),
    "delete experiment": lambda c, w: c.call(
        "POST", f"{API}/experiments/delete", {"experiment_id": w["exp"]}
    ),
    "create run": lambda c, w: c.call("POST", f"{API}/runs/create", {"experiment_id": w["exp"]}),
    "log metric": lambda c, w: c.call(
        "POST",
        f"{API}/runs/log-metric",
        {"run_id": w["run"], "key": "m", "value": 2, "timestamp": 2, "step": 1},
    ),
    "read artifact": lambda c, w: c.session.get(c.base + w["artifact"], timeout=60),
    "overwrite artifact": lambda c, w: c.session.put(
        c.base + w["artifact"], data=b"not yours", timeout=60
    ),
    "read model": lambda c, w: c.call("GET", f"{API}/registered-models/get", {"name": w["model"]}),
    "create model": lambda c, w: c.call(
        "POST", f"{API}/registered-models/create", {"name": f"new-model-{uuid.uuid4().hex}"}
    ),
    "create version": lambda c, w: c.call(
        "POST",
        f"{API}/model-versions/create",
        {"name": w["model"], "source": w["source"], "run_id": w["run"]},
    ),
    "set unprotected alias": lambda c, w: c.call(
        "POST",
        f"{API}/registered-models/alias",
        {"name": w["model"], "alias": "candidate", "version": "1"},
    ),
    "set @champion": lambda c, w: c.call(
        "POST",
        f"{API}/registered-models/alias",
        {"name": w["model"], "alias": "champion", "version": "1"},
    ),
    "delete alias": lambda c, w: c.call(
        "DELETE", f"{API}/registered-models/alias", {"name": w["model"], "alias": "candidate"}
    ),
    "delete @champion": lambda c, w: c.call(
        "DELETE", f"{API}/registered-models/alias", {"name": w["model"], "alias": "champion"}
    ),
    "set approval tag": lambda c, w: c.call(
        "POST",
        f"{API}/model-versions/set-tag",
        {"name": w["model"], "version": "1", "key": "mlops.status", "value": "approved"},
    ),
    "grant permission": lambda c, w: c.call(
        "POST",
        "/api/3.0/mlflow/users/permissions/grant",
        {
            "username": w["grantee"],
            "resource_type": "experiment",
            "resource_id": w["exp"],
            "permission": "EDIT",
        },
    ),
    "create user": lambda c, w: c.call(
        "POST",
        f"{API}/users/create",
        {"username": f"u{uuid.uuid4().hex[:8]}", "password": secrets.token_urlsafe(24)},
    ),
}

# Expected status per role on resources the ADMIN owns (viewer, editor, approver, admin).
EXPECTED_OTHERS: dict[str, tuple[int, int, int, int]] = {
    "read experiment": (200, 200, 200, 200),
    "create experiment": (403, 200, 200, 200),
    "rename experiment": (403, 403, 403, 200),
    "delete experiment": (403, 403, 403, 200),
    "create run": (403, 403, 403, 200),
    "log metric": (403, 403, 403, 200),
    "read artifact": (200, 200, 200, 200),
    "overwrite artifact": (403, 403, 403, 200),
    "read model": (200, 200, 200, 200),
    "create model": (403, 200, 200, 200),
    "create version": (403, 403, 200, 200),
    "set unprotected alias": (403, 403, 200, 200),
    "set @champion": (403, 403, 200, 200),
    "set approval tag": (403, 403, 200, 200),
    "delete alias": (403, 403, 200, 200),
    "delete @champion": (403, 403, 200, 200),
    "grant permission": (403, 403, 403, 200),
    "create user": (403, 403, 403, 200),
}

READS = {"read experiment", "read artifact", "read model"}


def test_role_matrix_on_others_resources(platform: Platform, people: dict[str, Client]) -> None:
    admin = people["admin"]
    failures = []
    for op, expected in EXPECTED_OTHERS.items():
        for role, want in zip(ROLES, expected, strict=True):
            world = _admin_world(admin, f"{role}-{uuid.uuid4().hex[:6]}")
            world["grantee"] = people["viewer"].user
            before = snapshot(admin) if want == 403 else None
            got = OPS[op](people[role], world)
            if got.status_code != want:
                failures.append(f"{role} {op}: {got.status_code} (want {want}) {got.text[:120]}")
            elif (
                before is not None
                and op not in READS
                and (diff := changed(before, snapshot(admin)))
            ):
                failures.append(f"{role} {op}: refused with 403 but changed {diff}")
    assert not failures, "\n".join(failures)


def test_owners_edit_their_own_but_only_approvers_promote(people: dict[str, Client]) -> None:
    """An editor manages what it created, yet cannot approve or move @champion on it."""
    admin = people["admin"]
    for role in ("editor", "approver"):
        me = people[role]
        model = f"own-model-{role}-{uuid.uuid4().hex[:6]}"
        exp, run = _experiment_with_model(me, f"own-{role}-{uuid.uuid4().hex}", model, ("acc", 0.9))
        me.ok(
            "POST",
            f"{API}/registered-models/alias",
            {"name": model, "alias": "candidate", "version": "1"},
        )
        before = snapshot(admin)
        champion = me.call(
            "POST",
            f"{API}/registered-models/alias",
            {"name": model, "alias": "champion", "version": "1"},
        )
        approval = me.call(
            "POST",
            f"{API}/model-versions/set-tag",
            {"name": model, "version": "1", "key": "mlops.status", "value": "approved"},
        )
        tagged_create = me.call(
            "POST",
            f"{API}/model-versions/create",
            {
                "name": model,
                "source": run["artifact_uri"],
                "run_id": run["run_id"],
                "tags": [{"key": "mlops.status", "value": "approved"}],
            },
        )
        if role == "editor":
            assert (champion.status_code, approval.status_code, tagged_create.status_code) == (
                403,
                403,
                403,
            )
            assert "approver" in champion.json()["message"]
            assert not changed(before, snapshot(admin))
        else:
            assert (champion.status_code, approval.status_code, tagged_create.status_code) == (
                200,
                200,
                200,
            )
        me.ok(
            "POST",
            f"{API}/experiments/update",
            {"experiment_id": exp, "new_name": f"renamed-{uuid.uuid4().hex}"},
        )
        me.ok("POST", f"{API}/experiments/delete", {"experiment_id": exp})


def test_granted_experiment_becomes_writable(platform: Platform, people: dict[str, Client]) -> None:
    admin, viewer = people["admin"], people["viewer"]
    world = _admin_world(admin, f"grant-{uuid.uuid4().hex[:6]}")
    refused = OPS["log metric"](viewer, world)
    assert refused.status_code == 403
    # The refusal left the viewer's grants in the workers' memory; the new grant still
    # applies at once, because a refusal made on remembered grants is re-checked.
    platform.cli("users", "grant", viewer.user, "experiment", world["exp"], "EDIT")
    assert OPS["log metric"](viewer, world).status_code == 200
    platform.cli("users", "revoke", viewer.user, "experiment", world["exp"])
    # A revocation reaches every worker within MLOPS_AUTH_CACHE_SECONDS.
    time.sleep(platform.settings.auth_cache_seconds + 0.5)
    assert OPS["log metric"](viewer, world).status_code == 403


def test_forged_identity_is_refused(platform: Platform, people: dict[str, Client]) -> None:
    settings = platform.settings
    server = f"http://127.0.0.1:{settings.server_port}{API}/experiments/search"
    host = {"Host": f"localhost:{settings.server_port}"}
    body = {"max_results": 1}
    secret = settings.proxy_secret.get_secret_value()
    # Positive control: nginx's very headers are accepted.
    good = {**host, "X-Forwarded-User": settings.proxy_user, "X-Mlops-Proxy-Secret": secret}
    assert requests.post(server, json=body, headers=good, timeout=30).status_code == 200
    for forged in (
        {**host, "X-Forwarded-User": settings.proxy_user},
        {**host, "X-Forwarded-User": settings.proxy_user, "X-Mlops-Proxy-Secret": "wrong"},
        {**host, "X-Forwarded-User": settings.proxy_user, "X-Mlops-Proxy-Secret": secret[:-1]},
        {**host, "Authorization": "Basic " + "YWRtaW46YWRtaW4="},  # MLflow's own basic auth: off
    ):
        response = requests.post(server, json=body, headers=forged, timeout=30)
        assert response.status_code == 401, (forged.keys(), response.status_code)
    # Through the proxy, a viewer's own identity headers are replaced by nginx's.
    viewer = people["viewer"]
    spoof = viewer.call(
        "POST",
        f"{API}/experiments/create",
        {"name": f"spoof-{uuid.uuid4().hex}"},
        headers={"X-Forwarded-User": settings.proxy_user, "X-Mlops-Proxy-Secret": secret},
    )
    assert spoof.status_code == 403
    assert viewer.user in spoof.json()["message"]


def test_remove_keeps_runs_and_drops_the_user(
    platform: Platform, people: dict[str, Client]
) -> None:
    name, password = add_user(platform, "leaver", "editor")
    leaver = Client(platform.url, name, password)
    exp = leaver.ok("POST", f"{API}/experiments/create", {"name": f"leaver-{uuid.uuid4().hex}"})[
        "experiment_id"
    ]
    leaver.ok("POST", f"{API}/runs/create", {"experiment_id": exp})
    platform.cli("users", "remove", name)
    assert leaver.call("GET", f"{API}/experiments/get", {"experiment_id": exp}).status_code == 401
    admin = people["admin"]
    runs = admin.ok("POST", f"{API}/runs/search", {"experiment_ids": [exp]})
    assert len(runs["runs"]) == 1
    users = [u["username"] for u in admin.ok("GET", f"{API}/users/list")["users"]]
    assert name not in users
    listed = [
        u["name"] for u in json.loads(platform.cli("users", "list", "--json").stdout)["users"]
    ]
    assert name not in listed


def test_bad_role_input_changes_nothing(platform: Platform) -> None:
    before = platform.cli("users", "list", "--json").stdout
    for args, needle in (
        (("users", "add", "x-bad", "--role", "superuser", "--generate"), "unknown role"),
        (("users", "role", "nobody-here", "editor"), "no user"),
        (("users", "grant", platform.user, "dataset", "1", "READ"), "unknown kind"),
        (("users", "grant", platform.user, "experiment", "0", "OWN"), "unknown level"),
    ):
        result = platform.cli(*args, check=False)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        message = (result.stdout + result.stderr).strip()
        assert needle in message and "Traceback" not in message, message
    assert platform.cli("users", "list", "--json").stdout == before


def _start_replicas(
    env_file: Path, root: Path, ports: list[int], procs: list[subprocess.Popen[str]]
) -> None:
    """One `serve` a port, each with a state folder of its own, added to ``procs``."""
    import os

    for i, port in enumerate(ports):
        env = {
            **os.environ,
            "MLOPS_SERVER_PORT": str(port),
            "MLOPS_STATE_DIR": str(root / f"replica-{i}"),
        }
        procs.append(
            subprocess.Popen(
                [*CLI, "--env-file", str(env_file), "serve"],
                env=env,
                cwd=root,
                text=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )  # fmt: skip
        )


def _wait_until_healthy(bases: list[str], procs: list[subprocess.Popen[str]]) -> None:
    for base, proc in zip(bases, procs, strict=True):
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (
                f"a replica died: {proc.stderr.read() if proc.stderr else ''}"
            )
            try:
                if requests.get(base + "/health", timeout=3).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, f"{base} not ready within 180 s"
            time.sleep(0.5)


def _first_requests_at_once(bases: list[str], headers: dict[str, str]) -> list[int]:
    """A new user's first request, twice to each replica, all four at once: the statuses."""
    results: list[int] = []
    barrier = threading.Barrier(4)

    def first_request(base: str) -> None:
        barrier.wait(60)
        r = requests.post(
            f"{base}{API}/experiments/search", json={"max_results": 1}, headers=headers,
            timeout=60,
        )  # fmt: skip
        results.append(r.status_code)

    threads = [threading.Thread(target=first_request, args=(b,)) for b in bases * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_two_servers_race_on_an_empty_auth_store() -> None:
    """Two servers start at once on an empty auth database; a new user's first request
    reaches both at once (two requests each); every request succeeds."""

    from mlops_platform.settings import load_settings
    from mlops_platform.stack.base import StateFile
    from mlops_platform.stack.postgres import Postgres
    from tests.conftest import free_port

    root = make_stack_dir("mlops-race-")
    env_file = write_env(root, server_workers="2")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, "--env-file", str(env_file), *args],
            capture_output=True, text=True, cwd=root, timeout=600, check=False,
        )  # fmt: skip

    procs: list[subprocess.Popen[str]] = []
    try:
        up = cli("up", "--json")
        log = root / "state" / "logs" / "tracking.log"
        assert up.returncode == 0, up.stderr + (log.read_text()[-3000:] if log.exists() else "")
        settings = load_settings(env_file)
        pg = Postgres(settings, StateFile.load(settings.state_dir))
        # An empty auth database: the replicas must migrate it, racing.
        pg.superuser_sql(
            f"DROP DATABASE {settings.auth_db_name} WITH (FORCE);\n"
            f"CREATE DATABASE {settings.auth_db_name} OWNER {settings.db_user};",
            database="postgres",
        )
        ports = [free_port(), free_port()]
        _start_replicas(env_file, root, ports, procs)
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        _wait_until_healthy(bases, procs)
        name = f"newcomer-{uuid.uuid4().hex[:6]}"
        headers = {
            "X-Forwarded-User": name,
            "X-Mlops-Proxy-Secret": settings.proxy_secret.get_secret_value(),
            "Host": "localhost",
        }
        results = _first_requests_at_once(bases, headers)
        assert results == [200] * 4, results
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        down_later(env_file, remove=root)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


def _register_versions_as(env: dict[str, str], uri: str, name: str) -> None:
    """register_versions with ``env`` as the process environment, restored afterwards."""
    import os

    from tests.support.models import register_versions

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        register_versions(uri, name)  # four versions, as the editor
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _champion_as_a_service_account(
    platform: Platform, people: dict[str, Client], name: str
) -> Client:
    # What serving would load: a service account granted this model and its experiment.
    svc, password = add_user(platform, "svc")
    reader = Client(platform.url, svc, password)
    assert reader.call("GET", f"{API}/registered-models/get", {"name": name}).status_code == 403
    version = people["admin"].ok(
        "GET", f"{API}/registered-models/alias", {"name": name, "alias": "champion"}
    )["model_version"]
    platform.cli("users", "grant", svc, "model", name, "READ")
    exp = people["admin"].ok("GET", f"{API}/runs/get", {"run_id": version["run_id"]})["run"]
    platform.cli("users", "grant", svc, "experiment", exp["info"]["experiment_id"], "READ")
    champion = reader.ok(
        "GET", f"{API}/registered-models/alias", {"name": name, "alias": "champion"}
    )
    assert champion["model_version"]["version"] == "3"
    tags = {t["key"]: t["value"] for t in champion["model_version"].get("tags", [])}
    assert tags.get("mlops.status") == "approved"
    return reader


def _champion_moves_in_the_log(platform: Platform, name: str) -> list[dict[str, Any]]:
    """The audit lines of the server's log about @champion of model ``name``."""
    log = (platform.settings.state_dir / "logs" / "tracking.log").read_text()
    moves = [
        json.loads(line[line.index("{") :])
        for line in log.splitlines()
        if '"mlops.audit"' in line and f'"name": "{name}"' in line and '"champion"' in line
    ]
    return moves


def test_guide_workflow_with_real_roles(
    platform: Platform, people: dict[str, Client], tmp_path: Any
) -> None:
    """An editor trains and registers, an approver approves and promotes, the editor cannot;
    a service account sees the approved version as @champion."""
    import os

    from tests.support.models import LENIENT
    from tests.support.models import iris as _iris

    uri = platform.client_env["MLFLOW_TRACKING_URI"]

    def as_user(who: Client) -> dict[str, str]:
        return {
            **os.environ,
            **platform.client_env,
            "MLFLOW_TRACKING_USERNAME": who.user,
            "MLFLOW_TRACKING_PASSWORD": who.session.auth[1],  # type: ignore[index]
        }

    editor, approver = people["editor"], people["approver"]
    name = f"flow-{uuid.uuid4().hex[:8]}"
    _register_versions_as(as_user(editor), uri, name)
    gates = tmp_path / "gates.yaml"
    gates.write_text(LENIENT)
    x, y = _iris()
    data = tmp_path / "holdout.csv"
    x.assign(target=y).to_csv(data, index=False)

    def registry(who: Client, *args: str) -> subprocess.CompletedProcess[str]:
        return platform.cli("registry", *args, check=False, env=as_user(who))

    refused = registry(editor, "approve", name, "3", "--gates", str(gates))
    assert refused.returncode == 2, refused.stderr
    assert "only approvers may write the approval tag" in refused.stderr
    assert "Traceback" not in refused.stderr
    approved = registry(approver, "approve", name, "3", "--gates", str(gates), "--json")
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout)["status"] == "approved"
    promote = ("promote", name, "--challenger", "3", "--initial", "--dataset", str(data),
               "--metric", "accuracy")  # fmt: skip
    refused = registry(editor, *promote)
    assert refused.returncode == 2 and "approver" in refused.stderr, refused.stderr
    promoted = registry(approver, *promote, "--json")
    assert promoted.returncode == 0, promoted.stderr
    reader = _champion_as_a_service_account(platform, people, name)
    verified = registry(reader, "verify", name, "@champion")
    assert verified.returncode == 0, verified.stderr
    # and the server's log names who moved @champion
    moves = _champion_moves_in_the_log(platform, name)
    assert {(m["user"], m["decision"]) for m in moves} >= {
        (approver.user, "allowed"),
    }, moves


def test_assistant_api_is_closed(platform: Platform, people: dict[str, Client]) -> None:
    """MLflow's assistant trusts loopback callers: through the proxy it is closed to all,
    and around the proxy it needs the secret like everything else."""
    settings = platform.settings
    for path in (
        "/ajax-api/3.0/mlflow/assistant/config",
        "/ajax-api/3.0/mlflow/assistant/providers",
    ):
        for role in ROLES:
            response = people[role].call("GET", path)
            assert response.status_code == 403, (role, path, response.status_code)
            assert "assistant API is closed" in response.text
        direct = requests.get(
            f"http://127.0.0.1:{settings.server_port}{path}",
            headers={"Host": "localhost", "X-Forwarded-User": settings.proxy_user},
            timeout=30,
        )
        assert direct.status_code == 401, (path, direct.status_code)
    # positive control: the same client reaches a neighbouring 3.0 route
    assert (
        people["viewer"].call("GET", "/ajax-api/3.0/mlflow/users/current/permissions").status_code
        == 200
    )


def test_first_serve_migrates_existing_users(platform: Platform) -> None:
    """An auth store without the kit's roles (a deployment from before them): the password
    file's users get MLOPS_AUTH_MIGRATE_ROLE once, the admin stays admin, and a second
    start changes nothing."""
    from mlops_platform import auth_store

    name = f"auth_migr_{uuid.uuid4().hex[:6]}"
    platform.superuser_sql(f"CREATE DATABASE {name} OWNER {platform.settings.db_user};")
    settings = platform.settings.model_copy(update={"auth_db_name": name})
    said: list[str] = []
    first = auth_store.prepare(
        settings, proxy_users=["admin", "old-1", "old-2"], progress=said.append
    )
    assert first.migrated_users == ["old-1", "old-2"] and first.migrated_role == "editor"
    assert any("2 existing proxy user(s) given the role editor" in line for line in said), said
    store = auth_store.open_store(settings)
    assert auth_store.role_of(store, "old-1") == "editor"
    assert auth_store.role_of(store, settings.proxy_user) == "admin"
    auth_store.set_role(store, "old-2", "approver")
    again = auth_store.prepare(settings, proxy_users=["admin", "old-1", "old-2", "new-3"])
    assert again.migrated_users == [] and again.revision_before == again.revision_after
    assert auth_store.role_of(store, "old-2") == "approver"  # not undone
    assert not store.has_user("new-3")  # later users get their role on first sight
    store.engine.dispose()


def test_writes_from_other_local_origins_are_refused(
    platform: Platform, people: dict[str, Client]
) -> None:
    """MLflow exempts localhost origins from its CORS check; the proxy does not (CSRF)."""
    admin = people["admin"]
    body = {"name": f"csrf-{uuid.uuid4().hex}"}
    path = f"{API}/experiments/create"
    for origin in ("http://localhost:3000", "http://127.0.0.1:8888", "http://[::1]:5173"):
        refused = admin.call("POST", path, body, headers={"Origin": origin})
        assert refused.status_code == 403 and "another local origin" in refused.text, origin
    assert (
        admin.call(
            "GET",
            f"{API}/experiments/search",
            {"max_results": 1},
            headers={"Origin": "http://localhost:3000"},
        ).status_code
        == 200
    )  # reads: MLflow's CORS rules
    own = platform.url.rstrip("/")
    assert admin.call("POST", path, body, headers={"Origin": own}).status_code == 200
    assert admin.call("POST", path, {"name": f"csrf-{uuid.uuid4().hex}"}).status_code == 200
