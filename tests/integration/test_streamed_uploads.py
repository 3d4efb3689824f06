"""Artifact uploads streamed to the store, and every artifact byte through the proxy.

Real nginx, the real tracking server (permissions on), real SeaweedFS, MLflow's own
client in processes of its own: what the client calls is read from nginx's access log.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from benchmarks.harness.artifacts import peak_mb
from tests.integration.conftest import Platform
from tests.support.users import add_user

pytestmark = pytest.mark.integration

API = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"


def _log(platform: Platform) -> Path:
    return platform.settings.state_dir / "nginx" / "logs" / "access.log"


def _entries_since(platform: Platform, offset: int, count: int) -> list[dict[str, Any]]:
    """nginx's access-log entries after byte OFFSET, once there are at least COUNT (nginx
    writes a line as its response ends)."""
    entries: list[dict[str, Any]] = []
    for _ in range(100):
        with open(_log(platform), "rb") as handle:
            handle.seek(offset)
            entries = [json.loads(line) for line in handle.read().splitlines() if line]
        if len(entries) >= count:
            return entries
        time.sleep(0.1)
    raise AssertionError(f"{len(entries)} access-log lines, expected {count}: {entries}")


def _new_run(admin: requests.Session, base: str) -> tuple[str, str]:
    name = f"up-{uuid.uuid4().hex[:8]}"
    exp = admin.post(base + API + "/experiments/create", json={"name": name}, timeout=60)
    exp_id = exp.json()["experiment_id"]
    run = admin.post(base + API + "/runs/create", json={"experiment_id": exp_id}, timeout=60)
    return exp_id, run.json()["run"]["info"]["run_id"]


def _admin(platform: Platform) -> requests.Session:
    session = requests.Session()
    session.auth = platform.auth
    return session


def _mlflow_client(platform: Platform, script: str, **env: str) -> str:
    """SCRIPT run by MLflow's own client in a process of its own, as the platform's admin;
    its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, **platform.client_env, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


CLIENT_ROUND_TRIP = """
import mlflow
client = mlflow.MlflowClient()
client.log_artifact({run!r}, {src!r}, "model")
print(client.download_artifacts({run!r}, "model/weights.bin", {dst!r}))
"""


@pytest.mark.parametrize("forced", [False, True], ids=["as-advertised", "client-forces-multipart"])
def test_mlflows_client_moves_artifacts_through_the_proxy_only(
    platform: Platform, tmp_path: Path, forced: bool
) -> None:
    """MLflow 3.17's client moves the bytes of an S3-backed server's artifacts straight to
    and from the store with presigned URLs when the server says it can (every download,
    uploads from MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE): an address clients of a
    compose or Kubernetes deployment cannot reach. The kit's server says it cannot; a
    client forced onto those endpoints is refused as MLflow refuses a store without them,
    and falls back. Either way the upload and the download cross nginx, whole."""
    base, admin = platform.url, _admin(platform)
    info = admin.get(base + "/api/3.0/mlflow/server-info", timeout=60).json()
    assert (info["multipart_uploads_enabled"], info["multipart_downloads_enabled"]) == (
        False,
        False,
    ), info
    assert info["store_type"] == "SqlStore"  # the rest is MLflow's own payload

    _exp, run_id = _new_run(admin, base)
    payload = os.urandom(3 * 1024 * 1024 + 99)
    src = tmp_path / "weights.bin"
    src.write_bytes(payload)
    dst = tmp_path / "down"
    dst.mkdir()
    env = {"MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE": str(1024 * 1024)}  # 3 MB qualifies
    if forced:
        env |= {
            "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "true",
            "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD": "true",
        }
    offset = _log(platform).stat().st_size
    out = _mlflow_client(
        platform, CLIENT_ROUND_TRIP.format(run=run_id, src=str(src), dst=str(dst)), **env
    )
    assert Path(out.strip().splitlines()[-1]).read_bytes() == payload

    entries = _entries_since(platform, offset, 2)
    calls = [(e["method"], e["uri"].split("?")[0], e["status"]) for e in entries]
    key = f"{ARTIFACTS}/{_exp}/{run_id}/artifacts/model/weights.bin"
    assert ("PUT", key, 200) in calls, calls
    puts = [e for e in entries if e["method"] == "PUT"]
    assert [int(e["request_bytes"]) > len(payload) for e in puts] == [True], puts
    gets = [e for e in entries if e["method"] == "GET" and e["uri"] == key]
    assert [int(e["response_bytes"]) > len(payload) for e in gets] == [True], gets
    store_urls = [c for c in calls if "/mpu/" in c[1] or "presigned" in c[1]]
    if forced:  # asked, refused with MLflow's "not supported" (501), then the proxied route
        assert {c[2] for c in store_urls} == {501}, store_urls
        assert {c[1].split("/")[4] for c in store_urls} == {"mpu", "presigned"}, store_urls
    else:
        assert store_urls == [], store_urls


def test_an_upload_reaches_the_store_without_a_file_on_the_server(platform: Platform) -> None:
    """A 48 MB upload through the proxy: the object is the body (a multipart upload, as
    MLflow's own upload of a file that size would be, with MLflow's content type), and the
    server's temporary folder never holds it (MLflow's own view writes the body there
    first: checked while the body arrives)."""
    base, admin = platform.url, _admin(platform)
    exp, run_id = _new_run(admin, base)
    payload = os.urandom(48 * 1024 * 1024)

    def slowly() -> Any:  # the body arrives over a second or more: the sampler sees it
        for i in range(0, len(payload), 1024 * 1024):
            yield payload[i : i + 1024 * 1024]
            time.sleep(0.02)

    with peak_mb(platform.settings.state_dir / "tmp", every=0.02) as peak:
        put = admin.put(f"{base}{ARTIFACTS}/{exp}/{run_id}/artifacts/w/model.json", data=slowly())
    assert put.status_code == 200, put.text
    assert peak[0] < 1.0, f"the server's temporary folder held {peak[0]:.1f} MB"

    s3 = platform_s3(platform)
    key = f"{platform.settings.s3_prefix}/{exp}/{run_id}/artifacts/w/model.json"
    head = s3.head_object(Bucket=platform.settings.s3_bucket, Key=key)
    assert head["ContentLength"] == len(payload)
    assert head["ContentType"] == mimetypes.guess_type("model.json")[0]
    assert head["ETag"].strip('"').endswith("-6"), head["ETag"]  # six 8 MB parts
    got = admin.get(f"{base}{ARTIFACTS}/{exp}/{run_id}/artifacts/w/model.json", timeout=120)
    assert hashlib.sha256(got.content).digest() == hashlib.sha256(payload).digest()


class SlowBody:
    """A body of known length (requests sends its Content-Length) that arrives in 1 MB
    reads over a second or more."""

    def __init__(self, payload: bytes) -> None:
        self.payload, self.at = payload, 0

    def __len__(self) -> int:
        return len(self.payload) - self.at

    def read(self, size: int = -1) -> bytes:
        time.sleep(0.02)
        piece = self.payload[self.at : self.at + min(size if size > 0 else 1 << 20, 1 << 20)]
        self.at += len(piece)
        return piece


def test_an_upload_of_known_length_goes_to_the_store_in_one_put(platform: Platform) -> None:
    """A 24 MB upload that says its length (as MLflow's client's do) is one PUT of the
    object: no parts (an ETag without a part count), MLflow's type and encoding on it,
    the bytes whole, nothing in the server's temporary folder meanwhile."""
    base, admin = platform.url, _admin(platform)
    exp, run_id = _new_run(admin, base)
    payload = os.urandom(24 * 1024 * 1024)
    url = f"{base}{ARTIFACTS}/{exp}/{run_id}/artifacts/d/data.csv.gz"
    with peak_mb(platform.settings.state_dir / "tmp", every=0.02) as peak:
        put = admin.put(url, data=SlowBody(payload), timeout=120)
    assert put.status_code == 200, put.text
    assert put.request.headers.get("Content-Length") == str(len(payload))
    assert peak[0] < 1.0, f"the server's temporary folder held {peak[0]:.1f} MB"

    s3, bucket = platform_s3(platform), platform.settings.s3_bucket
    key = f"{platform.settings.s3_prefix}/{exp}/{run_id}/artifacts/d/data.csv.gz"
    head = s3.head_object(Bucket=bucket, Key=key)
    assert "-" not in head["ETag"], head["ETag"]  # one PUT, not a multipart upload
    assert (head["ContentLength"], head["ContentType"], head["ContentEncoding"]) == (
        len(payload), "text/csv", "gzip"
    )  # fmt: skip
    stored = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(stored).digest() == hashlib.sha256(payload).digest()


def platform_s3(platform: Platform) -> Any:
    from mlops_platform import s3

    return s3.client(platform.settings, purpose="admin", timeout=60)


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_a_cut_upload_leaves_no_object_and_no_open_upload(platform: Platform, framing: str) -> None:
    """A client that sends 20 MB of 40 and goes away: no object, whether the body was on
    its way in one PUT (a length announced) or in parts (sent in chunks: the multipart
    upload begun for it is aborted, none left open under that key)."""
    base, admin = platform.url, _admin(platform)
    exp, run_id = _new_run(admin, base)
    path = f"{ARTIFACTS}/{exp}/{run_id}/artifacts/cut/model.bin"
    port = int(base.rsplit(":", 1)[1])
    auth = requests.auth._basic_auth_str(*platform.auth)  # type: ignore[attr-defined]
    framed = {
        "length": f"Content-Length: {40 * 1024 * 1024}",
        "chunked": "Transfer-Encoding: chunked",
    }[framing]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(
            (
                f"PUT {path} HTTP/1.1\r\nHost: localhost:{port}\r\nAuthorization: {auth}\r\n"
                f"{framed}\r\n\r\n"
            ).encode()
        )
        chunk = os.urandom(1024 * 1024)
        if framing == "chunked":
            chunk = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        for _ in range(20):
            conn.sendall(chunk)
        time.sleep(1.0)  # the server has begun sending to the store by now
    key = f"{platform.settings.s3_prefix}/{exp}/{run_id}/artifacts/cut/model.bin"
    s3, bucket = platform_s3(platform), platform.settings.s3_bucket
    left: Any = None
    for _ in range(100):  # the server notices the cut and aborts: give it a moment
        left = s3.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", [])
        if not left:
            break
        time.sleep(0.1)
    assert left == [], left
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=key).get("Contents", [])
    assert listed == [], listed
    assert admin.get(base + path, timeout=60).status_code != 200


def test_an_upload_needs_mlflows_edit_permission(platform: Platform) -> None:
    """The streamed upload keeps MLflow's check: READ on the experiment is refused (403)
    and writes nothing; EDIT uploads."""
    base, admin = platform.url, _admin(platform)
    exp, run_id = _new_run(admin, base)
    svc, password = add_user(platform, "svc-up")
    writer = requests.Session()
    writer.auth = (svc, password)
    url = f"{base}{ARTIFACTS}/{exp}/{run_id}/artifacts/perm/w.bin"
    assert writer.put(url, data=b"x" * 1000, timeout=60).status_code == 403
    platform.cli("users", "grant", svc, "experiment", str(exp), "READ")
    assert writer.put(url, data=b"x" * 1000, timeout=60).status_code == 403
    assert admin.get(url, timeout=60).status_code != 200  # nothing was written
    platform.cli("users", "grant", svc, "experiment", str(exp), "EDIT")
    assert writer.put(url, data=b"y" * 1000, timeout=60).status_code == 200
    assert admin.get(url, timeout=60).content == b"y" * 1000


def test_many_uploads_at_once_all_arrive(platform: Platform) -> None:
    """Ten uploads of 24 MB at once, more than the worker's shared pool of threads
    (os.cpu_count() + 4): each upload has a sending thread of its own and its pipe wakes
    the request on the event loop, so none waits for a thread another upload holds."""
    from concurrent.futures import ThreadPoolExecutor

    base, admin = platform.url, _admin(platform)
    exp, run_id = _new_run(admin, base)
    payloads = [os.urandom(24 * 1024 * 1024) for _ in range(10)]

    def upload(i: int) -> int:
        session = _admin(platform)
        url = f"{base}{ARTIFACTS}/{exp}/{run_id}/artifacts/many/{i}.bin"
        return session.put(url, data=payloads[i], timeout=120).status_code

    with ThreadPoolExecutor(len(payloads)) as pool:
        codes = list(pool.map(upload, range(len(payloads))))
    assert codes == [200] * len(payloads)
    for i, payload in enumerate(payloads):
        got = admin.get(f"{base}{ARTIFACTS}/{exp}/{run_id}/artifacts/many/{i}.bin", timeout=120)
        assert hashlib.sha256(got.content).digest() == hashlib.sha256(payload).digest()
