"""What the newcomer tests share: the repository, the system state folder, and the README's
shell blocks read as commands.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SYSTEM_STATE = Path("/var/lib/mlops-platform")


def sh_blocks(markdown: str, heading: str) -> list[str]:
    """The ```sh blocks of the section under ``heading`` (## or ###), in order."""
    match = re.search(rf"^#+ {re.escape(heading)}\n(.*?)(?=^## |\Z)", markdown, re.M | re.S)
    assert match, f"README has no section {heading!r}"
    return re.findall(r"```sh\n(.*?)```", match.group(1), re.S)


def commands(block: str) -> list[str]:
    """Each command line of a block, its trailing comment removed."""
    out = []
    for line in block.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out
