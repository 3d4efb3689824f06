"""The alert rules (monitoring/rules/*.yml): valid for Prometheus, tested with series in and
alerts out by `promtool test rules`, and every rule has a case that fires it and one that
does not, a runbook section in docs/troubleshooting.md and a command that exists.

promtool is Debian's `prometheus` package (the Makefile's SYSTEM_DEPS installs it); a
missing promtool fails these tests, it never skips them.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mlops_platform.cli import app
from tests.support import proc

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "monitoring" / "rules"
TESTS_FILE = RULES_DIR / "tests.yml"
TROUBLESHOOTING = ROOT / "docs" / "troubleshooting.md"


def promtool() -> str:
    found = shutil.which("promtool") or shutil.which("promtool", path="/usr/bin:/usr/sbin")
    if found is None:
        pytest.fail(
            "promtool is not installed: apt-get install -y prometheus (or `make system-deps`)",
            pytrace=False,
        )
    return found


def rule_files() -> list[Path]:
    return sorted(p for p in RULES_DIR.glob("*.yml") if p.name != TESTS_FILE.name)


def alerts() -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for path in rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            out += [r for r in group["rules"] if "alert" in r]
    return out


def test_promtool_check_rules() -> None:
    result = proc.run([promtool(), "check", "rules", *map(str, rule_files())], timeout=None)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules() -> None:
    result = proc.run([promtool(), "test", "rules", TESTS_FILE.name], cwd=RULES_DIR, timeout=None)
    assert result.returncode == 0, result.stdout + result.stderr


def test_at_least_ten_alerts_with_unique_names() -> None:
    names = [str(a["alert"]) for a in alerts()]
    assert len(names) >= 10, names
    assert len(set(names)) == len(names), names


def test_tests_file_loads_every_rule_file() -> None:
    loaded = set(yaml.safe_load(TESTS_FILE.read_text())["rule_files"])
    assert loaded == {p.name for p in rule_files()}


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(TESTS_FILE.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {str(a["alert"]) for a in alerts()}
    assert names - fires == set(), "alerts without a case that fires them"
    assert names - quiet == set(), "alerts without a case where they stay quiet"


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    out = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^a-z0-9 _-]", "", title).replace(" ", "-"))
    return out


def _section(markdown: str, anchor: str) -> str:
    lines = markdown.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("#") and _anchors(line) == {anchor}:
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("#")), None)
            return "\n".join(lines[i:end])
    return ""


def test_every_alert_has_a_runbook_section_naming_a_command() -> None:
    doc = TROUBLESHOOTING.read_text()
    for alert in alerts():
        annotations = alert["annotations"]
        assert isinstance(annotations, dict)
        url = str(annotations["runbook_url"])
        page, _, anchor = url.partition("#")
        assert page == "docs/troubleshooting.md", url
        assert anchor in _anchors(doc), f"{alert['alert']}: no section #{anchor}"
        assert "mlops-platform " in _section(doc, anchor), f"#{anchor} names no command"
        assert str(alert["alert"]).lower() == anchor


def test_every_alert_command_exists() -> None:
    """The `command` annotation of each alert: every `mlops-platform ...` in it parses."""
    runner = CliRunner()
    for alert in alerts():
        annotations = alert["annotations"]
        assert isinstance(annotations, dict)
        for command in str(annotations["command"]).split(";"):
            words = command.split()
            assert words[0] == "mlops-platform", command
            # options and {{ templates }} stop the command path
            path = [w for w in words[1:] if not w.startswith(("-", "{{"))]
            path = path[: next((i for i, w in enumerate(path) if w.endswith("}}")), len(path))]
            if path and path[0] == "logs":
                path = path[:1]
            result = runner.invoke(app, [*path, "--help"])
            assert result.exit_code == 0, f"{alert['alert']}: `{command.strip()}` does not exist"
