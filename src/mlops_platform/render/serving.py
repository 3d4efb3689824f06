"""Model serving: the ``mlflow models serve`` argv, the serving image, its compose service.

The server is MLflow's own scoring server: ``POST /invocations`` answers predictions,
``GET /ping`` and ``GET /health`` answer 200 once the model is loaded. The image's
command is the kit's ``mlops-platform registry serve``: it resolves ``NAME@ALIAS`` in
the registry, downloads that version, refuses to start unless the copy matches the
artifact digest its approval pinned, then execs ``mlflow models serve`` on the copy
(:func:`serve_argv`). It needs a tracking URI and a login (``MLFLOW_TRACKING_URI``,
``MLFLOW_TRACKING_USERNAME``, ``MLFLOW_TRACKING_PASSWORD``) in its environment, never
in its argv.
"""

from __future__ import annotations

import sys

from mlops_platform.migrations import mlflow_version
from mlops_platform.settings import PlatformSettings

DEFAULT_PORT = 8080
PYTHON_IMAGE = "python:3.11-slim-bookworm"
PING_PY = (
    "import os, urllib.request as r; "
    "r.urlopen('http://127.0.0.1:%s/ping' % os.environ.get('PORT', '8080'), timeout=4)"
)


def model_uri(name: str, alias: str = "champion") -> str:
    return f"models:/{name}@{alias}"


def serve_argv(
    uri: str,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    workers: int = 1,
    python: str = sys.executable,
) -> list[str]:
    """``mlflow models serve`` in the current environment (no conda, no virtualenv build)."""
    return [
        python,
        "-m",
        "mlflow",
        "models",
        "serve",
        "--model-uri",
        uri,
        "--env-manager",
        "local",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


def dockerfile(*, mlflow: str | None = None, extra_packages: str = "scikit-learn") -> str:
    """The serving image: the kit's verifying entry in front of MLflow's scoring server."""
    pinned = mlflow or mlflow_version()
    return f"""\
# Model serving image: MLflow's scoring server for models:/$MODEL_NAME@$MODEL_ALIAS.
# Rendered by `mlops-platform deploy render serving`; do not edit by hand.
#
#   docker build -f mlflow/Dockerfile.serve -t mlops-serving .
#   docker run -p 8080:8080 -e MODEL_NAME=iris-classifier \\
#     -e MLFLOW_TRACKING_URI=https://mlflow.example.com \\
#     -e MLFLOW_TRACKING_USERNAME=ci -e MLFLOW_TRACKING_PASSWORD=... mlops-serving
#
# The command is `mlops-platform registry serve`: it downloads the version the alias
# names, refuses to start (exit 2, one line) unless it is approved and its files match
# the digest the approval pinned, then execs `mlflow models serve` on that copy.
# Health: GET /ping (and /health) answers 200 once the model is loaded.
FROM {PYTHON_IMAGE}

ARG MLFLOW_VERSION={pinned}
# The model's own libraries, at the versions it was trained with (see its requirements.txt).
ARG EXTRA_PACKAGES="{extra_packages}"

ENV PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    PIP_NO_CACHE_DIR=1 \\
    MODEL_NAME="" \\
    MODEL_ALIAS=champion \\
    PORT={DEFAULT_PORT} \\
    WORKERS=2

WORKDIR /opt/mlops
COPY pyproject.toml README.md ./
COPY src/ src/
# The package's nginx template is a symlink into nginx/templates/.
COPY nginx/templates/ nginx/templates/

RUN pip install "mlflow==${{MLFLOW_VERSION}}" boto3 ${{EXTRA_PACKAGES}} . \\
 && useradd --create-home --uid 10001 serve

USER 10001
WORKDIR /home/serve
EXPOSE {DEFAULT_PORT}

HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \\
  CMD python -c "{PING_PY}"

CMD test -n "$MODEL_NAME" || {{ echo "set MODEL_NAME" >&2; exit 2; }}; \\
    exec mlops-platform registry serve "$MODEL_NAME" --alias "$MODEL_ALIAS" \\
    --host 0.0.0.0 --port "$PORT" --workers "$WORKERS"
"""


def compose_service(
    settings: PlatformSettings,
    *,
    model: str = "${SERVING_MODEL:?set SERVING_MODEL to the registered model to serve}",
) -> str:
    """The compose ``serving`` profile's service, as docker-compose.yaml has it.

    It reaches the registry through nginx inside the compose network (nginx listens on
    8080 there, whatever host port publishes it) with its own account (``SERVING_USER``,
    a service account granted the model; never the admin), and publishes no port of its
    own: only nginx does.
    ``settings`` is unused: kept for the renderers' common signature.
    """
    del settings
    return f"""\
  serving:
    profiles: [serving]
    build:
      context: .
      dockerfile: mlflow/Dockerfile.serve
    image: mlops-platform-serving:${{IMAGE_TAG:-0.1.0}}
    environment:
      MODEL_NAME: {model}
      MODEL_ALIAS: ${{SERVING_ALIAS:-champion}}
      MLFLOW_TRACKING_URI: http://nginx:8080
      MLFLOW_TRACKING_USERNAME: ${{SERVING_USER:-svc-serving}}
      MLFLOW_TRACKING_PASSWORD: ${{SERVING_PASSWORD:?SERVING_PASSWORD is not set}}
    depends_on:
      nginx:
        condition: service_healthy
    healthcheck:
      test: ["CMD", "python", "-c", "{PING_PY}"]
      interval: 15s
      timeout: 5s
      start_period: 180s
      retries: 3
    restart: unless-stopped
"""
