"""The doctor's proxy checks: a real, authenticated API call, an artifact round trip of
over 1 MB through the proxy, and an anonymous request that must be refused."""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import requests

from mlops_platform.checks import DOCTOR_PROBE_FOLDER, CheckResult
from mlops_platform.health.remedies import GATEWAY_ERRORS, TRACKING_DOWN, artifact_remedy
from mlops_platform.health.server import server_base
from mlops_platform.hosts import url_host
from mlops_platform.settings import PlatformSettings

BODY_PROBE_BYTES = 1536 * 1024  # over nginx's default client_max_body_size of 1 MB


def _proxy_target(settings: PlatformSettings) -> tuple[str, dict[str, str], bool]:
    """Base URL to connect to, headers (the public Host) and whether to verify TLS."""
    public = urlsplit(settings.resolved_public_url)
    if not settings.proxy_enabled:
        return server_base(settings), {"Host": public.netloc}, True
    if settings.tls_enabled:
        return settings.resolved_public_url, {}, True
    base = f"http://{url_host(settings.proxy_host)}:{settings.proxy_port}"
    return base, {"Host": public.netloc}, True


def check_proxy(settings: PlatformSettings, *, timeout: float = 5.0) -> list[CheckResult]:
    """A real, authenticated API call (it reads the database), an artifact round trip of
    over 1 MB through the proxy, and an anonymous request that must be refused."""
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
            CheckResult(
                "proxy",
                "answers",
                "fail",
                f"{base} does not answer ({exc.__class__.__name__})",
                "`mlops-platform up` starts nginx; `mlops-platform logs nginx`",
            )
        ]
    out = [_api(response, public_host, time.monotonic() - start)]
    out.append(_artifact_round_trip(session, base, auth, timeout))
    if settings.proxy_enabled:
        out.append(_anonymous(session, api, timeout))
    else:
        out.append(
            CheckResult(
                "proxy",
                "anonymous refused",
                "warn",
                "the proxy is disabled: the server takes requests without authentication",
                "set MLOPS_PROXY_ENABLED=true",
            )
        )
    return out


def _api(response: requests.Response, public_host: str, took: float) -> CheckResult:
    """The authenticated search's answer, read."""
    if response.status_code == 200:
        return CheckResult(
            "proxy",
            "api",
            "ok",
            f"authenticated search_experiments with Host {public_host}: 200",
            seconds=took,
        )
    if response.status_code == 401:
        return CheckResult(
            "proxy",
            "api",
            "fail",
            "the proxy refused the configured user (401)",
            "MLOPS_PROXY_PASSWORD does not match the password file; rerun `mlops-platform up` "
            "(it rewrites the file) or fix MLOPS_PROXY_USERS_FILE",
            took,
        )
    if response.status_code == 429:
        return CheckResult(
            "proxy",
            "api",
            "fail",
            "the proxy throttles this address (429): too many requests or failed logins",
            "failed logins lock an address out for 60 s (docs/proxy.md): wait, then find "
            "who guessed in the proxy's access log; or raise MLOPS_PROXY_RATE_LIMIT",
            took,
        )
    if response.status_code == 403 and "host" in response.text.lower():
        return CheckResult(
            "proxy",
            "public host",
            "fail",
            f"MLflow refuses the public Host {public_host} (403)",
            "set MLOPS_PUBLIC_URL to the URL clients use (or add it to MLOPS_ALLOWED_HOSTS)",
            took,
        )
    body = response.text.strip()
    # nginx's error pages are HTML: their first line says nothing the status does not.
    detail = body.splitlines()[0][:160] if body and not body.startswith("<") else ""
    return CheckResult(
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


def _anonymous(session: requests.Session, api: str, timeout: float) -> CheckResult:
    """A request without credentials must be refused by the proxy itself."""
    try:
        anonymous = session.post(api, json={"max_results": 1}, timeout=timeout)
    except requests.RequestException as exc:
        return CheckResult("proxy", "anonymous refused", "fail", str(exc))
    # nginx's refusal asks for a password; a bare 401 is the tracking server's own
    # (permissions on): the proxy let the request through.
    asked = "basic" in anonymous.headers.get("WWW-Authenticate", "").lower()
    refused = anonymous.status_code == 429 or (anonymous.status_code == 401 and asked)
    got = f"{anonymous.status_code}" + (
        " from the tracking server, not the proxy" if anonymous.status_code == 401 else ""
    )
    return CheckResult(
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


def _artifact_round_trip(
    session: requests.Session, base: str, auth: Any, timeout: float
) -> CheckResult:
    path = f"{DOCTOR_PROBE_FOLDER}{uuid.uuid4().hex}.bin"
    url = f"{base}/api/2.0/mlflow-artifacts/artifacts/{path}"
    body = uuid.uuid4().bytes * (BODY_PROBE_BYTES // 16)
    start = time.monotonic()
    try:
        put = session.put(url, data=body, auth=auth, timeout=timeout * 4)
        if put.status_code == 413:
            return CheckResult(
                "proxy",
                "body over 1 MB",
                "fail",
                "the proxy refused a 1.5 MB artifact upload (413)",
                "raise MLOPS_PROXY_BODY_SIZE (e.g. 5g) and restart the proxy",
            )
        if put.status_code != 200:
            return CheckResult(
                "proxy",
                "artifact",
                "fail",
                f"artifact upload through the server answered {put.status_code}",
                artifact_remedy(put.status_code, []),
                http_status=put.status_code,
            )
        got = session.get(url, auth=auth, timeout=timeout * 4)
        same = got.status_code == 200 and got.content == body
        return CheckResult(
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
        return CheckResult("proxy", "artifact", "fail", str(exc)[:200], artifact_remedy(None, []))
    finally:
        try:
            session.delete(url, auth=auth, timeout=timeout)
        except requests.RequestException:
            pass
