"""Users of the session stack, added with the CLI as an operator would."""

from __future__ import annotations

import json
import uuid
from typing import Any

ROLES = ("viewer", "editor", "approver")


def add_user(platform: Any, prefix: str, role: str = "service") -> tuple[str, str]:
    """A new user of ROLE with no grants (`users add --generate`), named
    PREFIX-<random>: (name, password)."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    added = json.loads(
        platform.cli("users", "add", name, "--role", role, "--generate", "--json").stdout
    )
    assert added["role"] == role
    return name, added["generated_password"]


def add_role_users(platform: Any, prefix: str = "") -> dict[str, tuple[str, str]]:
    """A new user of each role but admin (`users add --generate`), named
    PREFIX<role>-<random>: role -> (name, password)."""
    return {role: add_user(platform, f"{prefix}{role}", role) for role in ROLES}
