"""Entries of the proxy's password file.

nginx re-reads and re-checks ``auth_basic_user_file`` on every request with no
cache, so the hash is paid per request: a bcrypt entry measured here cut one
client's ``log_metric`` rate through nginx from ~190 to ~20 requests/s. The kit
therefore writes salted SHA-1 (``{SSHA}``, which nginx verifies natively in
about a microsecond) and makes it safe against a leaked file the other way
round: the passwords it accepts are long and random (``init`` generates 32
characters, ~190 bits), so no hash speed makes them guessable offline.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SCHEME = "{SSHA}"


def ssha_hash(password: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.sha1(password.encode("utf-8") + salt).digest()
    return SCHEME + base64.b64encode(digest + salt).decode("ascii")


def entry(user: str, password: str, salt: bytes | None = None) -> str:
    return f"{user}:{ssha_hash(password, salt)}"


def verify(stored: str, password: str) -> bool:
    """Check ``password`` against one ``{SSHA}`` hash (used by tests and `doctor`)."""
    if not stored.startswith(SCHEME):
        return False
    raw = base64.b64decode(stored[len(SCHEME) :])
    digest, salt = raw[:20], raw[20:]
    return hmac.compare_digest(hashlib.sha1(password.encode("utf-8") + salt).digest(), digest)


def parse(text: str) -> dict[str, str]:
    """user -> hash of every entry in a password file."""
    users: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and ":" in line:
            user, hashed = line.split(":", 1)
            users[user] = hashed
    return users


def with_user(text: str, user: str, password: str, salt: bytes | None = None) -> str:
    """The file ``text`` with ``user`` added or its password replaced."""
    lines = [ln for ln in text.splitlines() if ln.strip() and ln.split(":", 1)[0] != user]
    lines.append(entry(user, password, salt))
    return "\n".join(lines) + "\n"
