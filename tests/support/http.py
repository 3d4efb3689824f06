"""HTTP helpers of the proxy tests: a client bound to a chosen loopback address (nginx
sees a distinct client), a cheap authenticated request, and a throwaway certificate."""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"


class SourceAdapter(HTTPAdapter):
    """Connections from a chosen loopback address (a distinct client for nginx)."""

    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


def client(source: str, auth: tuple[str, str] | None = None) -> requests.Session:
    session = requests.Session()
    adapter = SourceAdapter(source)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.auth = auth
    return session


def self_signed(folder: Path, name: str = "localhost") -> tuple[Path, Path]:
    """A throwaway certificate for ``name`` and 127.0.0.1, valid for a day."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(key_path, 0o644)  # nginx's master reads it as root; workers never do
    return cert_path, key_path
