"""`doctor`: every check of the platform, each with status, detail and remedy.

MLflow's ``/health`` answers OK while the database is down, the schema is half
migrated, the bucket is public or the proxy lets anyone in. These checks go further:
they log in through the proxy, touch the database with a real API call, write and read
an artifact, and try the proxy without credentials.

Status: ``ok``; ``warn`` (degraded: works, but fix it); ``fail`` (broken). The doctor's
exit code is 0 when all are ok, 1 with a warning, 2 with a failure.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from mlops_platform import db, s3
from mlops_platform.errors import PlatformError
from mlops_platform.render.auth import identity_headers
from mlops_platform.settings import PlatformSettings

Status = str  # ok | warn | fail | skip
EXIT_CODES = {"ok": 0, "warn": 1, "fail": 2}
BODY_PROBE_BYTES = 1536 * 1024  # over nginx's default client_max_body_size of 1 MB
DISK_WARN_FREE = 0.10
DISK_FAIL_FREE = 0.03
DISK_FAIL_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class Finding:
    component: str
    check: str
    status: Status
    detail: str
    remedy: str = ""
    seconds: float = 0.0
    http_status: int | None = field(default=None, compare=False)  # for explain()

    def as_dict(self) -> dict[str, object]:
        return {
            "component": self.component,
            "check": self.check,
            "status": self.status,
            "detail": self.detail,
            "remedy": self.remedy,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def status(self) -> Status:
        states = {f.status for f in self.findings}
        return "fail" if "fail" in states else "warn" if "warn" in states else "ok"

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    def failing(self) -> list[Finding]:
        return [f for f in self.findings if f.status in ("fail", "warn")]

    def as_dict(self) -> dict[str, object]:
        return {
            "status": self.status,
            "exit_code": self.exit_code,
            "seconds": round(self.seconds, 2),
            "findings": [f.as_dict() for f in self.findings],
        }


# -- the checks ------------------------------------------------------------------------


def check_settings(settings: PlatformSettings) -> list[Finding]:
    problems = settings.problems()
    if not problems:
        return [Finding("settings", "valid", "ok", "settings are complete and safe")]
    return [
        Finding("settings", "valid", "fail", p, "fix the variable; `mlops-platform config check`")
        for p in problems
    ]


def check_database(settings: PlatformSettings) -> list[Finding]:
    out: list[Finding] = []
    start = time.monotonic()
    try:
        engine = db.connect_checked(settings)
        engine.dispose()
    except PlatformError as exc:
        low = exc.message.lower()
        name = "credentials" if "password authentication" in low else "reachable"
        return [Finding("database", name, "fail", exc.message, exc.fix or "")]
    out.append(
        Finding(
            "database",
            "reachable",
            "ok",
            f"{db.where(settings)} answers, credentials accepted",
            seconds=time.monotonic() - start,
        )
    )
    status = db.schema_status(settings)
    if status.state == "current":
        out.append(Finding("database", "schema", "ok", f"at head {status.head}"))
    elif status.state == "outdated":
        behind = len(db.pending_migrations(status.current))
        out.append(
            Finding(
                "database",
                "schema",
                "fail",
                f"schema at {status.current}, {behind} migration(s) behind head {status.head}",
                "take a backup, then `mlops-platform db upgrade`",
            )
        )
    elif status.state == "newer":
        out.append(
            Finding(
                "database",
                "schema",
                "fail",
                f"schema {status.current} is newer than this MLflow (head {status.head})",
                "install the MLflow version that wrote it; never downgrade a database",
            )
        )
    else:
        out.append(
            Finding(
                "database",
                "schema",
                "fail",
                "the database has no MLflow tables",
                "start the tracking server (`mlops-platform up`) or `mlops-platform db upgrade`",
            )
        )
    if status.state == "current":
        from mlops_platform import indexes

        missing = [s.name for s in indexes.list_indexes(settings) if s.state != "applied"]
        out.append(
            Finding(
                "database",
                "index pack",
                "warn" if missing else "ok",
                f"not applied: {', '.join(missing)}" if missing else "all indexes applied",
                "`mlops-platform db indexes apply` (or MLOPS_DB_APPLY_INDEXES=true)"
                if missing
                else "",
            )
        )
    return out


def check_store(settings: PlatformSettings) -> list[Finding]:
    out = _check_sse_key(settings)
    if any(f.status == "fail" for f in out):
        return out  # the round trips would fail or hang on retries: the key is the cause
    diagnosis = s3.diagnose(settings, timeout=3.0, quick=True)
    return out + [
        Finding("s3", c.name, c.status, c.detail, c.remedy, c.seconds) for c in diagnosis.checks
    ]


def _check_sse_key(settings: PlatformSettings) -> list[Finding]:
    """The local SeaweedFS's encryption key: the env file's, the one the artifacts were
    written under, and the one the running server got must be the same."""
    if not settings.local_seaweedfs:
        return []
    import json

    from mlops_platform.sse_key import KeyState, key_state

    try:
        state = json.loads((settings.state_dir / "state.json").read_text(encoding="utf-8"))
        running = state.get("services", {}).get("seaweedfs", {}).get("sse_kek")
    except (OSError, ValueError, AttributeError):
        running = None
    keys = key_state(settings, running)
    if keys.problem:
        return [Finding("s3", "encryption key", "fail", keys.problem, KeyState.FIX)]
    if keys.configured is None:
        return [
            Finding(
                "s3",
                "encryption key",
                "warn",
                "MLOPS_S3_SSE_KEK is not set: artifacts are not encrypted at rest",
                "`mlops-platform init` adds the key to your env file; then "
                "`mlops-platform down && mlops-platform up`",
            )
        ]
    return [
        Finding(
            "s3",
            "encryption key",
            "ok",
            f"SSE key {keys.configured} is the one the artifacts are written under",
        )
    ]


def _server_base(settings: PlatformSettings) -> str:
    host = settings.server_host if settings.server_host not in ("0.0.0.0", "::") else "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.server_port}"


def check_server(settings: PlatformSettings, *, timeout: float = 3.0) -> list[Finding]:
    # The installed MLflow's version from its metadata: importing MLflow for it would cost
    # the exporter's doctor child (``mlops-platform metrics``) ~150 MB and seconds.
    from importlib.metadata import version as installed_version

    kit_mlflow = installed_version("mlflow")
    start = time.monotonic()
    try:
        response = requests.get(
            _server_base(settings) + "/version",
            headers=identity_headers(settings),
            timeout=timeout,
        )
    except requests.RequestException as exc:
        return [
            Finding(
                "tracking",
                "answers",
                "fail",
                f"the tracking server at {_server_base(settings)} does not answer "
                f"({exc.__class__.__name__})",
                "`mlops-platform up` starts it; `mlops-platform logs tracking` says why it stopped",
            )
        ]
    took = time.monotonic() - start
    version = response.text.strip()
    if response.status_code != 200:
        return [
            Finding(
                "tracking",
                "answers",
                "fail",
                f"GET /version answered {response.status_code}",
                "`mlops-platform logs tracking`",
                took,
            )
        ]
    if version != kit_mlflow:
        return [
            Finding(
                "tracking",
                "version",
                "fail",
                f"the server runs MLflow {version}, this kit has {kit_mlflow}",
                "restart the server with the kit's MLflow (`mlops-platform down && "
                "mlops-platform up`, or roll out the new image)",
                took,
            )
        ]
    return [
        Finding("tracking", "version", "ok", f"MLflow {version} answers", seconds=took),
        *check_identity(settings, timeout=timeout),
    ]


def check_identity(settings: PlatformSettings, *, timeout: float = 3.0) -> list[Finding]:
    """Permissions on: the server refuses a request without the proxy secret, and its user
    store is at MLflow's head."""
    if not settings.identity_enabled:
        return [
            Finding(
                "tracking",
                "permissions",
                "warn",
                "permissions are off: every proxy user is an MLflow admin",
                "set MLOPS_AUTH_ENABLED=true and restart (docs/access.md)",
            )
        ]
    from mlops_platform import auth_store

    out = []
    url = _server_base(settings) + "/api/2.0/mlflow/experiments/get?experiment_id=0"
    public = urlsplit(settings.resolved_public_url).netloc
    forged = {"X-Forwarded-User": settings.proxy_user, "Host": public}
    detail = ""
    try:
        status = requests.get(url, headers=forged, timeout=timeout).status_code
    except requests.RequestException as exc:
        status = 0
        detail = exc.__class__.__name__
    if status == 401:
        out.append(
            Finding("tracking", "identity", "ok", "a user header without the proxy secret: 401")
        )
    else:
        out.append(
            Finding(
                "tracking",
                "identity",
                "fail",
                f"a user header without the proxy secret got {status or detail}, not 401",
                "restart the server with `mlops-platform up` (it runs --app-name mlops-auth)",
            )
        )
    try:
        current, head = auth_store.revision(settings), auth_store.head_revision()
    except PlatformError as exc:
        return [*out, Finding("database", "auth store", "fail", exc.message, exc.fix or "")]
    if current == head:
        out.append(Finding("database", "auth store", "ok", f"users and grants at head {head}"))
    else:
        out.append(
            Finding(
                "database",
                "auth store",
                "fail",
                f"MLflow's user store is at {current or 'nothing'}, MLflow needs {head}",
                "`mlops-platform db upgrade` (or restart: `serve` migrates it)",
            )
        )
    return out


def _proxy_target(settings: PlatformSettings) -> tuple[str, dict[str, str], bool]:
    """Base URL to connect to, headers (the public Host) and whether to verify TLS."""
    public = urlsplit(settings.resolved_public_url)
    if not settings.proxy_enabled:
        return _server_base(settings), {"Host": public.netloc}, True
    if settings.tls_enabled:
        return settings.resolved_public_url, {}, True
    host = settings.proxy_host if settings.proxy_host not in ("0.0.0.0", "::") else "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.proxy_port}", {"Host": public.netloc}, True


def check_proxy(settings: PlatformSettings, *, timeout: float = 5.0) -> list[Finding]:
    """A real, authenticated API call (it reads the database), an artifact round trip of
    over 1 MB through the proxy, and an anonymous request that must be refused."""
    out: list[Finding] = []
    base, headers, verify = _proxy_target(settings)
    public_host = urlsplit(settings.resolved_public_url).netloc
    auth = (
        (settings.proxy_user, settings.proxy_password.get_secret_value())
        if settings.proxy_enabled
        else None
    )
    session = requests.Session()
    session.headers.update(headers)
    session.verify = verify
    api = base + "/api/2.0/mlflow/experiments/search"
    start = time.monotonic()
    try:
        response = session.post(api, json={"max_results": 1}, auth=auth, timeout=timeout)
    except requests.RequestException as exc:
        return [
            Finding(
                "proxy",
                "answers",
                "fail",
                f"{base} does not answer ({exc.__class__.__name__})",
                "`mlops-platform up` starts nginx; `mlops-platform logs nginx`",
            )
        ]
    took = time.monotonic() - start
    if response.status_code == 200:
        out.append(
            Finding(
                "proxy",
                "api",
                "ok",
                f"authenticated search_experiments with Host {public_host}: 200",
                seconds=took,
            )
        )
    elif response.status_code == 401:
        out.append(
            Finding(
                "proxy",
                "api",
                "fail",
                "the proxy refused the configured user (401)",
                "MLOPS_PROXY_PASSWORD does not match the password file; rerun `mlops-platform up` "
                "(it rewrites the file) or fix MLOPS_PROXY_USERS_FILE",
                took,
            )
        )
    elif response.status_code == 429:
        out.append(
            Finding(
                "proxy",
                "api",
                "fail",
                "the proxy throttles this address (429): too many requests or failed logins",
                "failed logins lock an address out for 60 s (docs/proxy.md): wait, then find "
                "who guessed in the proxy's access log; or raise MLOPS_PROXY_RATE_LIMIT",
                took,
            )
        )
    elif response.status_code == 403 and "host" in response.text.lower():
        out.append(
            Finding(
                "proxy",
                "public host",
                "fail",
                f"MLflow refuses the public Host {public_host} (403)",
                "set MLOPS_PUBLIC_URL to the URL clients use (or add it to MLOPS_ALLOWED_HOSTS)",
                took,
            )
        )
    else:
        body = response.text.strip()
        # nginx's error pages are HTML: their first line says nothing the status does not.
        detail = body.splitlines()[0][:160] if body and not body.startswith("<") else ""
        out.append(
            Finding(
                "proxy",
                "api",
                "fail",
                f"search_experiments answered {response.status_code} {detail}".strip(),
                TRACKING_DOWN
                if response.status_code in GATEWAY_ERRORS
                else "the tracking server failed, usually on the database (see the database "
                "rows): `mlops-platform logs tracking`",
                took,
                response.status_code,
            )
        )
    out.append(_artifact_round_trip(session, base, auth, timeout))
    if settings.proxy_enabled:
        try:
            anonymous = session.post(api, json={"max_results": 1}, timeout=timeout)
            # nginx's refusal asks for a password; a bare 401 is the tracking server's own
            # (permissions on): the proxy let the request through.
            asked = "basic" in anonymous.headers.get("WWW-Authenticate", "").lower()
            refused = anonymous.status_code == 429 or (anonymous.status_code == 401 and asked)
            got = f"{anonymous.status_code}" + (
                " from the tracking server, not the proxy" if anonymous.status_code == 401 else ""
            )
            out.append(
                Finding(
                    "proxy",
                    "anonymous refused",
                    "ok" if refused else "fail",
                    f"anonymous request: {anonymous.status_code}"
                    if refused
                    else f"an anonymous request got {got}: the proxy lets anyone in",
                    ""
                    if refused
                    else "the nginx site lacks auth_basic: restart the proxy from the kit's "
                    "template (`mlops-platform down && mlops-platform up`)",
                )
            )
        except requests.RequestException as exc:
            out.append(Finding("proxy", "anonymous refused", "fail", str(exc)))
    else:
        out.append(
            Finding(
                "proxy",
                "anonymous refused",
                "warn",
                "the proxy is disabled: the server takes requests without authentication",
                "set MLOPS_PROXY_ENABLED=true",
            )
        )
    return out


def _artifact_round_trip(
    session: requests.Session, base: str, auth: Any, timeout: float
) -> Finding:
    path = f".mlops-platform-doctor/{uuid.uuid4().hex}.bin"
    url = f"{base}/api/2.0/mlflow-artifacts/artifacts/{path}"
    body = uuid.uuid4().bytes * (BODY_PROBE_BYTES // 16)
    start = time.monotonic()
    try:
        put = session.put(url, data=body, auth=auth, timeout=timeout * 4)
        if put.status_code == 413:
            return Finding(
                "proxy",
                "body over 1 MB",
                "fail",
                "the proxy refused a 1.5 MB artifact upload (413)",
                "raise MLOPS_PROXY_BODY_SIZE (e.g. 5g) and restart the proxy",
            )
        if put.status_code != 200:
            return Finding(
                "proxy",
                "artifact",
                "fail",
                f"artifact upload through the server answered {put.status_code}",
                artifact_remedy(put.status_code, []),
                http_status=put.status_code,
            )
        got = session.get(url, auth=auth, timeout=timeout * 4)
        same = got.status_code == 200 and got.content == body
        return Finding(
            "proxy",
            "artifact",
            "ok" if same else "fail",
            "1.5 MB artifact written and read back through the proxy"
            if same
            else f"artifact read back: {got.status_code}, {len(got.content)} bytes",
            "" if same else artifact_remedy(got.status_code, []),
            time.monotonic() - start,
            got.status_code,
        )
    except requests.RequestException as exc:
        return Finding("proxy", "artifact", "fail", str(exc)[:200], artifact_remedy(None, []))
    finally:
        try:
            session.delete(url, auth=auth, timeout=timeout)
        except requests.RequestException:
            pass


GATEWAY_ERRORS = (502, 503, 504)
TRACKING_DOWN = (
    "nginx cannot reach the tracking server: `mlops-platform up` starts it; "
    "`mlops-platform logs tracking` says why it stopped"
)


def artifact_remedy(http_status: int | None, findings: list[Finding]) -> str:
    """The fix of a failed artifact round trip, by its cause: the other checks' findings
    (the store's key, the store, the tracking server) or the answer's status."""
    failed = {
        (f.component, f.check)
        for f in findings
        if f.status == "fail" and (f.component, f.check) != ("proxy", "artifact")
    }
    if ("s3", "encryption key") in failed:
        return "the store has the wrong encryption key: the `encryption key` row's fix"
    if any(component == "s3" for component, _ in failed):
        return "the object store fails (see the s3 rows): `mlops-platform s3 diagnose`"
    if ("tracking", "answers") in failed or http_status in GATEWAY_ERRORS:
        return TRACKING_DOWN
    if ("proxy", "api") in failed:
        return "the same cause as the proxy's `api` row: its fix"
    if http_status in (401, 403):
        return (
            "the server refused the configured user (MLOPS_PROXY_USER) the artifact: "
            "give it the admin role (`mlops-platform users role NAME admin`, docs/access.md)"
        )
    if http_status is None:
        return "the proxy did not answer in time: `mlops-platform logs nginx`"
    if any(f.component == "s3" for f in findings):
        # The store's own checks passed: the server's side of the round trip failed.
        return "the store's checks pass: `mlops-platform logs tracking` says what failed"
    return "`mlops-platform s3 diagnose`, then `mlops-platform logs tracking`"


def explain(findings: list[Finding]) -> list[Finding]:
    """Findings whose fix depends on the others get the fix of their real cause."""
    out = []
    for f in findings:
        if (f.component, f.check) == ("proxy", "artifact") and f.status == "fail":
            f = replace(f, remedy=artifact_remedy(f.http_status, findings))
        out.append(f)
    return out


def _disk(component: str, path: Path) -> Finding:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    free = usage.free / usage.total if usage.total else 0.0
    gib = usage.free / 2**30
    detail = f"{gib:.1f} GiB free ({free:.0%}) under {path}"
    if free < DISK_FAIL_FREE or usage.free < DISK_FAIL_BYTES:
        return Finding("disk", component, "fail", detail, f"free space under {probe}")
    if free < DISK_WARN_FREE:
        return Finding("disk", component, "warn", detail, f"free space under {probe} soon")
    return Finding("disk", component, "ok", detail)


def check_disk(settings: PlatformSettings) -> list[Finding]:
    out = [_disk("state folder", settings.state_dir)]
    if not settings.external_db:
        out.append(_disk("postgres data", settings.state_dir / "postgres" / "data"))
    return out


CHECKS: tuple[tuple[str, Callable[[PlatformSettings], list[Finding]]], ...] = (
    ("settings", check_settings),
    ("database", check_database),
    ("s3", check_store),
    ("tracking", check_server),
    ("proxy", check_proxy),
    ("disk", check_disk),
)


def doctor(
    settings: PlatformSettings,
    *,
    progress: Callable[[str], None] | None = None,
    skip: Iterable[str] = (),
) -> Report:
    """Run every check (but the groups named in ``skip``); a check that raises becomes a
    failure, never a traceback."""
    report = Report()
    start = time.monotonic()
    skipped = set(skip)
    for name, check in CHECKS:
        if name in skipped:
            continue
        if progress:
            progress(f"checking {name}")
        try:
            report.findings += check(settings)
        except PlatformError as exc:
            report.findings.append(Finding(name, "error", "fail", exc.message, exc.fix or ""))
        except Exception as exc:  # noqa: BLE001 - the doctor reports, it does not crash
            report.findings.append(
                Finding(name, "error", "fail", f"{exc.__class__.__name__}: {exc}"[:300])
            )
    report.findings = explain(report.findings)
    report.seconds = time.monotonic() - start
    return report


def liveness(settings: PlatformSettings, *, timeout: float = 3.0) -> Finding:
    """The tracking process answers (GET /health on the server itself)."""
    try:
        response = requests.get(_server_base(settings) + "/health", timeout=timeout)
        if response.status_code == 200:
            return Finding("tracking", "live", "ok", "GET /health: 200")
        return Finding("tracking", "live", "fail", f"GET /health: {response.status_code}")
    except requests.RequestException as exc:
        return Finding(
            "tracking",
            "live",
            "fail",
            f"{_server_base(settings)} does not answer ({exc.__class__.__name__})",
            "restart the server (`mlops-platform up`); `mlops-platform logs tracking` says why",
        )


def readiness(settings: PlatformSettings) -> Report:
    """The server answers and can reach its database (at head) and its store."""
    report = Report()
    start = time.monotonic()
    report.findings.append(liveness(settings))
    try:
        report.findings += [f for f in check_database(settings) if f.check != "index pack"]
    except PlatformError as exc:
        report.findings.append(Finding("database", "error", "fail", exc.message, exc.fix or ""))
    try:
        s3.client(settings, timeout=3, retries=1).head_bucket(Bucket=settings.s3_bucket)
        report.findings.append(Finding("s3", "bucket", "ok", f"{settings.s3_bucket} reachable"))
    except Exception as exc:  # noqa: BLE001 - a probe reports
        report.findings.append(
            Finding(
                "s3", "bucket", "fail", f"{exc.__class__.__name__}", "`mlops-platform s3 diagnose`"
            )
        )
    report.seconds = time.monotonic() - start
    return report
