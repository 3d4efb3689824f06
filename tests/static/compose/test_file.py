"""docker-compose.yaml as Compose reads it, and the policy it keeps."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from mlops_platform.render import envexample, envfile
from mlops_platform.settings import ENV_PREFIX, SECRET_FIELDS, load_settings
from tests.static.compose.support import (
    COMPOSE_FILE,
    CONTAINER_SECRETS,
    ENV_SECRETS,
    KIT_CONTAINERS,
    NO_PROBE,
    ROOT,
    SECRET_KEY_NAME,
    SECRET_VARS,
    STORE_SERVICES,
    TEST_SECRET,
    TOOLS,
    compose_code,
    config_check,
    filled_example,
    one_shots,
    profiles,
    raw,
    run_compose,
    secret_files,
    secret_sources,
)

# -- the file as Compose reads it ------------------------------------------------


def test_config_passes_with_the_example_filled_in(env_file: Path) -> None:
    result = run_compose(env_file, "config", "-q")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("how", ["missing", "empty"])
@pytest.mark.parametrize("var", SECRET_VARS)
def test_config_fails_naming_a_missing_or_empty_secret(tmp_path: Path, var: str, how: str) -> None:
    lines = [
        line
        for line in filled_example().splitlines()
        if not line.startswith(f"{var}=") and not line.startswith(f"# {var}=")
    ]
    if how == "empty":
        lines.append(f"{var}=")
    env_file = tmp_path / ".env"
    env_file.write_text("\n".join(lines) + "\n")
    result = run_compose(env_file, "config", "-q")
    assert result.returncode != 0, f"compose accepted a {how} {var}"
    secrets = [name for name, source in secret_sources().items() if source == var]
    if secrets:
        # A secret's source: the secret is left without one, which compose refuses.
        assert f'secret "{secrets[0]}" must declare either' in result.stderr, result.stderr
    else:
        assert f"required variable {var} is missing a value" in result.stderr, result.stderr
        # ...and the message says what to do.
        assert "set" in result.stderr.split(var, 2)[-1]


def test_every_service_appears_in_some_profile_combination(model: dict) -> None:
    assert set(model["services"]) == set(raw()["services"])
    assert {"postgres", "init", "tracking", "nginx"} <= set(model["services"])
    assert set(profiles()) == {"seaweedfs", "minio", "monitoring", "serving", "backup", "admin"}


# -- policy ----------------------------------------------------------------------


def test_every_long_running_service_has_a_healthcheck(model: dict) -> None:
    shots = one_shots(model)
    for name, service in model["services"].items():
        check = service.get("healthcheck") or {}
        if name in shots | TOOLS:
            assert service.get("restart") == "no", f"one-shot {name} must not restart"
            continue
        if name in NO_PROBE:
            assert check.get("disable") is True, f"{name}: a probe its image cannot run"
            continue
        assert not check.get("disable"), f"{name}: healthcheck disabled"
        test = check.get("test") or []
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name}: no healthcheck"
        assert check.get("interval") and check.get("retries"), f"{name}: healthcheck timing"


def test_one_shots_are_only_the_bucket_init(model: dict) -> None:
    assert one_shots(model) == {"init"}


def test_dependencies_wait_for_health_or_completion(model: dict) -> None:
    shots = one_shots(model)
    for name, service in model["services"].items():
        for dep, spec in (service.get("depends_on") or {}).items():
            want = "service_completed_successfully" if dep in shots else "service_healthy"
            assert spec["condition"] == want, f"{name} -> {dep}: {spec['condition']}"
    assert model["services"]["tracking"]["depends_on"]["postgres"]["condition"]
    assert "init" in model["services"]["tracking"]["depends_on"]


def test_images_are_pinned(model: dict) -> None:
    for name, service in model["services"].items():
        image = service.get("image")
        assert image, f"{name}: no image name (a built image needs a tag too)"
        ref = image.split("@", 1)[0]
        tag = ref.rsplit(":", 1)[1] if ":" in ref.rsplit("/", 1)[-1] else None
        assert tag, f"{name}: {image} is not pinned to a tag"
        assert tag != "latest" and not tag.startswith("latest"), f"{name}: {image}"
        if "build" not in service:
            assert re.search(r"\d", tag), f"{name}: {image} has no version in its tag"


def test_secrets_are_files_made_of_env_variables_never_literals() -> None:
    """Every secret is a compose secret of its .env variable; no secret-like variable of a
    container holds a value, except the documented one, which is ${VAR:?message}."""
    sources = secret_sources()
    kit = {f"{ENV_PREFIX}{name.upper()}": name for name in SECRET_FIELDS}
    for name, var in sources.items():
        # Named as settings.py reads it from /run/secrets/, or a compose-only secret.
        assert kit.get(var) == name or (var in envexample.COMPOSE_SECRETS and var.lower() == name)
    env_secrets = 0
    for service_name, service in raw()["services"].items():
        env = service.get("environment") or {}
        for key, value in env.items():
            if not SECRET_KEY_NAME.search(key):
                continue
            want = ENV_SECRETS.get((service_name, key))
            assert want, f"{service_name}.{key} = {value!r}: give it as a secret file"
            m = re.fullmatch(r"\$\{([A-Z_][A-Z0-9_]*):\?([^}]+)\}", str(value))
            assert m and m.group(1) == want and want in m.group(2), f"{service_name}.{key}"
            env_secrets += 1
    assert env_secrets == len(ENV_SECRETS)
    text = compose_code()
    for var in SECRET_VARS:
        assert not re.search(rf"\$\{{{var}:-", text), f"{var} has a default in compose"
    # The admin's password is never handed to a program.
    assert "MLOPS_PROXY_PASSWORD" not in text


def test_each_container_gets_only_its_secrets_as_files(model: dict) -> None:
    assert set(CONTAINER_SECRETS) == set(model["services"])
    for name, service in model["services"].items():
        mounts = service.get("secrets") or []
        assert {m["source"] for m in mounts} == CONTAINER_SECRETS[name], name
        for mount in mounts:
            assert mount["target"] == f"/run/secrets/{mount['source']}", (name, mount)
    declared = set(model["secrets"])
    assert declared == set().union(*CONTAINER_SECRETS.values()), "a secret nobody uses"
    # ...and no secret value is in any container's environment or command line.
    for name, service in model["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if (name, key) in ENV_SECRETS:
                continue
            assert TEST_SECRET not in str(value), f"{name}.{key} holds a secret"
        for part in (service.get("command") or []) + (service.get("entrypoint") or []):
            assert TEST_SECRET not in str(part), f"{name}'s command holds a secret"


def test_secret_values_do_not_show_in_compose_config(env_file: Path) -> None:
    """`docker compose config` names each secret's variable, never its value."""
    args = [a for p in profiles() if p != "serving" for a in ("--profile", p)]
    result = run_compose(env_file, *args, "config")
    assert result.returncode == 0, result.stderr
    assert TEST_SECRET not in result.stdout


@pytest.mark.parametrize("service", KIT_CONTAINERS)
def test_a_kit_container_names_the_secrets_it_is_not_given(
    model: dict, env_file: Path, tmp_path: Path, service: str
) -> None:
    """Given its secret files, and nothing else, the container passes `config check`."""
    env = model["services"][service]["environment"]
    given = CONTAINER_SECRETS[service]
    not_needed = {n.strip() for n in env["MLOPS_SECRETS_NOT_NEEDED"].split(",") if n.strip()}
    assert given.isdisjoint(not_needed), f"{service}: {given & not_needed}"
    assert given | not_needed == set(SECRET_FIELDS), (
        f"{service}: decide whether it needs {sorted(set(SECRET_FIELDS) - given - not_needed)}"
    )
    folder = secret_files(model, service, env_file, tmp_path / "secrets")
    result = config_check({k: str(v) for k, v in env.items()}, tmp_path, secrets_dir=folder)
    assert result.returncode == 0, result.stdout + result.stderr


def test_without_its_secret_files_the_tracking_container_refuses_to_start(
    model: dict, tmp_path: Path
) -> None:
    env = {k: str(v) for k, v in model["services"]["tracking"]["environment"].items()}
    result = config_check(env, tmp_path, secrets_dir=tmp_path / "none")
    assert result.returncode == 2
    for name in CONTAINER_SECRETS["tracking"]:
        assert f"{ENV_PREFIX}{name.upper()} is empty or a placeholder" in result.stdout, name
    assert "MLOPS_PROXY_PASSWORD" not in result.stdout


def test_secrets_not_needed_refuses_an_unknown_name(tmp_path: Path) -> None:
    from mlops_platform.errors import ConfigError

    with pytest.raises(ConfigError, match="MLOPS_SECRETS_NOT_NEEDED.*names no secret: db_pasword"):
        load_settings(tmp_path / "none.env", check=False, secrets_not_needed="db_pasword")


def test_only_nginx_publishes_ports_and_on_loopback_by_default(model: dict) -> None:
    for name, service in model["services"].items():
        if name != "nginx":
            assert not service.get("ports"), f"{name} publishes {service['ports']}"
    ports = model["services"]["nginx"]["ports"]
    assert {p["target"] for p in ports} == {8080}  # 8443 only with compose.tls.yaml
    assert all(p.get("host_ip") == "127.0.0.1" for p in ports)  # MLOPS_PROXY_HOST default


def test_volumes_are_named_and_binds_read_only(model: dict) -> None:
    declared = set(model.get("volumes") or {})
    for name, service in model["services"].items():
        for mount in service.get("volumes") or []:
            if mount["type"] == "volume":
                assert mount.get("source") in declared, f"{name}: anonymous volume {mount}"
            else:
                assert mount["type"] == "bind", f"{name}: {mount}"
                if name in TOOLS and mount["target"] == "/run/mlops":
                    continue  # the admin CLI writes the password file, as its owner
                assert mount.get("read_only"), f"{name}: writable bind {mount['source']}"
    for name in ("postgres", "seaweedfs", "minio"):
        kinds = {m["type"] for m in model["services"][name]["volumes"]}
        assert "volume" in kinds, f"{name} keeps its data outside a named volume"


def test_databases_and_store_sit_on_an_internal_network(model: dict) -> None:
    networks = model["networks"]
    for name in STORE_SERVICES:
        attached = model["services"][name]["networks"]
        assert attached, f"{name} has no network"
        for net in attached:
            assert networks[net].get("internal") is True, f"{name} on non-internal {net}"
    assert not networks["frontend"].get("internal")
    assert set(model["services"]["nginx"]["networks"]) == {"frontend", "proxy", "monitoring"}
    assert networks["monitoring"].get("internal") is True


def _members(model: dict, network: str) -> set[str]:
    return {n for n, s in model["services"].items() if network in (s.get("networks") or {})}


def test_only_nginx_shares_a_network_with_the_tracking_server_where_it_listens(
    model: dict,
) -> None:
    """The server listens on its address in `proxy` only, a network of nginx and itself."""
    assert model["networks"]["proxy"].get("internal") is True
    assert _members(model, "proxy") == {"nginx", "tracking"}
    tracking = model["services"]["tracking"]
    host = tracking["environment"]["MLOPS_SERVER_HOST"]
    port = tracking["environment"]["MLOPS_SERVER_PORT"]
    # The bind address is a name only the proxy network gives the server: resolved in the
    # container, it is the server's address there, so it listens nowhere else.
    aliases = {
        net: set((spec or {}).get("aliases") or []) for net, spec in tracking["networks"].items()
    }
    assert host in aliases["proxy"], f"MLOPS_SERVER_HOST={host} is not the proxy alias"
    assert all(host not in names for net, names in aliases.items() if net != "proxy")
    for name, service in model["services"].items():
        if name != "tracking":
            for spec in (service.get("networks") or {}).values():
                assert host not in ((spec or {}).get("aliases") or []), name
    assert host not in ("0.0.0.0", "::", "tracking")
    upstream = model["services"]["nginx"]["environment"]["MLOPS_UPSTREAM"]
    assert upstream.startswith(f"{host}:{port} resolve;"), upstream


def test_the_admin_cli_reaches_the_database_and_writes_the_password_file(model: dict) -> None:
    """`docker compose run --rm admin users add ...`: PostgreSQL is on `backend` only."""
    admin = model["services"]["admin"]
    assert admin["profiles"] == ["admin"]
    assert admin["entrypoint"] == ["mlops-platform"]
    assert set(admin["networks"]) == {"backend"}  # not the tracking server's `proxy`
    nginx_mount = next(m for m in raw()["services"]["nginx"]["volumes"] if ":/run/mlops" in m)
    admin_mount = next(m for m in raw()["services"]["admin"]["volumes"] if ":/run/mlops" in m)
    assert nginx_mount == admin_mount + ":ro"  # the very file nginx copies
    assert admin["environment"]["MLOPS_PROXY_USERS_FILE"] == "/run/mlops/htpasswd"
    assert admin["user"] == "1000:1000"  # STATE_OWNER's default; `init` writes the real one


def test_callers_of_mlflow_go_through_nginx_with_their_own_account(model: dict) -> None:
    tracking_networks = set(model["services"]["tracking"]["networks"])
    for name in ("serving", "prometheus", "grafana"):
        shared = set(model["services"][name]["networks"]) & tracking_networks
        assert not shared, f"{name} shares {shared} with the tracking server"
    serving = model["services"]["serving"]["environment"]
    assert serving["MLFLOW_TRACKING_URI"] == "http://nginx:8080"
    assert serving["MLFLOW_TRACKING_USERNAME"] == "svc-serving"
    scrape = yaml.safe_load((ROOT / "monitoring" / "prometheus.yml").read_text())
    job = next(j for j in scrape["scrape_configs"] if j["job_name"] == "mlflow-tracking")
    assert job["static_configs"][0]["targets"] == ["nginx:8080"]
    assert job["basic_auth"]["username"] == "svc-monitoring"
    mounted = {m["target"] for m in model["services"]["prometheus"]["secrets"]}
    assert job["basic_auth"]["password_file"] in mounted
    # No account is the admin: the first proxy user is MLflow's admin.
    assert "svc-serving" != envfile.default_text("proxy_user") != "svc-monitoring"


def test_restart_limits_and_log_rotation_everywhere(model: dict) -> None:
    for name, service in model["services"].items():
        assert service.get("restart") in ("unless-stopped", "always", "no"), name
        if name not in one_shots(model) | TOOLS:
            assert service["restart"] != "no", name
        limits = ((service.get("deploy") or {}).get("resources") or {}).get("limits") or {}
        assert limits.get("memory") or service.get("mem_limit"), f"{name}: no memory limit"
        logging = service.get("logging") or {}
        assert logging.get("driver") == "json-file", name
        assert logging["options"].get("max-size") and logging["options"].get("max-file"), name


def test_shared_blocks_are_anchors() -> None:
    text = COMPOSE_FILE.read_text()
    for anchor in ("x-logging", "x-service", "x-healthcheck", "x-mlops-env"):
        assert anchor in raw(), f"{anchor} missing"
    assert text.count("*logging") >= 2 and text.count("*mlops-env") >= 3


def test_seaweedfs_memory_limit_is_the_local_stacks(model: dict) -> None:
    """Compose's weed gets the soft memory limit the local stack gives its own: one value,
    kept well above what weed keeps live by itself (stack/seaweedfs.py says why)."""
    from mlops_platform.stack.seaweedfs import WEED_MEMORY_LIMIT

    assert model["services"]["seaweedfs"]["environment"]["GOMEMLIMIT"] == WEED_MEMORY_LIMIT
