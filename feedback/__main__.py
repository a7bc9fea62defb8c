"""Command line: export corrections for training, hash a reader password, list or withdraw corrections, copy the
store to PostgreSQL."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import NoReturn

import settings
from feedback.export import export_corrections, scope_folder
from feedback.readers import DEFAULT_ITERATIONS, hash_password
from feedback.records import Store, StoreUnreadable, StoreUnwritable, clean_reader
from feedback.stores import open_store


ROOT_HELP = ("the app's corrections store: its folder, or a sqlite:/// or postgresql:// URL (default: %(default)s, "
             "from $XRAY_STORE_URL, else $XRAY_FEEDBACK_DIR, else /data/xray-covid-feedback where /data is writable, "
             "else ./feedback_data)")
SQLITE_ROOT_HELP = ("the SQLite store's folder to copy (default: %(default)s, from $XRAY_FEEDBACK_DIR, else "
                    "/data/xray-covid-feedback where /data is writable, else ./feedback_data)")
USAGE_ERROR = 2
"""The exit status of a user error, as for every command of the project (model.cli)."""
BAD_STORE = 1
"""The exit status when the store cannot be read or written (as model.cli's for bad files)."""


class Parser(argparse.ArgumentParser):
    """A usage error in one line naming --help, exit status 2 (model.cli.Parser's convention; feedback/ cannot import
    model/); its sub-command parsers are Parsers too."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _fail(message: str) -> None:
    """One line on stderr and exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(USAGE_ERROR)


def _existing_store(root: str | Path) -> Store:
    store = open_store(root)
    if not store.exists():
        _fail(f"no feedback store at {store.location}; give the folder (or URL) the app stored corrections in with "
              "--root, or set XRAY_STORE_URL or XRAY_FEEDBACK_DIR as it was for the app")
    return store


def _export(args: argparse.Namespace) -> None:
    scope_out = args.input_verdicts_out or scope_folder(args.out)
    counts = export_corrections(_existing_store(args.root), args.out, include_unverified=args.include_unverified,
                                scope_out=scope_out)
    print(f"{counts['corrections']} corrections of {counts['images']} images -> {args.out}")
    print(f"covid: {counts['covid']}  not_covid: {counts['not_covid']}  "
          f"skipped (uncertain): {counts['skipped_uncertain']}  skipped (withdrawn): {counts['skipped_withdrawn']}")
    if counts["input_verdicts"]:
        print(f"{counts['input_verdicts']} verdicts on inputs (corrections of the input check, not labels) -> "
              f"{scope_out}: in_scope: {counts['in_scope']}  out_of_scope: {counts['out_of_scope']}")
    if counts["left_out_unverified"]:
        print(f"left out: {counts['left_out_unverified']} unverified corrections (--include-unverified uses them)")


def _hash_password(args: argparse.Namespace) -> None:
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat: ") != password:
            _fail("passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    hashed = hash_password(password, args.iterations)
    print(f"{clean_reader(args.name)}:{hashed}" if args.name else hashed)


def _list(args: argparse.Namespace) -> None:
    store = _existing_store(args.root)
    corrections = store.all()
    for c in corrections:
        note = f"  {c.note!r}" if c.note else ""
        status = "verified" if c.verified else "unverified"
        status += f" withdrawn {c.withdrawn_at[:19]}" if c.withdrawn_at else ""
        print(f"{c.id:>5}  {c.created_at}  {status:<10}  {c.reader!r:<14} {c.correct_label:<9} "
              f"(model: {c.predicted_label!r} p={c.probability:.3f} {c.model_version!r})  "
              f"{c.image_sha256[:12]}  {c.original_filename!r}{note}")
    print(f"{store.count()} corrections; integrity: {store.integrity()}")


def _withdraw(args: argparse.Namespace) -> None:
    c = _existing_store(args.root).withdraw(args.record, args.reader)
    print(f"record #{c.id} ({c.reader!r}: {c.correct_label}) withdrawn at {c.withdrawn_at}; kept in the history, "
          "left out of exports")


def _migrate(args: argparse.Namespace) -> None:
    from feedback.migrate import migrate  # psycopg only for this command
    from feedback.postgres_store import PostgresStore

    target = open_store(args.to)
    if not isinstance(target, PostgresStore):
        _fail(f"--to must name a PostgreSQL database (postgresql://user:password@host:port/dbname), got {args.to!r}")
    counts = migrate(_existing_store(args.root), target)
    print(f"copied {counts['corrections']} corrections ({counts['input_verdicts']} verdicts on inputs) and "
          f"{counts['images']} images -> {target.location}")
    print(f"prediction counts: {counts['predictions']} predictions, {counts['predicted_images']} predicted images "
          "noted; read back from both stores: the same")
    if counts["missing_images"]:
        print(f"{counts['missing_images']} images were already missing from {args.root} (their records are copied; "
              "the export skips them, as it did)")


def main(argv: list[str] | None = None) -> None:
    parser = Parser(prog="python -m feedback", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    export = commands.add_parser("export", help="write covid/, not_covid/ and MANIFEST.csv for training")
    export.add_argument("--root", default=settings.store_url(), help=ROOT_HELP)
    export.add_argument("--out", type=Path, required=True, help="new or empty folder to write")
    export.add_argument("--include-unverified", action="store_true",
                        help="also use corrections made without signing in (open mode, or from before accounts)")
    export.add_argument("--input-verdicts-out", type=Path,
                        help="new or empty folder for readers' verdicts on inputs the input check refused or let "
                             "through (in_scope/, out_of_scope/, MANIFEST.csv), kept apart from the labels "
                             "(default: OUT-gate beside --out; written only when there are any)")
    export.set_defaults(run=_export)

    hashing = commands.add_parser("hash-password", help="hash a password (prompted, or one line on stdin) for XRAY_READERS_FILE")
    hashing.add_argument("--name", help="print a full 'name:hash' line for this reader")
    hashing.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS,
                         help="PBKDF2 iterations (default: %(default)s)")
    hashing.set_defaults(run=_hash_password)

    listing = commands.add_parser("list", help="print every stored correction")
    listing.add_argument("--root", default=settings.store_url(), help=ROOT_HELP)
    listing.set_defaults(run=_list)

    withdraw = commands.add_parser("withdraw", help="withdraw a reader's own correction (kept, no longer exported)")
    withdraw.add_argument("record", type=int, help="the record number (python -m feedback list)")
    withdraw.add_argument("--reader", required=True, help="the reader who made it")
    withdraw.add_argument("--root", default=settings.store_url(), help=ROOT_HELP)
    withdraw.set_defaults(run=_withdraw)

    migrating = commands.add_parser("migrate", help="copy the SQLite store into an empty PostgreSQL database and "
                                                   "check the copy")
    migrating.add_argument("--to", required=True, metavar="URL",
                           help="postgresql://user:password@host:port/dbname (an empty database; the app then names "
                                "it in XRAY_STORE_URL)")
    migrating.add_argument("--root", type=Path, default=settings.feedback_dir(), help=SQLITE_ROOT_HELP)
    migrating.set_defaults(run=_migrate)

    args = parser.parse_args(argv)
    try:
        args.run(args)
    except ValueError as e:
        _fail(str(e))
    except (StoreUnreadable, StoreUnwritable) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(BAD_STORE)


if __name__ == "__main__":
    main()
