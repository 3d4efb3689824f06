"""The holdout data and the two gate files, written once per module (cheap: no stack)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import Platform
from tests.support.models import LENIENT, STRICT
from tests.support.models import iris as _iris


@pytest.fixture(scope="module")
def governed(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("registry")
    x, y = _iris()
    data = x.assign(target=y)
    data.to_csv(work / "holdout.csv", index=False)
    (work / "lenient.yaml").write_text(LENIENT)
    (work / "strict.yaml").write_text(STRICT)
    return {"dir": work, "uri": platform.client_env["MLFLOW_TRACKING_URI"]}
