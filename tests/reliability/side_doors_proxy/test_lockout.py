"""The lockout: only checked passwords count, per address and user name; the counter's keys
cannot be set by the client; only trusted load balancers are believed.
"""

from __future__ import annotations

import pytest

from tests.integration.conftest import Platform
from tests.reliability.side_doors_proxy.support import OTHER_USER, StartProxy, codes, first_429
from tests.support.http import SEARCH

pytestmark = pytest.mark.integration


# -- the lockout: only checked passwords count, per address and user name ---------------


def test_anonymous_requests_and_preflights_never_count(
    platform: Platform, start_proxy: StartProxy
) -> None:
    proxy = start_proxy()
    url = proxy.url + SEARCH
    session = proxy.client("127.0.1.1")
    anonymous = codes(session, url, [None] * 45)
    preflight = {
        "Origin": "http://localhost:3000",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    preflights = [
        session.options(url, headers=preflight, timeout=30).status_code for _ in range(45)
    ]
    assert set(anonymous) == {401} and set(preflights) == {401}
    assert session.get(url, auth=platform.auth, timeout=30).status_code == 200
    print("\nANONYMOUS: 45 anonymous requests + 45 preflights, then the right password: 200")


def test_a_guesser_locks_out_its_user_name_not_its_neighbours(
    platform: Platform, start_proxy: StartProxy
) -> None:
    proxy = start_proxy()
    url = proxy.url + SEARCH
    office = proxy.client("127.0.1.2")  # one address: a NAT, an office, a load balancer
    statuses = []
    for i in range(60):
        guess = office.get(url, auth=(platform.user, f"guess-{i:03d}"), timeout=30)
        statuses.append(guess.status_code)
        if i % 10 == 0:
            assert office.get(url, auth=OTHER_USER, timeout=30).status_code == 200, i
    locked_at = first_429(statuses)
    assert 25 <= locked_at <= 40, locked_at
    # The guessed name is locked from this address, even with its right password...
    locked = office.get(url, auth=platform.auth, timeout=30)
    assert (locked.status_code, locked.headers["Retry-After"]) == (429, "60")
    # ...while the other user of the same address, and the same name elsewhere, work.
    assert office.get(url, auth=OTHER_USER, timeout=30).status_code == 200
    assert proxy.client("127.0.1.3").get(url, auth=platform.auth, timeout=30).status_code == 200
    print(f"\nLOCKOUT: {locked_at} wrong passwords for one name, then 429 for that name only")


def test_spraying_many_names_locks_the_address_at_a_higher_threshold(
    platform: Platform, start_proxy: StartProxy
) -> None:
    proxy = start_proxy()
    url = proxy.url + SEARCH
    sprayer = proxy.client("127.0.1.4")
    statuses = codes(sprayer, url, [(f"user{i:03d}", "Spray-Pass-2024") for i in range(130)])
    locked_at = first_429(statuses)
    assert 90 <= locked_at <= 110, locked_at
    # The whole address waits out the lockout (documented); other addresses do not.
    assert sprayer.get(url, auth=OTHER_USER, timeout=30).status_code == 429
    assert proxy.client("127.0.1.5").get(url, auth=OTHER_USER, timeout=30).status_code == 200
    print(f"\nSPRAY: {locked_at} failed logins over as many names, then the address gets 429")


def test_the_client_cannot_set_the_counter_keys(
    platform: Platform, start_proxy: StartProxy
) -> None:
    """Forged counter headers, and a forged X-Forwarded-For with no trusted balancer."""
    proxy = start_proxy()
    url = proxy.url + SEARCH
    victim = "127.0.1.7"
    guesser = proxy.client("127.0.1.6")
    statuses = []
    for i in range(50):
        forged = {
            "X-Mlops-Client": f"10.9.{i}.1",
            "X-Mlops-Login": f"10.9.{i}.1 {platform.user}",
            "X-Forwarded-For": f"10.8.{i}.1",
            "X-Real-IP": f"10.7.{i}.1",
        }
        statuses.append(
            guesser.get(
                url, auth=(platform.user, f"guess-{i}"), headers=forged, timeout=30
            ).status_code
        )
    first_429(statuses)  # every forged key was ignored: one counter, the TCP peer's
    forged_victim = {"X-Mlops-Client": victim, "X-Mlops-Login": f"{victim} {platform.user}"}
    for i in range(40):  # and nothing lands on the victim's counter
        guesser.get(url, auth=(platform.user, f"more-{i}"), headers=forged_victim, timeout=30)
    assert proxy.client(victim).get(url, auth=platform.auth, timeout=30).status_code == 200
    entries = proxy.access_log(requests_sent=len(statuses) + 40 + 1)
    assert len(entries) == len(statuses) + 40 + 1, entries  # every request has its line
    assert {entry["client"] for entry in entries} <= {"127.0.1.6", victim}


def test_only_a_trusted_load_balancer_is_believed(
    platform: Platform, start_proxy: StartProxy
) -> None:
    balancer, stranger = "127.0.1.8", "127.0.1.9"
    proxy = start_proxy(proxy_trusted_proxies=f"{balancer}/32")
    url = proxy.url + SEARCH
    via_balancer = proxy.client(balancer)

    def guess(i: int, xff: str) -> int:
        return via_balancer.get(
            url, auth=(platform.user, f"guess-{i}"), headers={"X-Forwarded-For": xff}, timeout=30
        ).status_code

    # The balancer appends the client it saw; what the client prepended is not believed.
    statuses = [guess(i, f"203.0.113.{i % 200}, 198.51.100.1") for i in range(45)]
    first_429(statuses)
    behind = {"X-Forwarded-For": "198.51.100.2"}  # another client behind the same balancer
    assert via_balancer.get(url, auth=platform.auth, headers=behind, timeout=30).status_code == 200
    locked = {"X-Forwarded-For": "198.51.100.1"}
    assert via_balancer.get(url, auth=platform.auth, headers=locked, timeout=30).status_code == 429
    # From an address that is not a trusted balancer, X-Forwarded-For is ignored.
    r = proxy.client(stranger).get(url, auth=platform.auth, headers=locked, timeout=30)
    assert r.status_code == 200
    entries = proxy.access_log(requests_sent=len(statuses) + 3)
    assert len(entries) == len(statuses) + 3, entries  # every request has its line
    clients = {entry["client"] for entry in entries}
    assert clients == {"198.51.100.1", "198.51.100.2", stranger}, clients
