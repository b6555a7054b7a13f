"""``triage user add|token|list|remove``: the web API's users and API tokens.

    triage user add NAME --role viewer|admin   # password from stdin, or asked twice at a terminal
    triage user token NAME                     # prints a new API token once
    triage user list
    triage user remove NAME                    # with their tokens and sessions

Each takes ``--data-dir DIR`` or ``--config FILE`` (the node's ``data_dir``): the accounts live
in its ``triage.db`` beside the node's jobs.
"""

from __future__ import annotations

import getpass
import sys
import time
from pathlib import Path

from triage.base.errors import InputError, one_line
from triage.settings import load_settings


def add_parser(commands) -> None:
    user = commands.add_parser("user", help="manage the users and API tokens of the web API",
                               description="Manage the web API's users and API tokens (in the node's "
                                           "data directory).")
    actions = user.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add a user (password from stdin or asked at the terminal)")
    add.add_argument("name")
    add.add_argument("--role", metavar="viewer|admin", required=True, help="what the user may do")
    actions.add_parser("token", help="print a new API token of a user (shown only once)").add_argument("name")
    actions.add_parser("list", help="list the users")
    actions.add_parser("remove", help="remove a user with their tokens and sessions").add_argument("name")
    for parser in actions.choices.values():
        parser.add_argument("--data-dir", type=Path, metavar="DIR", help="the node's data directory")
        parser.add_argument("--config", type=Path, metavar="FILE", help="TOML settings file (its data_dir)")


def run(args) -> int:
    from triage.web.accounts import ROLES, Accounts  # the job store's imports only when needed

    node = load_settings(args.config, data_dir=args.data_dir).node
    data_dir = Path(node.data_dir)
    if node.database:  # a hub: the accounts are in its PostgreSQL job store
        accounts = _open_shared(Accounts, node)
    else:
        if args.action == "add":  # the first user may come before the node's first start
            data_dir.mkdir(parents=True, exist_ok=True)
        elif not data_dir.is_dir():
            raise InputError(f"no data directory {data_dir} (give the node's --data-dir)")
        accounts = Accounts.open(data_dir / "triage.db")
    try:
        if args.action == "add":
            if args.role not in ROLES:  # before asking for the password
                raise InputError(f"role {args.role!r}: must be one of {', '.join(ROLES)}")
            accounts.add_user(args.name, args.role, _password())
            print(f"user {args.name} added ({args.role})")
        elif args.action == "token":
            print(accounts.new_token(args.name))
        elif args.action == "list":
            for user in accounts.users():
                created = time.strftime("%Y-%m-%d %H:%M", time.localtime(user["created_at"]))
                print(f"{user['username']}\t{user['role']}\tadded {created}\t{user['tokens']} token(s)")
        elif args.action == "remove":
            accounts.remove_user(args.name)
            print(f"user {args.name} removed")
    finally:
        accounts.close()
    return 0


def _password() -> str:
    """The new password: typed twice at a terminal, else the first line of stdin."""
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise InputError("the passwords differ")
        return password
    return sys.stdin.readline().rstrip("\r\n")


def _open_shared(accounts_class, node):
    """The accounts of a hub's job store (``node.database``); InputError when it cannot be used."""
    from triage.store.database import DatabaseError

    try:
        return accounts_class.open(node.database)
    except DatabaseError as exc:
        raise InputError(one_line(exc)) from None  # it names the server and database
