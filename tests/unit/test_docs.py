"""Docs are generated from the code and must match it; every command has help."""

from __future__ import annotations

from pathlib import Path

import typer.main

from mlops_platform.cli import app
from mlops_platform.cli.reference import cli_markdown
from mlops_platform.render.docs import settings_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_doc_is_current() -> None:
    current = (ROOT / "docs" / "configuration.md").read_text()
    assert current == settings_markdown(), (
        "docs/configuration.md is stale: python -m mlops_platform.render.docs "
        "> docs/configuration.md"
    )


def test_command_reference_is_current() -> None:
    current = (ROOT / "docs" / "cli.md").read_text()
    assert current == cli_markdown(), (
        "docs/cli.md is stale: python -m mlops_platform.cli.reference > docs/cli.md"
    )


def test_command_reference_covers_every_command_with_its_example() -> None:
    reference = cli_markdown()
    for path, command in _commands(typer.main.get_command(app)):
        assert f"`mlops-platform {' '.join(path)}`" in reference
        for line in (command.help or "").splitlines():
            if line.startswith("Example:"):
                assert line.removeprefix("Example:").strip() in reference


def _commands(group, prefix=()):  # type: ignore[no-untyped-def]
    for name, command in getattr(group, "commands", {}).items():
        path = (*prefix, name)
        yield path, command
        yield from _commands(command, path)


def test_every_command_has_help_with_an_example() -> None:
    root = typer.main.get_command(app)
    found = list(_commands(root))
    assert len(found) >= 9
    for path, command in found:
        if getattr(command, "commands", None):
            assert command.help, f"group {' '.join(path)} has no help"
            continue
        assert command.help and "Example:" in command.help, f"{' '.join(path)} lacks an example"
        for param in command.params:
            if param.name not in ("ctx",) and getattr(param, "help", None) is None:
                assert param.param_type_name == "argument", f"{' '.join(path)} --{param.name}"


def test_readme_commands_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    root = typer.main.get_command(app)
    names = {" ".join(path) for path, _ in _commands(root)}
    for name in (
        "init",
        "config show",
        "config check",
        "up",
        "down",
        "status",
        "logs",
        "client-env",
        "serve",
    ):
        assert f"mlops-platform {name}" in readme
        assert name in names
