"""Health of the docker compose deployment, read from the Docker engine (Docker SDK).

The SDK is the ``docker`` package of the ``compose`` extra. Compose labels every container
with its project and service; the engine reports each one's state and healthcheck.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlops_platform.errors import MissingBinaryError, ServiceError

COMPOSE_PROJECT = "mlops-platform"  # `name:` in docker-compose.yaml
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


@dataclass
class ContainerHealth:
    service: str
    name: str
    state: str  # running, exited, restarting, ...
    health: str | None  # healthy, unhealthy, starting; None without a healthcheck
    exit_code: int

    @property
    def status(self) -> str:
        """healthy, completed (a one-shot that exited 0), or what is wrong."""
        if self.state == "running":
            return self.health or "running (no healthcheck)"
        if self.state == "exited" and self.exit_code == 0 and self.health is None:
            return "completed"
        return f"{self.state} (exit {self.exit_code})" if self.state == "exited" else self.state

    @property
    def healthy(self) -> bool:
        return self.status in ("healthy", "completed")

    def as_dict(self) -> dict[str, object]:
        return {
            "service": self.service,
            "container": self.name,
            "state": self.state,
            "health": self.health,
            "exit_code": self.exit_code,
            "status": self.status,
            "healthy": self.healthy,
        }


def from_inspect(attrs: dict[str, Any]) -> ContainerHealth:
    """One container from the engine's inspect JSON (``docker inspect``)."""
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    state = attrs.get("State") or {}
    health = (state.get("Health") or {}).get("Status")
    return ContainerHealth(
        service=labels.get(SERVICE_LABEL, "?"),
        name=str(attrs.get("Name", "")).lstrip("/"),
        state=str(state.get("Status", "unknown")),
        health=health,
        exit_code=int(state.get("ExitCode") or 0),
    )


def compose_health(project: str = COMPOSE_PROJECT) -> list[ContainerHealth]:
    """Every container of the compose project, by service; raises when none can be read."""
    try:
        import docker  # type: ignore[import-not-found,unused-ignore]
        from docker.errors import DockerException  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise MissingBinaryError(
            "the Docker SDK is not installed",
            fix="pip install 'mlops-platform[compose]'",
        ) from None
    try:
        client = docker.from_env(timeout=5)
        containers = client.containers.list(
            all=True, filters={"label": f"{PROJECT_LABEL}={project}"}
        )
        rows = [from_inspect(c.attrs) for c in containers]
    except DockerException as exc:
        raise ServiceError(
            f"cannot read containers from the Docker engine: {exc.__class__.__name__}",
            fix="start Docker, or set DOCKER_HOST to its socket",
        ) from None
    if not rows:
        raise ServiceError(
            f"no container of the compose project {project} exists",
            fix="docker compose up -d --wait (or pass --project)",
        )
    return sorted(rows, key=lambda r: (r.service, r.name))
