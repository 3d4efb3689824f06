"""Password guessing against the real proxy of a stack of its own.

Hundreds of wrong passwords for one user name from one address, sent in parallel:
after the free allowance that name is locked out from that address (429, even with the
right password), while another user behind the same address and a user on another
address keep getting 200 throughout. Afterwards no password, wrong or right, appears in
any log under the stack's folder.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from mlops_platform.settings import load_settings
from tests.integration.conftest import CLI, make_stack_dir, require_binaries, run_cli, write_env
from tests.support.stacks import down_later

pytestmark = pytest.mark.integration

GUESSES = 400
NEIGHBOUR = ("neighbour", "Nb7-Kt2p-Wq9x-Lr4v-Zm3c")
SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"


class SourceAdapter(HTTPAdapter):
    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__(pool_maxsize=8)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


def client(source: str) -> requests.Session:
    session = requests.Session()
    session.mount("http://", SourceAdapter(source))
    return session


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[Path, str, str, str]]:
    require_binaries()
    root = make_stack_dir("mlops-guess-")
    env_file = write_env(root)
    up = run_cli(env_file, "up", "--json", timeout=600)
    assert up.returncode == 0, up.stderr
    added = subprocess.run(
        [*CLI, "--env-file", str(env_file), "users", "add", NEIGHBOUR[0], "--password-stdin"],
        input=NEIGHBOUR[1] + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    settings = load_settings(env_file)
    try:
        yield (
            root,
            f"http://127.0.0.1:{settings.proxy_port}",
            settings.proxy_user,
            settings.proxy_password.get_secret_value(),
        )
    finally:
        down_later(env_file, remove=root)


def log_files(root: Path) -> list[Path]:
    return [
        p
        for p in root.rglob("*")
        if p.is_file() and (p.suffix == ".log" or "logs" in p.relative_to(root).parts)
    ]


def test_guessing_is_locked_out_while_others_work(stack: tuple[Path, str, str, str]) -> None:
    root, url, user, password = stack
    guesses = [f"Guess-{i:05d}-{time.time_ns() % 10**9}" for i in range(GUESSES)]
    guesser = client("127.0.0.71")
    legit = client("127.0.0.72")
    neighbour = client("127.0.0.71")  # another user behind the guesser's address
    done = threading.Event()
    legit_codes: Counter[int] = Counter()
    neighbour_codes: Counter[int] = Counter()

    def legit_user() -> None:
        while not done.is_set():
            legit_codes[legit.get(url + SEARCH, auth=(user, password), timeout=30).status_code] += 1
            neighbour_codes[
                neighbour.get(url + SEARCH, auth=NEIGHBOUR, timeout=30).status_code
            ] += 1
            time.sleep(0.02)

    def guess(pw: str) -> int:
        return guesser.get(url + SEARCH, auth=(user, pw), timeout=30).status_code

    background = threading.Thread(target=legit_user)
    background.start()
    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(8) as pool:
            codes = Counter(pool.map(guess, guesses))
    finally:
        seconds = time.perf_counter() - started
        time.sleep(0.3)
        done.set()
        background.join()
    locked = guesser.get(url + SEARCH, auth=(user, password), timeout=30)
    print(
        f"\nGUESSING: {GUESSES} wrong passwords from one address in {seconds:.1f} s: "
        f"{dict(codes)}; right password from that address afterwards: "
        f"{locked.status_code}; same user elsewhere meanwhile: {dict(legit_codes)}; "
        f"another user at the guesser's address meanwhile: {dict(neighbour_codes)}"
    )
    assert set(codes) == {401, 429}
    assert codes[401] <= 40, "the lockout must start after the free allowance (31)"
    assert locked.status_code == 429
    assert set(legit_codes) == {200} and legit_codes[200] >= 5
    assert set(neighbour_codes) == {200} and neighbour_codes[200] >= 5
    after = neighbour.get(url + SEARCH, auth=NEIGHBOUR, timeout=30)
    assert after.status_code == 200, "the guesser's neighbour must not be locked out"

    # Nothing secret in any log under the stack's folder, though the attempts are there.
    files = log_files(root)
    access = [p for p in files if p.name == "access.log"]
    assert access and any(
        json.loads(line).get("status") == 429 for line in access[0].read_text().splitlines()
    )
    secrets = [password.encode()] + [g.encode() for g in guesses]
    secrets += [base64.b64encode(f"{user}:{pw}".encode()) for pw in (password, *guesses)]
    for path in files:
        data = path.read_bytes()
        leaked = [s.decode() for s in secrets if s in data]
        assert leaked == [], f"{path} holds {len(leaked)} password(s)"
