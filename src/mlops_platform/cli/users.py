"""`users add | role | grant | revoke | remove | list`: who may log in, and what they may do.

The password file (nginx) and MLflow's user store (roles, grants) change together.
"""

from __future__ import annotations

import sys

import typer

from mlops_platform import users as ops
from mlops_platform.cli.common import JSON_OPTION, Context, console, emit, table
from mlops_platform.errors import ConfigError

users_app = typer.Typer(
    help="Users, their roles and grants (docs/access.md). Effective on the next request.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")


def _password(name: str, from_stdin: bool, generate: bool) -> str | None:
    if from_stdin and generate:
        raise ConfigError("--password-stdin and --generate exclude each other", fix="give only one")
    if generate:
        return None
    if from_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    if not sys.stdin.isatty():
        raise ConfigError(
            "no password given and no terminal to ask for one",
            fix="pipe it with --password-stdin, or use --generate",
        )
    entered: str = typer.prompt(f"Password for {name}", hide_input=True)
    again: str = typer.prompt("Repeat it", hide_input=True)
    if entered != again:
        raise ConfigError("the two passwords differ", fix="run the command again")
    return entered


@users_app.command("add")
def add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="User name: letters, digits, dot, dash, underscore."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from the first line of stdin."
    ),
    generate: bool = typer.Option(
        False, "--generate", help="Generate a 32-character password and print it once."
    ),
    role: str | None = typer.Option(
        None,
        "--role",
        help="viewer, editor, approver, admin, or service (grants only); "
        "default MLOPS_AUTH_DEFAULT_ROLE.",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Add a user with a role (asks for the password, or reads it, or generates one).

    Example: mlops-platform users add alice --role editor --generate
    """
    obj: Context = ctx.obj
    settings = obj.settings(check=False)
    password = _password(name, password_stdin, generate)
    result = ops.add_user(settings, name, password, role)
    if as_json:
        emit(
            {
                "name": result.name,
                "users_file": str(result.users_file),
                "added": True,
                "generated_password": result.generated_password,
                "role": result.role,
            }
        )
        return
    as_role = f" as {result.role}" if result.role else ""
    console.print(f"added {result.name}{as_role} to {result.users_file} (effective immediately)")
    if result.generated_password:
        console.print(
            f"password (shown once): {result.generated_password}", highlight=False, soft_wrap=True
        )


@users_app.command("remove")
def remove(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="User to remove."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Remove a user; its next request gets 401. A missing user is skipped.

    Example: mlops-platform users remove alice
    """
    obj: Context = ctx.obj
    result = ops.remove_user(obj.settings(check=False), name)
    if as_json:
        emit({"name": result.name, "users_file": str(result.users_file), "removed": result.removed})
        return
    if result.removed:
        console.print(f"removed {result.name} from {result.users_file} (effective immediately)")
    else:
        console.print(f"no user {result.name} in {result.users_file}, skipped")


@users_app.command("role")
def role_(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A user of the password file."),
    role: str = typer.Argument(..., help="viewer, editor, approver, admin or service."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Give a user exactly one role (MLflow's roles; admin is MLflow's admin flag).

    Example: mlops-platform users role bob approver
    """
    obj: Context = ctx.obj
    result = ops.set_role(obj.settings(check=False), name, role)
    if as_json:
        emit({"name": result.name, "role": result.role, "before": result.before})
        return
    before = result.before or "no role"
    console.print(f"{result.name}: {before} -> {result.role} (effective on the next request)")


# The arguments `users grant` and `users revoke` share.
_GRANTEE_ARGUMENT = typer.Argument(..., help="The user.")
_KIND_ARGUMENT = typer.Argument(..., help="experiment or model.")
_TARGET_ARGUMENT = typer.Argument(..., help="Experiment id, or registered model name.")


def _print_grant(result: ops.GrantResult, as_json: bool) -> None:
    if as_json:
        emit(
            {
                "name": result.name,
                "kind": result.kind,
                "target": result.target,
                "level": result.level,
                "changed": result.changed,
            }
        )
    elif result.level:
        console.print(f"{result.name} may now {result.level} {result.kind} {result.target}")
    elif result.changed:
        console.print(f"revoked {result.name}'s grant on {result.kind} {result.target}")
    else:
        console.print(f"{result.name} had no grant on {result.kind} {result.target}, skipped")


@users_app.command("grant")
def grant(
    ctx: typer.Context,
    name: str = _GRANTEE_ARGUMENT,
    kind: str = _KIND_ARGUMENT,
    target: str = _TARGET_ARGUMENT,
    level: str = typer.Argument(..., help="READ, USE, EDIT or MANAGE."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Grant a user a permission on one experiment or registered model.

    Example: mlops-platform users grant carol experiment 42 EDIT
    """
    obj: Context = ctx.obj
    _print_grant(ops.grant(obj.settings(check=False), name, kind, target, level), as_json)


@users_app.command("revoke")
def revoke(
    ctx: typer.Context,
    name: str = _GRANTEE_ARGUMENT,
    kind: str = _KIND_ARGUMENT,
    target: str = _TARGET_ARGUMENT,
    as_json: bool = JSON_OPTION,
) -> None:
    """Take back a grant given with `users grant` (the role's permissions stay).

    Example: mlops-platform users revoke carol experiment 42
    """
    obj: Context = ctx.obj
    _print_grant(ops.grant(obj.settings(check=False), name, kind, target, None), as_json)


@users_app.command("list")
def list_(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """List the users with their roles and own grants (names only, never hashes).

    Example: mlops-platform users list --json
    """
    obj: Context = ctx.obj
    settings = obj.settings(check=False)
    found = ops.list_users(settings, with_roles=True)
    permissions = settings.identity_enabled

    def role_text(u: ops.UserInfo) -> str:
        if not permissions:
            return "-"
        if u.role:
            return u.role
        if u.in_store:
            return "service"
        # Not in MLflow's store yet: it gets MLOPS_AUTH_DEFAULT_ROLE on its first request.
        return f"({settings.auth_default_role} on first request)"

    if as_json:
        emit(
            {
                "users": [
                    {
                        "name": u.name,
                        "scheme": u.scheme,
                        "role": (u.role or ("service" if u.in_store else None))
                        if permissions
                        else None,
                        "grants": u.grants,
                    }
                    for u in found
                ]
            }
        )
        return
    console.print(
        table(
            f"users of {settings.users_file}",
            ["name", "role", "grants", "hash"],
            [
                [
                    u.name,
                    role_text(u),
                    ", ".join(f"{g['level']} {g['kind']} {g['target']}" for g in u.grants),
                    u.scheme,
                ]
                for u in found
            ],
        )
    )
