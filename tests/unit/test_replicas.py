"""Tracking server replicas of the local stack: names, ports, folders and nginx's upstream."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from mlops_platform.errors import StateError
from mlops_platform.render import nginx
from mlops_platform.settings import PlatformSettings
from mlops_platform.stack import LocalStack
from mlops_platform.stack.base import StateFile
from mlops_platform.stack.proxy import Proxy
from tests.unit.conftest import SECRETS


@pytest.fixture
def settings(make_settings: Callable[..., PlatformSettings]) -> PlatformSettings:
    return make_settings(server_port=5100, server_replicas=3, **SECRETS)


def _servers(site: str) -> list[str]:
    upstream = site.split("upstream mlflow_tracking", 1)[1].split("}", 1)[0]
    return re.findall(r"^\s*server (\S+);", upstream, re.M)


def test_one_replica_is_the_default_and_renders_as_before(tmp_path: Path) -> None:
    assert PlatformSettings.model_fields["server_replicas"].default == 1
    assert nginx.upstream_servers(["127.0.0.1:5000"]) == "127.0.0.1:5000"
    with pytest.raises(ValueError):
        nginx.upstream_servers([])


def test_replicas_have_their_own_name_port_log_and_temp(settings: PlatformSettings) -> None:
    stack = LocalStack(settings)
    state = StateFile.load(settings.state_dir)
    services = stack._services(state)
    replicas = [s for s in services if s.name.startswith("tracking")]
    assert [s.name for s in replicas] == ["tracking", "tracking-2", "tracking-3"]
    assert [s.settings.server_port for s in replicas] == [5100, 5101, 5102]
    assert [c.port for s in replicas for c in s.port_claims()] == [5100, 5101, 5102]
    assert len({s.log_path for s in replicas}) == 3
    # in order: each replica healthy before the next starts, nginx last
    assert [s.name for s in services][-1] == "nginx"


def test_nginx_sends_to_every_replica_but_those_left_out(settings: PlatformSettings) -> None:
    proxy = Proxy(settings, StateFile.load(settings.state_dir))
    for leave_out, want in (
        (set(), ["127.0.0.1:5100", "127.0.0.1:5101", "127.0.0.1:5102"]),
        ({5101}, ["127.0.0.1:5100", "127.0.0.1:5102"]),
    ):
        site = nginx.site_conf(
            settings, upstream=proxy.upstream(leave_out), snippets_dir="/p/snippets"
        )
        assert _servers(site) == want


def test_down_also_stops_replicas_a_larger_count_left(settings: PlatformSettings) -> None:
    fewer = settings.model_copy(update={"server_replicas": 1})
    state = StateFile.load(settings.state_dir)
    state.services["tracking-2"] = {"pid": 0}
    names = [s.name for s in LocalStack(fewer)._all_services(state)]
    assert names.count("tracking") == 1 and "tracking-2" in names and "tracking-3" not in names


def test_restart_knows_the_tracking_server_only(settings: PlatformSettings) -> None:
    with pytest.raises(StateError, match="tracking"):
        LocalStack(settings).restart("postgres", lambda _: None)
