"""Malformed input to the CLI and the settings: exit 2, one line, nothing changed on disk.

Each case writes an env file (and maybe secret files), runs the real CLI in a child
process, and checks: exit code 2, a single `error:` line (or `FAIL:` lines from
`config check`) naming the problem, no traceback, and the folder byte-for-byte as it
was before.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.proc import clean_env, run_cli

STRONG = (
    "MLOPS_DB_PASSWORD=db-password-0123456789\n"
    "MLOPS_S3_ACCESS_KEY_ID=MLOPSKEY0123456789\n"
    "MLOPS_S3_SECRET_ACCESS_KEY=s3-secret-0123456789abcdef\n"
    "MLOPS_FLASK_SECRET_KEY=flask-secret-0123456789\n"
    "MLOPS_PROXY_PASSWORD=proxy-password-0123456789\n"
    "MLOPS_PROXY_SECRET=proxy-secret-0123456789abcdef0123456789abcdef\n"
    "MLOPS_S3_ADMIN_ACCESS_KEY_ID=MLOPSADMIN0123456789\n"
    "MLOPS_S3_ADMIN_SECRET_ACCESS_KEY=s3-admin-secret-0123456789abcdef\n"
    "MLOPS_S3_BACKUP_ACCESS_KEY_ID=MLOPSBACKUP0123456789\n"
    "MLOPS_S3_BACKUP_SECRET_ACCESS_KEY=s3-backup-secret-0123456789abcdef\n"
    "MLOPS_KEK_PASSPHRASE=kek-passphrase-0123456789abcdef\n"
)


@dataclass
class Case:
    id: str
    env: str = ""  # lines appended to a complete, valid env file
    args: tuple[str, ...] = ("up",)
    expect: str = ""  # text the message must contain
    base: str = STRONG
    files: dict[str, str | None] = field(default_factory=dict)  # None: a directory


CASES = [
    Case("port-not-a-number", "MLOPS_SERVER_PORT=abc\n", expect="MLOPS_SERVER_PORT"),
    Case("port-zero", "MLOPS_SERVER_PORT=0\n", expect="MLOPS_SERVER_PORT"),
    Case("port-too-big", "MLOPS_PROXY_PORT=70000\n", expect="MLOPS_PROXY_PORT"),
    Case("port-negative", "MLOPS_DB_PORT=-1\n", expect="MLOPS_DB_PORT"),
    Case("port-empty", "MLOPS_S3_PORT=\n", expect="MLOPS_S3_PORT"),
    Case("port-float", "MLOPS_SERVER_PORT=50.5\n", expect="MLOPS_SERVER_PORT"),
    Case("ports-clash", "MLOPS_PROXY_PORT=5000\n", expect="both 5000"),
    Case("ports-clash-db-s3", "MLOPS_S3_PORT=5432\n", expect="both 5432"),
    Case("workers-negative", "MLOPS_SERVER_WORKERS=-1\n", expect="MLOPS_SERVER_WORKERS"),
    Case("workers-huge", "MLOPS_SERVER_WORKERS=100000\n", expect="MLOPS_SERVER_WORKERS"),
    Case("artifact-mode", "MLOPS_ARTIFACT_MODE=sideways\n", expect="MLOPS_ARTIFACT_MODE"),
    Case("object-store", "MLOPS_OBJECT_STORE=gcs\n", expect="MLOPS_OBJECT_STORE"),
    Case("minio-without-endpoint", "MLOPS_OBJECT_STORE=minio\n", expect="MLOPS_S3_ENDPOINT_URL"),
    Case("env-unknown", "MLOPS_ENV=staging\n", expect="MLOPS_ENV"),
    Case("db-url-sqlite", "MLOPS_DB_URL=sqlite:///mlflow.db\n", expect="SQLite is not supported"),
    Case("db-url-mysql", "MLOPS_DB_URL=mysql://u:p@h/db\n", expect="MLOPS_DB_URL"),
    Case("db-url-no-host", "MLOPS_DB_URL=postgresql:///mlflow\n", expect="must name a host"),
    Case("db-url-garbage", "MLOPS_DB_URL=not a url\n", expect="MLOPS_DB_URL"),
    Case("public-url-ftp", "MLOPS_PUBLIC_URL=ftp://example.com\n", expect="MLOPS_PUBLIC_URL"),
    Case("public-url-no-host", "MLOPS_PUBLIC_URL=http://\n", expect="MLOPS_PUBLIC_URL"),
    Case("public-url-bad-port", "MLOPS_PUBLIC_URL=http://h:99999\n", expect="malformed port"),
    Case(
        "public-url-huge",
        "MLOPS_PUBLIC_URL=http://" + "a" * 100_000 + "x:1:2\n",
        expect="MLOPS_PUBLIC_URL",
    ),
    Case(
        "s3-endpoint-no-scheme",
        "MLOPS_S3_ENDPOINT_URL=localhost:8333\n",
        expect="MLOPS_S3_ENDPOINT_URL",
    ),
    Case("bucket-uppercase", "MLOPS_S3_BUCKET=Bad_Bucket\n", expect="MLOPS_S3_BUCKET"),
    Case("bucket-short", "MLOPS_S3_BUCKET=ab\n", expect="MLOPS_S3_BUCKET"),
    Case("bucket-dots", "MLOPS_S3_BUCKET=a..b\n", expect="MLOPS_S3_BUCKET"),
    Case("bucket-unicode", "MLOPS_S3_BUCKET=bückét\n", expect="MLOPS_S3_BUCKET"),
    Case("prefix-traversal", "MLOPS_S3_PREFIX=../escape\n", expect="MLOPS_S3_PREFIX"),
    Case("prefix-empty", "MLOPS_S3_PREFIX=/\n", expect="MLOPS_S3_PREFIX"),
    Case("body-size-words", "MLOPS_PROXY_BODY_SIZE=lots\n", expect="MLOPS_PROXY_BODY_SIZE"),
    Case("body-size-negative", "MLOPS_PROXY_BODY_SIZE=-5m\n", expect="MLOPS_PROXY_BODY_SIZE"),
    Case("user-colon", "MLOPS_PROXY_USER=ad:min\n", expect="MLOPS_PROXY_USER"),
    Case("user-unicode", "MLOPS_PROXY_USER=ädmin\n", expect="MLOPS_PROXY_USER"),
    Case("user-empty", "MLOPS_PROXY_USER=\n", expect="MLOPS_PROXY_USER"),
    Case("password-short", "MLOPS_PROXY_PASSWORD=short\n", expect="shorter than 12"),
    Case("password-placeholder", "MLOPS_DB_PASSWORD=changethis\n", expect="MLOPS_DB_PASSWORD"),
    Case("secret-empty", "MLOPS_S3_SECRET_ACCESS_KEY=\n", expect="MLOPS_S3_SECRET_ACCESS_KEY"),
    Case("no-secrets-at-all", base="", expect="mlops-platform init"),
    Case(
        "tls-cert-alone",
        "MLOPS_PROXY_TLS_CERT_FILE={root}/cert.pem\n",
        expect="must be set together",
        files={"cert.pem": "x"},
    ),
    Case(
        "tls-files-missing",
        "MLOPS_PROXY_TLS_CERT_FILE={root}/nope.pem\nMLOPS_PROXY_TLS_KEY_FILE={root}/nope.key\n",
        expect="is not a readable file",
    ),
    Case(
        "tls-cert-is-directory",
        "MLOPS_PROXY_TLS_CERT_FILE={root}/certdir\nMLOPS_PROXY_TLS_KEY_FILE={root}/k.pem\n",
        expect="certdir is not a readable file",
        files={"certdir": None, "k.pem": "x"},
    ),
    Case("wait-negative", "MLOPS_DB_WAIT_SECONDS=-1\n", expect="MLOPS_DB_WAIT_SECONDS"),
    Case("rate-zero", "MLOPS_PROXY_RATE_LIMIT=0\n", expect="MLOPS_PROXY_RATE_LIMIT"),
    Case("timeout-zero", "MLOPS_PROXY_TIMEOUT_SECONDS=0\n", expect="MLOPS_PROXY_TIMEOUT_SECONDS"),
    Case("bool-garbage", "MLOPS_JOB_EXECUTION=maybe\n", expect="MLOPS_JOB_EXECUTION"),
    Case("bool-number", "MLOPS_PROMETHEUS=2\n", expect="MLOPS_PROMETHEUS"),
    Case(
        "state-dir-is-a-file",
        "MLOPS_STATE_DIR={root}/afile\n",
        expect="is not a folder",
        files={"afile": "x"},
    ),
    Case(
        "secret-file-is-directory",
        "MLOPS_SECRETS_DIR={root}/secrets\n",
        expect="is a directory",
        files={"secrets/db_password": None},
    ),
    Case(
        "secret-file-not-utf8",
        "MLOPS_SECRETS_DIR={root}/secrets\n",
        expect="cannot read secret file",
        files={"secrets/proxy_password": "\udcff"},
    ),
    Case(
        "env-file-is-directory",
        args=("--env-file", "{root}/envdir", "up"),
        expect="is not a file",
        files={"envdir": None},
    ),
    Case(
        "env-file-not-utf8",
        args=("--env-file", "{root}/latin.env", "up"),
        expect="cannot read env file",
        files={"latin.env": "\udcff"},
    ),
    Case(
        "config-check-lists-problems",
        "MLOPS_DB_PASSWORD=changethis\n",
        args=("config", "check"),
        expect="FAIL: MLOPS_DB_PASSWORD",
    ),
    Case("unknown-command", args=("launch",), expect="No such command"),
    Case("unknown-option", args=("up", "--fast"), expect="No such option"),
    Case("logs-zero-lines", args=("logs", "-n", "0"), expect="--lines"),
    Case("logs-unknown-service", args=("logs", "kafka"), expect="no service named 'kafka'"),
    Case(
        "init-env-file-is-directory",
        args=("--env-file", "{root}/envdir", "init"),
        expect="is not a file",
        files={"envdir": None},
    ),
]


def snapshot(root: Path) -> dict[str, str]:
    state = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_dir():
            state[rel] = "dir"
        else:
            state[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_cleanly(case: Case, tmp_path: Path) -> None:
    root = tmp_path
    for name, content in case.files.items():
        target = root / name
        if content is None:
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content.encode("utf-8", "surrogateescape"))
    env_text = case.base + f"MLOPS_STATE_DIR={root}/state\n" + case.env.format(root=root)
    (root / ".env").write_bytes(env_text.encode("utf-8"))
    before = snapshot(root)
    secrets = "secrets" if "MLOPS_SECRETS_DIR=" in case.env else "no-secrets"
    env = clean_env(MLOPS_SECRETS_DIR=str(root / secrets))
    args = [a.format(root=root) for a in case.args]
    if "--env-file" not in args:
        args = ["--env-file", str(root / ".env"), *args]
    result = run_cli(*args, env=env, cwd=root)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    assert case.expect in output, output
    if case.args[-1] != "check":
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert len(output) < 2000, "an error message must be short"
    assert snapshot(root) == before, "a refused command changed files"


def test_the_base_env_file_is_valid(tmp_path: Path) -> None:
    """Positive control: the env file every case starts from passes `config check`, so a
    case is refused for its own line, not for something the base lacks."""
    (tmp_path / ".env").write_text(STRONG + f"MLOPS_STATE_DIR={tmp_path}/state\n")
    env = clean_env(MLOPS_SECRETS_DIR=str(tmp_path / "no-secrets"))
    result = run_cli("--env-file", str(tmp_path / ".env"), "config", "check", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
