"""`zyron users ...`: list, create, promote, demote, disable, enable and delete accounts.

Works on DATABASE_URL (SQLite by default, or Postgres, as zyron_admin), migrating it first as
`zyron migrate` does. A change is announced through Redis when REDIS_URL is set, so running
servers forget what they cached of the account at once (docs/admin.md).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TextIO

from pydantic import ValidationError

from zyron.admin import service
from zyron.admin.schemas import AdminUserRead, Role
from zyron.admin.service import Admin
from zyron.auth.deletion import announce_removal, remove_account
from zyron.auth.passwords import Passwords
from zyron.auth.schemas import SignupRequest
from zyron.errors import ZyronError
from zyron.settings import Settings
from zyron.state import KNOWN_USERS_TTL_SECONDS

if TYPE_CHECKING:
    from zyron.streams.redis_hub import RedisHub

COMMANDS = ("list", "create", "promote", "demote", "disable", "enable", "delete")


class CommandError(Exception):
    """A refusal to print as `zyron users: <message>` with exit status 1."""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `users` and its subcommands to the `zyron` command line."""
    users = commands.add_parser("users", help="manage accounts: list, create, promote, ...")
    actions = users.add_subparsers(dest="users_command", required=True)
    listing = actions.add_parser("list", help="list accounts, newest first")
    listing.add_argument("--query", help="only emails containing this")
    listing.add_argument("--role", choices=("user", "admin"), help="only this role")
    state = listing.add_mutually_exclusive_group()
    state.add_argument("--disabled", action="store_true", default=None, help="only disabled")
    state.add_argument(
        "--enabled", dest="disabled", action="store_false", help="only enabled accounts"
    )
    listing.add_argument("--limit", type=int, default=100, help="at most this many (1-200)")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    create = actions.add_parser("create", help="create a built-in account")
    create.add_argument("email")
    create.add_argument("--admin", action="store_true", help="make it an admin")
    create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input (else: prompted)",
    )
    for name, what in (
        ("promote", "make an account an admin"),
        ("demote", "make an admin an ordinary user"),
        ("disable", "refuse the account's tokens, logins and refreshes, everywhere, at once"),
        ("enable", "let a disabled account in again"),
        ("delete", "delete the account and everything of it (as DELETE /auth/me does)"),
    ):
        action = actions.add_parser(name, help=what)
        action.add_argument("user", help="the account's email or id")
        if name == "delete":
            action.add_argument("--yes", action="store_true", help="do not ask to confirm")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run one `zyron users` command; 0, or 1 with a message on standard error."""
    try:
        return asyncio.run(_run(args, settings))
    except CommandError as exc:
        print(f"zyron users: {exc}", file=sys.stderr)
        return 1
    except ZyronError as exc:
        print(f"zyron users: {exc.detail}", file=sys.stderr)
        return 1


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    command: str = args.users_command
    # Read before anything is opened: a refused password changes nothing.
    password = _password(args.password_stdin, sys.stdin) if command == "create" else None
    if command == "create":
        _check_account(args.email, password or "")
    if command == "list" and not 1 <= args.limit <= 200:
        raise CommandError("--limit: from 1 to 200")
    from zyron.db.engine import create_engine, create_sessionmaker
    from zyron.db.migrate import upgrade
    from zyron.search.reindex import follow_setting

    engine = create_engine(settings.resolved_database_url, settings)
    hub = _hub(settings)
    try:
        # As `zyron migrate`: the schema must have the columns this command reads.
        await upgrade(engine, transaction_pooler=settings.db_transaction_pooler)
        await follow_setting(
            engine, settings.search_config, transaction_pooler=settings.db_transaction_pooler
        )
        admin = Admin(
            sessionmaker=create_sessionmaker(engine), settings=settings, hub=hub, actor=None
        )
        if command == "list":
            users = await service.list_users(
                admin, query=args.query, role=args.role, disabled=args.disabled, limit=args.limit
            )
            _print_users(users, as_json=args.json)
            return 0
        if command == "create":
            role: Role = "admin" if args.admin else "user"
            password_hash = await Passwords().hash(password or "")
            user = await service.create_user(admin, args.email.lower(), password_hash, role=role)
            print(f"created {_name(user)} ({user.role})")
            return 0
        user = await service.find_user(admin, args.user)
        if command == "delete":
            _confirm_deletion(user, args.yes)
            await _delete(admin, settings, user)
            _report(f"deleted {_name(user)}", settings)
            return 0
        changes: dict[str, Callable[[], Awaitable[AdminUserRead]]] = {
            "promote": lambda: service.update_user(admin, user.id, role="admin"),
            "demote": lambda: service.update_user(admin, user.id, role="user"),
            "disable": lambda: service.update_user(admin, user.id, disabled=True),
            "enable": lambda: service.update_user(admin, user.id, disabled=False),
        }
        before = user
        user = await changes[command]()
        if (before.role, before.disabled) == (user.role, user.disabled):
            print(f"{_name(user)} is already {_state(user)}: nothing changed")
            return 0
        _report(f"{_name(user)} is now {_state(user)}", settings)
        return 0
    finally:
        if hub is not None:
            await hub.close()
        await engine.dispose()


def _hub(settings: Settings) -> RedisHub | None:
    """The Redis hub that announces changes to running servers, when REDIS_URL is set."""
    if not settings.redis_url:
        return None
    from zyron.streams.redis_hub import RedisHub

    # Never started: only its publishing (and deleting of reply mirrors) is used.
    return RedisHub.from_url(
        settings.redis_url, retention_seconds=settings.stream_retention_seconds
    )


def _password(from_stdin: bool, stdin: TextIO) -> str:
    """Read the new account's password: a line of standard input, or typed twice at a prompt."""
    if from_stdin:
        line = stdin.readline()
        if not line:
            raise CommandError("--password-stdin: standard input is empty")
        return line.rstrip("\r\n")
    if not stdin.isatty():
        raise CommandError(
            "no terminal to ask the password at: give it on standard input with "
            "--password-stdin (never as an argument: it would show in the process list)"
        )
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != first:
        raise CommandError("the two passwords differ; nothing was created")
    return first


def _check_account(email: str, password: str) -> None:
    """Refuse an email or password that signup would refuse, with its reason."""
    try:
        SignupRequest.model_validate({"email": email, "password": password})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "input"
        raise CommandError(f"{field}: {first['msg']}") from None


def _confirm_deletion(user: AdminUserRead, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise CommandError("delete: give --yes to confirm (there is no terminal to ask at)")
    answer = input(f"Delete {_name(user)} and everything of it? Type the email or id: ")
    if answer.strip() not in {str(user.id), user.email or str(user.id)}:
        raise CommandError("not confirmed; nothing was deleted")


async def _delete(admin: Admin, settings: Settings, user: AdminUserRead) -> None:
    """Delete the account as DELETE /auth/me does: rows, stored files, Redis mirrors."""
    from zyron.files.deps import StorageWork
    from zyron.files.storage import open_storage

    storage = await open_storage(settings)
    try:
        work = StorageWork(storage)
        claims = {"sub": str(user.id), "role": "authenticated"}
        try:
            _, mirrored = await remove_account(admin.sessionmaker, admin.hub, work, user.id, claims)
        except BaseException:
            await work.rolled_back()
            raise
        await work.committed()
        await announce_removal(admin.hub, user.id, mirrored)
    finally:
        await storage.aclose()


def _report(done: str, settings: Settings) -> None:
    print(done)
    if not settings.redis_url:
        print(
            "note: REDIS_URL is not set, so no running server was told; each may admit the "
            f"account as it was for up to {KNOWN_USERS_TTL_SECONDS} s (docs/admin.md)",
            file=sys.stderr,
        )


def _name(user: AdminUserRead) -> str:
    return f"{user.email} ({user.id})" if user.email else str(user.id)


def _state(user: AdminUserRead) -> str:
    return f"{user.role}, {'disabled' if user.disabled else 'enabled'}"


def _print_users(users: list[AdminUserRead], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps([user.model_dump(mode="json") for user in users], indent=2))
        return
    if not users:
        print("no accounts")
        return
    rows = [
        (
            str(user.id),
            user.email or "-",
            user.role,
            "disabled" if user.disabled else "enabled",
            user.created_at.strftime("%Y-%m-%d %H:%M"),
            str(user.usage.total_tokens),
            f"${user.usage.cost_usd:.2f}",
        )
        for user in users
    ]
    header = ("ID", "EMAIL", "ROLE", "STATE", "CREATED (UTC)", "TOKENS", "COST")
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
