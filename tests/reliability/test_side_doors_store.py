"""Side doors of the object store, and what the kit leaves on disk (issue 13).

Black-box, on a real local stack of its own: SeaweedFS's internal APIs are probed the way
another user of the host would (loopback is open to every local user), each refusal next
to a positive control that proves the probe could have succeeded; each S3 key is tried
outside its purpose; a model version pointing at another bucket is registered through the
proxy; and every file the kit created in a full run (up, a logged artifact, a backup,
down) is checked for its mode and then opened as an unrelated OS user.

One module, because its tests share one module-scoped stack of their own (`stack`);
split, each part would start its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import pwd
import re
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import psutil
import pytest
import requests
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from pydantic import SecretStr

from mlops_platform import s3
from mlops_platform.bootstrap import write_private
from mlops_platform.render.server import server_env
from mlops_platform.settings import PlatformSettings, load_settings
from mlops_platform.stack.seaweedfs import identities
from tests.integration.conftest import make_stack_dir, require_binaries, run_cli, write_env
from tests.support.stacks import down_later, scratch_dir

pytestmark = pytest.mark.integration

# No such user on the host: "anyone else". Processes may run as a bare uid as root.
OTHER_UID = 54321
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
SETTINGS_FRAME = 0x04


@dataclass
class Stack:
    root: Path
    env_file: Path
    settings: PlatformSettings
    url: str

    @property
    def store(self) -> Path:
        return self.settings.state_dir / "seaweedfs"

    def service(self, name: str) -> dict[str, Any]:
        state = json.loads((self.settings.state_dir / "state.json").read_text())
        return dict(state["services"][name])

    def client(self, purpose: str = "server") -> Any:
        return s3.client(self.settings, retries=1, purpose=purpose)  # type: ignore[arg-type]

    def cli(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_cli(self.env_file, *args, env=env)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    require_binaries()
    root = make_stack_dir("mlops-doors-")
    env_file = write_env(root)
    up = run_cli(env_file, "up", "--json", timeout=600)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield Stack(root, env_file, load_settings(env_file), json.loads(up.stdout)["url"])
    finally:
        down_later(env_file, remove=root)


@pytest.fixture
def other_bucket(stack: Stack) -> Iterator[str]:
    """A second bucket with a secret in it, made with the admin key."""
    name = f"doors-{uuid.uuid4().hex[:8]}"
    admin = stack.client("admin")
    admin.create_bucket(Bucket=name)
    admin.put_object(Bucket=name, Key="secret.txt", Body=b"not for the tracking server")
    yield name
    for obj in admin.list_objects_v2(Bucket=name).get("Contents", []):
        admin.delete_object(Bucket=name, Key=obj["Key"])
    admin.delete_bucket(Bucket=name)


def refused(call: Any) -> str:
    """The S3 error code of ``call``; fails the test when the call succeeds."""
    try:
        call()
    except ClientError as exc:
        return s3.error_code(exc)
    raise AssertionError("the store accepted a call it must refuse")


# -- SeaweedFS's own ports ------------------------------------------------------------


def weed_listeners(stack: Stack) -> set[tuple[str, int, int]]:
    """(address, port, socket type) of every inet socket weed listens on."""
    proc = psutil.Process(stack.service("seaweedfs")["pid"])
    found = set()
    for p in [proc, *proc.children(recursive=True)]:
        for conn in p.net_connections(kind="inet"):
            if conn.type == socket.SOCK_DGRAM or conn.status == psutil.CONN_LISTEN:
                found.add((conn.laddr.ip, conn.laddr.port, int(conn.type)))
    return found


def test_weed_listens_on_loopback_only_and_on_no_port_we_do_not_know(stack: Stack) -> None:
    ports = stack.service("seaweedfs")["internal_ports"]
    listeners = weed_listeners(stack)
    assert listeners, "found no listening socket of weed: the probe is broken"
    assert {ip for ip, _, _ in listeners} == {"127.0.0.1"}, listeners
    assert {kind for _, _, kind in listeners} == {int(socket.SOCK_STREAM)}, "weed opened UDP"
    expected = {stack.settings.s3_port, ports["s3_grpc"]}
    for name in ("master", "volume", "filer"):
        expected |= {ports[name], ports[name] + 10000}
    assert {port for _, port, _ in listeners} == expected


def test_weed_unix_sockets_are_closed_to_others(stack: Stack) -> None:
    proc = psutil.Process(stack.service("seaweedfs")["pid"])
    paths = [c.laddr for c in proc.net_connections(kind="unix") if c.laddr]
    assert paths, "weed has no unix socket: the probe is broken"
    for path in paths:
        info = os.stat(path)
        assert info.st_uid == os.getuid() and info.st_mode & 0o077 == 0, (
            f"{path} is {stat.filemode(info.st_mode)}"
        )
    assert any(str(stack.store) in p for p in paths), "the filer and S3 sockets left /tmp"


def test_weed_logs_to_its_service_log_only(stack: Stack) -> None:
    """glog's lines reach the stack's seaweedfs.log and no file of weed's own in the
    temp folder (named ``weed.<host>.<user>.log.<LEVEL>.<time>.<pid>``, a new set each
    start, kept forever)."""
    pid = stack.service("seaweedfs")["pid"]
    environ = psutil.Process(pid).environ()
    folders = {Path("/tmp"), Path(tempfile.gettempdir()), Path(environ.get("TMPDIR", "/tmp"))}
    own = [path for folder in folders for path in folder.glob(f"weed.*.{pid}")]
    assert own == [], own
    log = (stack.settings.state_dir / "logs" / "seaweedfs.log").read_text()
    assert re.search(r"(?m)^I\d{4} [\d:.]+ master_server\.go:\d+ ", log), log[-2000:]


def http(method: str, url: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, url, timeout=10, allow_redirects=False, **kwargs)


def test_master_http_hands_out_no_file_ids_and_no_tokens(stack: Stack) -> None:
    master = f"http://127.0.0.1:{stack.service('seaweedfs')['internal_ports']['master']}"
    for method, path in (
        ("GET", "/dir/assign"),
        ("POST", "/dir/assign"),
        ("GET", "/dir/lookup?volumeId=1"),
        ("GET", "/vol/grow?count=1"),
        ("GET", "/dir/status"),
        ("GET", "/col/delete?collection=" + stack.settings.s3_bucket),
        ("POST", "/submit"),
    ):
        response = http(method, master + path)
        assert response.status_code in (401, 404, 405), (path, response.status_code)
        assert "Authorization" not in response.headers, f"{path} handed out a JWT"
        assert b'"fid"' not in response.content


def signed(key: str, fid: str) -> str:
    """A SeaweedFS file JWT (HS256, claim ``fid``): what the master would hand out."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"fid": fid, "exp": int(time.time()) + 60}).encode())
    mac = hmac.new(key.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


def weed_shell(stack: Stack, command: str, *, cwd: Path, uid: int | None = None) -> str:
    """`weed shell` against this stack's master and filer, with ``cwd``'s security.toml.

    A shell that cannot get in keeps retrying: after 30 s it is stopped and what it
    printed so far is its answer.
    """
    ports = stack.service("seaweedfs")["internal_ports"]
    weed = stack.settings.weed_bin or str(Path(sys.executable).parent / "weed")
    try:
        result = subprocess.run(
            [
                weed,
                "shell",
                f"-master=127.0.0.1:{ports['master']}",
                f"-filer=127.0.0.1:{ports['filer']}",
            ],
            input=command + "\n",
            capture_output=True,
            text=True,
            cwd=cwd,
            # `weed shell` writes glog files to the temp folder whatever its flags: cwd's
            env={"PATH": os.environ["PATH"], "HOME": str(cwd), "TMPDIR": str(cwd)},
            user=uid,
            group=uid,
            extra_groups=[] if uid is not None else None,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired as stopped:
        return "".join(
            part.decode(errors="replace") if isinstance(part, bytes) else part or ""
            for part in (stopped.stdout, stopped.stderr)
        )
    return result.stdout + result.stderr


def toml_key(path: Path, section: str) -> str:
    """``key`` of ``[section]`` in the security.toml the kit wrote."""
    current = ""
    for line in path.read_text().splitlines():
        if line.startswith("["):
            current = line.strip("[] ")
        elif current == section and line.startswith("key = "):
            return line.split("=", 1)[1].strip().strip('"')
    raise AssertionError(f"no [{section}] key in {path}")


def chunk_fid(stack: Stack, key: str) -> str:
    """The volume file id of ``key``'s first chunk, read as the kit (its certificate)."""
    meta = weed_shell(
        stack, f"fs.meta.cat /buckets/{stack.settings.s3_bucket}/{key}", cwd=stack.store
    )
    start = meta.index("{")
    entry = json.loads(meta[start : meta.rindex("}") + 1])
    return str(entry["chunks"][0]["fileId"])


def test_volume_http_wants_a_signed_token_to_read_or_write(stack: Stack) -> None:
    key = f"{stack.settings.s3_prefix}/doors/{uuid.uuid4().hex}.bin"
    body = os.urandom(2048)
    stack.client().put_object(Bucket=stack.settings.s3_bucket, Key=key, Body=body)
    fid = chunk_fid(stack, key)
    volume = f"http://127.0.0.1:{stack.service('seaweedfs')['internal_ports']['volume']}"
    read_key = toml_key(stack.store / "security.toml", "jwt.signing.read")
    # Control: with a token signed by this start's key the very same request reads it.
    good = http(
        "GET",
        f"{volume}/{fid}",
        headers={"Authorization": f"Bearer {signed(read_key, fid)}"},
    )
    assert good.status_code == 200
    if stack.settings.s3_sse_kek.get_secret_value():
        # Encrypted at rest (init generates the key): the volume holds ciphertext.
        assert len(good.content) >= len(body) and body[:64] not in good.content
    else:
        assert good.content == body
    assert http("GET", f"{volume}/{fid}").status_code == 401
    forged = signed("guessed-key", fid)
    assert (
        http("GET", f"{volume}/{fid}", headers={"Authorization": f"Bearer {forged}"}).status_code
        == 401
    )
    for method in ("POST", "PUT"):
        response = http(method, f"{volume}/{fid}", files={"file": ("x", b"overwritten")})
        assert response.status_code == 401, (method, response.status_code)
    assert http("DELETE", f"{volume}/{fid}").status_code == 401
    got = stack.client().get_object(Bucket=stack.settings.s3_bucket, Key=key)["Body"].read()
    assert got == body, "the object changed"


def test_filer_http_neither_reads_nor_writes(stack: Stack) -> None:
    bucket = stack.settings.s3_bucket
    key = f"{stack.settings.s3_prefix}/doors/{uuid.uuid4().hex}.txt"
    stack.client().put_object(Bucket=bucket, Key=key, Body=b"filer probe")
    filer = f"http://127.0.0.1:{stack.service('seaweedfs')['internal_ports']['filer']}"
    for path in (f"/buckets/{bucket}/{key}", f"/buckets/{bucket}/", "/buckets/", "/"):
        response = http("GET", filer + path)
        assert response.status_code in (401, 404), (path, response.status_code)
        assert b"filer probe" not in response.content and bucket.encode() not in response.content
    planted = f"{stack.settings.s3_prefix}/doors/planted-{uuid.uuid4().hex}"
    for method in ("POST", "PUT"):
        response = http(
            method, f"{filer}/buckets/{bucket}/{planted}", files={"file": ("p", b"planted")}
        )
        assert response.status_code in (401, 404, 405), (method, response.status_code)
    assert http("DELETE", f"{filer}/buckets/{bucket}/{key}").status_code in (401, 404, 405)
    assert refused(lambda: stack.client("admin").head_object(Bucket=bucket, Key=planted)) == "404"
    stack.client().head_object(Bucket=bucket, Key=key)  # still there


def grpc_reply(port: int, cert: tuple[Path, Path] | None) -> bytes | str:
    """The first bytes a gRPC port answers an HTTP/2 preface with over TLS, or the error."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    if cert is not None:
        context.load_cert_chain(*cert)
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            context.wrap_socket(raw) as tls,
        ):
            tls.sendall(PREFACE)
            return tls.recv(64)
    except (ssl.SSLError, OSError) as exc:
        return f"{exc.__class__.__name__}: {exc}"


def plain_reply(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(PREFACE)
        try:
            return raw.recv(64)
        except OSError:
            return b""


def test_grpc_ports_want_the_certificate_of_this_start(stack: Stack) -> None:
    ports = stack.service("seaweedfs")["internal_ports"]
    grpc = {
        "master": ports["master"] + 10000,
        "volume": ports["volume"] + 10000,
        "filer": ports["filer"] + 10000,
        "s3": ports["s3_grpc"],
    }
    cert = (stack.store / "tls" / "weed.crt", stack.store / "tls" / "weed.key")
    for name, port in grpc.items():
        control = grpc_reply(port, cert)
        assert isinstance(control, bytes) and control[3] == SETTINGS_FRAME, (name, control)
        without = grpc_reply(port, None)
        assert isinstance(without, str) and "CERTIFICATE_REQUIRED" in without, (name, without)
        plain = plain_reply(port)
        assert len(plain) < 4 or plain[3] != SETTINGS_FRAME, f"{name} speaks plain HTTP/2"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run as another uid")
def test_weed_shell_of_another_user_sees_nothing(stack: Stack) -> None:
    # Control: as the kit, in its folder (its security.toml), the shell lists the bucket.
    assert stack.settings.s3_bucket in weed_shell(stack, "fs.ls /buckets", cwd=stack.store)
    with scratch_dir("mlops-other-") as home:
        os.chown(home, OTHER_UID, OTHER_UID)
        out = weed_shell(stack, "fs.ls /buckets", cwd=home, uid=OTHER_UID)
    assert stack.settings.s3_bucket not in out, out


# -- S3 identities ------------------------------------------------------------------


def test_anonymous_s3_is_refused(stack: Stack) -> None:
    anon = boto3.client(
        "s3",
        endpoint_url=stack.settings.s3_endpoint,
        region_name=stack.settings.s3_region,
        config=Config(signature_version=UNSIGNED, s3={"addressing_style": "path"}),
    )
    bucket = stack.settings.s3_bucket
    refused(lambda: anon.list_objects_v2(Bucket=bucket))
    refused(lambda: anon.put_object(Bucket=bucket, Key="anon", Body=b"x"))
    refused(lambda: anon.list_buckets())


def test_tracking_key_touches_its_bucket_only(stack: Stack, other_bucket: str) -> None:
    server = stack.client()
    bucket = stack.settings.s3_bucket
    key = f"{stack.settings.s3_prefix}/doors/own.txt"
    server.put_object(Bucket=bucket, Key=key, Body=b"own")  # control: its own bucket
    assert server.get_object(Bucket=bucket, Key=key)["Body"].read() == b"own"
    server.delete_object(Bucket=bucket, Key=key)
    assert (
        refused(lambda: server.get_object(Bucket=other_bucket, Key="secret.txt")) == "AccessDenied"
    )
    assert refused(lambda: server.list_objects_v2(Bucket=other_bucket)) == "AccessDenied"
    assert (
        refused(lambda: server.put_object(Bucket=other_bucket, Key="x", Body=b"x"))
        == "AccessDenied"
    )
    assert (
        refused(lambda: server.delete_object(Bucket=other_bucket, Key="secret.txt"))
        == "AccessDenied"
    )
    assert (
        refused(lambda: server.create_bucket(Bucket=f"new-{uuid.uuid4().hex[:8]}"))
        == "AccessDenied"
    )
    assert refused(lambda: server.delete_bucket(Bucket=other_bucket)) == "AccessDenied"
    names = [b["Name"] for b in server.list_buckets()["Buckets"]]
    assert other_bucket not in names


def test_backup_key_reads_and_lists_but_never_writes(stack: Stack, other_bucket: str) -> None:
    backup = stack.client("backup")
    bucket = stack.settings.s3_bucket
    key = f"{stack.settings.s3_prefix}/doors/for-backup.txt"
    stack.client().put_object(Bucket=bucket, Key=key, Body=b"keep me")
    assert backup.get_object(Bucket=bucket, Key=key)["Body"].read() == b"keep me"
    assert key in [o["Key"] for o in backup.list_objects_v2(Bucket=bucket)["Contents"]]
    assert refused(lambda: backup.put_object(Bucket=bucket, Key=key, Body=b"x")) == "AccessDenied"
    assert refused(lambda: backup.delete_object(Bucket=bucket, Key=key)) == "AccessDenied"
    assert (
        refused(lambda: backup.get_object(Bucket=other_bucket, Key="secret.txt")) == "AccessDenied"
    )
    assert stack.settings.s3_credentials("backup")[0] != stack.settings.s3_credentials()[0]


def test_backup_create_runs_on_the_backup_key(stack: Stack) -> None:
    """With the server's secret wrong, `backup create` still copies the artifacts."""
    key = f"{stack.settings.s3_prefix}/doors/in-backup.txt"
    stack.client().put_object(Bucket=stack.settings.s3_bucket, Key=key, Body=b"in backup")
    broken = {"MLOPS_S3_SECRET_ACCESS_KEY": "W" * 40}
    diagnosis = json.loads(stack.cli("s3", "diagnose", "--json", env=broken).stdout)
    checks = {c["check"]: c["status"] for c in diagnosis["findings"]}
    assert checks["credentials"] == "fail", checks  # control: the server's key is broken
    done = stack.cli("backup", "create", "--json", env=broken)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["id"]


def test_direct_mode_clients_get_the_bucket_key_never_the_admin_key(
    stack: Stack, other_bucket: str
) -> None:
    result = stack.cli("client-env", "--json", env={"MLOPS_ARTIFACT_MODE": "direct"})
    assert result.returncode == 0, result.stderr
    env = json.loads(result.stdout)["env"]
    admin_id, admin_secret = stack.settings.s3_credentials("admin")
    assert env["AWS_ACCESS_KEY_ID"] != admin_id and env["AWS_SECRET_ACCESS_KEY"] != admin_secret
    handed = boto3.client(
        "s3",
        endpoint_url=env["MLFLOW_S3_ENDPOINT_URL"],
        region_name=stack.settings.s3_region,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    handed.list_objects_v2(Bucket=stack.settings.s3_bucket, MaxKeys=1)  # control: it works
    assert (
        refused(lambda: handed.get_object(Bucket=other_bucket, Key="secret.txt")) == "AccessDenied"
    )
    assert (
        refused(lambda: handed.create_bucket(Bucket=f"new-{uuid.uuid4().hex[:8]}"))
        == "AccessDenied"
    )


def test_model_version_from_another_bucket_is_refused(stack: Stack, other_bucket: str) -> None:
    auth = (stack.settings.proxy_user, stack.settings.proxy_password.get_secret_value())
    api = stack.url + "/api/2.0/mlflow"
    name = f"doors-{uuid.uuid4().hex[:8]}"
    made = requests.post(
        f"{api}/registered-models/create", json={"name": name}, auth=auth, timeout=30
    )
    assert made.status_code == 200, made.text
    own = f"s3://{stack.settings.s3_bucket}/{stack.settings.s3_prefix}/0/models/m-doors/artifacts"
    for source in (
        f"s3://{other_bucket}/secret.txt",
        f"s3://{stack.settings.s3_bucket}/elsewhere/model",
        f"s3://{stack.settings.s3_bucket}/{stack.settings.s3_prefix}/../elsewhere",
        "file:///etc",
        "https://example.com/model",
    ):
        answer = requests.post(
            f"{api}/model-versions/create",
            json={"name": name, "source": source},
            auth=auth,
            timeout=30,
        )
        assert answer.status_code == 400, (source, answer.status_code, answer.text)
        assert "Invalid model version source" in answer.json()["message"], answer.text
    control = requests.post(
        f"{api}/model-versions/create", json={"name": name, "source": own}, auth=auth, timeout=30
    )
    assert control.status_code == 200, control.text


def test_the_server_encrypts_stored_secrets_with_the_generated_passphrase(stack: Stack) -> None:
    """Every uvicorn process of the tracking service (the ones that run MLflow's app and
    encrypt) starts with the generated passphrase. `serve` itself sets its environment in
    its own process, which /proc/PID/environ does not show; its children show it."""
    root = psutil.Process(stack.service("tracking")["pid"])
    servers = [p for p in root.children(recursive=True) if "uvicorn" in " ".join(p.cmdline())]
    assert servers, [" ".join(p.cmdline()) for p in root.children(recursive=True)]
    passphrase = stack.settings.kek_passphrase.get_secret_value()
    assert len(passphrase) >= 32
    for server in servers:
        raw = Path(f"/proc/{server.pid}/environ").read_bytes().split(b"\0")
        env = dict(item.decode().split("=", 1) for item in raw if b"=" in item)
        assert env.get("MLFLOW_CRYPTO_KEK_PASSPHRASE") == passphrase, server.cmdline()
        assert env.get("MLFLOW_CRYPTO_KEK_VERSION") == str(stack.settings.kek_version)


def test_identities_scope_each_key_and_merge_a_shared_one() -> None:
    """The identity file the kit writes (pure): scoped actions; a reused key is one identity."""
    keys = {
        "env": "dev",
        "s3_access_key_id": "SERVER",
        "s3_secret_access_key": "s" * 40,
        "s3_admin_access_key_id": "ADMIN",
        "s3_admin_secret_access_key": "a" * 40,
        "s3_backup_access_key_id": "BACKUP",
        "s3_backup_secret_access_key": "b" * 40,
    }
    settings = PlatformSettings(_env_file=None, **keys)  # type: ignore[call-arg]
    by_key = {
        i["credentials"][0]["accessKey"]: i["actions"]  # type: ignore[index]
        for i in identities(settings)["identities"]  # type: ignore[attr-defined]
    }
    bucket = settings.s3_bucket
    assert by_key == {
        "ADMIN": ["Admin", "Read", "List", "Tagging", "Write"],
        "SERVER": [f"Read:{bucket}", f"Write:{bucket}", f"List:{bucket}", f"Tagging:{bucket}"],
        "BACKUP": [f"Read:{bucket}", f"List:{bucket}"],
    }
    older = settings.model_copy(
        update={"s3_backup_access_key_id": SecretStr(""), "s3_admin_access_key_id": SecretStr("")}
    )
    merged = identities(older)["identities"]
    assert len(merged) == 1 and "Admin" in merged[0]["actions"]  # type: ignore[index, arg-type]


def test_source_rule_admits_the_artifact_root_only() -> None:
    settings = PlatformSettings(_env_file=None, env="dev")  # type: ignore[call-arg]
    rule = server_env(settings)["MLFLOW_CREATE_MODEL_VERSION_SOURCE_VALIDATION_REGEX"]
    root = f"s3://{settings.s3_bucket}/{settings.s3_prefix}"
    for source in (
        "runs:/abc/model",
        "models:/m-1",
        "mlflow-artifacts:/1/r/artifacts",
        f"{root}/1/x",
    ):
        assert re.search(rule, source), source
    for source in (
        "s3://other/x",
        f"s3://{settings.s3_bucket}/elsewhere/x",
        f"{root}X/y",
        f"{root}/../x",
        "runs:/../x",
        "file:///etc/passwd",
        "/etc/passwd",
        "http://169.254.169.254/latest",
    ):
        assert not re.search(rule, source), source


# -- at rest --------------------------------------------------------------------------


def test_write_private_never_writes_through_a_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    target = tmp_path / "secret.env"
    target.symlink_to(victim)
    (tmp_path / ".secret.env.tmp").symlink_to(victim)  # the old, guessable temp name
    write_private(target, "SECRET=1\n")
    assert victim.read_text() == "untouched"
    assert not target.is_symlink() and target.read_text() == "SECRET=1\n"
    assert stat.S_IMODE(target.lstat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [".secret.env.tmp", "secret.env", "victim"]


def service_groups() -> set[int]:
    """Groups of the users the stack runs services as when root (PostgreSQL, nginx)."""
    if os.geteuid() != 0:
        return set()
    groups = set()
    for name in ("postgres", "nobody", "mlops-platform"):
        try:
            groups.add(pwd.getpwnam(name).pw_gid)
        except KeyError:
            pass
    return groups


def exposure(root: Path) -> list[str]:
    """Every path under ``root`` (itself included) that a user other than its owner can
    read, write or list, with the reason. Group access counts unless the group is a
    service group; a folder others may only enter (x without r) exposes nothing itself.
    """
    allowed_groups = service_groups()
    problems: list[str] = []

    def walk(path: Path, others_reach: bool, group_reach: dict[int, bool]) -> None:
        info = path.lstat()
        mode = info.st_mode
        if stat.S_ISLNK(mode):
            return
        shown = f"{path} {stat.filemode(mode)} {info.st_uid}:{info.st_gid}"
        if others_reach and mode & 0o006:
            problems.append(f"others may {'write' if mode & 0o002 else 'read'}: {shown}")
        group_can = group_reach.get(info.st_gid, others_reach)
        if group_can and mode & 0o060 and info.st_gid not in allowed_groups:
            problems.append(f"group {info.st_gid} may read or write: {shown}")
        if stat.S_ISDIR(mode):
            inner_others = others_reach and bool(mode & 0o001)
            inner_groups = {gid: reach for gid, reach in group_reach.items()}
            inner_groups[info.st_gid] = group_can and bool(mode & 0o010)
            for gid in list(inner_groups):
                if gid != info.st_gid:
                    inner_groups[gid] = inner_groups[gid] and bool(mode & 0o001)
            for child in sorted(path.iterdir()):
                walk(child, inner_others, inner_groups)

    walk(root, True, {})
    return problems


OPENER = """
import json, os, socket, sys
opened = []
for path in json.load(sys.stdin):
    try:
        if os.path.isdir(path):
            os.listdir(path)
        elif path.endswith(".sock"):
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            s.close()
        else:
            with open(path, "rb") as f:
                f.read(1)
        opened.append(path)
    except OSError:
        pass
print(json.dumps(opened))
"""


def opened_by_another_user(paths: list[Path]) -> list[str]:
    result = subprocess.run(
        ["/usr/bin/python3", "-c", OPENER],
        input=json.dumps([str(p) for p in paths]),
        capture_output=True,
        text=True,
        user=OTHER_UID,
        group=OTHER_UID,
        extra_groups=[],
        cwd="/",
        timeout=120,
        check=True,
    )
    return list(json.loads(result.stdout))


def test_the_at_rest_checks_catch_a_leak() -> None:
    """The two checks below, on a folder with known leaks: each one is found."""
    with scratch_dir("mlops-leak-") as root:
        os.chmod(root, 0o711)  # others may pass, not list
        (root / "open.txt").write_text("x")
        os.chmod(root / "open.txt", 0o644)  # leak: others read it by name
        (root / "private.txt").write_text("x")
        os.chmod(root / "private.txt", 0o600)
        closed = root / "closed"
        closed.mkdir(mode=0o700)
        (closed / "inner.txt").write_text("x")
        os.chmod(closed / "inner.txt", 0o644)  # unreachable: its folder is closed
        (root / "group.txt").write_text("x")
        os.chmod(root / "group.txt", 0o640)
        os.chown(root / "group.txt", -1, 4321)  # a group that is no service's
        found = exposure(root)
        leaking = {Path(f.split(": ", 1)[1].split(" ")[0]).name for f in found}
        assert leaking == {"open.txt", "group.txt"}, found
        if os.geteuid() == 0:
            assert opened_by_another_user(sorted(root.rglob("*"))) == [str(root / "open.txt")]


def test_nothing_the_kit_wrote_is_open_to_other_users(stack: Stack) -> None:
    """A full run (an artifact through the proxy, a backup, down); then every file.

    Last in the module: it stops the stack.
    """
    env = {**os.environ, **json.loads(stack.cli("client-env", "--json").stdout)["env"]}
    logged = subprocess.run(
        [
            sys.executable,
            "-c",
            "import mlflow\n"
            "mlflow.set_experiment('doors-at-rest')\n"
            "with mlflow.start_run():\n"
            "    mlflow.log_param('p', 1)\n"
            "    mlflow.log_text('at rest', 'notes/at-rest.txt')\n",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert logged.returncode == 0, logged.stderr[-2000:]
    backup = stack.cli("backup", "create", "--json")
    assert backup.returncode == 0, backup.stdout + backup.stderr
    backup_path = Path(json.loads(backup.stdout)["path"])
    assert backup_path.is_relative_to(stack.settings.state_dir)
    stack.cli("down")
    state = stack.settings.state_dir
    files = [p for p in state.rglob("*")]
    assert len(files) > 50 and any(p.name == "database.dump" for p in files), "no full run"
    assert exposure(state) == []
    if os.geteuid() == 0:  # ground truth: an unrelated uid opens what it can
        assert opened_by_another_user([state, *files]) == []
