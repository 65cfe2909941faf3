"""The ETL's command line; the work lives in the ingest package.

    python etl.py run [--source URL_OR_PATH] [--force]
    python etl.py backfill --source FILE_OR_URL | --year YYYY
    python etl.py brands [--source URL_OR_PATH]
    python etl.py backup [--to DIR_OR_S3_URL]
    python etl.py restore FILE_OR_S3_URL [--with-deleted]
    python etl.py places [--source URL_OR_PATH]
    python etl.py serve

`backup` and `restore` save and bring back what people create (accounts, credentials, fuels,
followed stations, settings); that work lives in the backups package. `serve` also evaluates the
price alerts after each successful pass and mails them (the alerts package).

Every command first brings the database up to date (`init_db`). A run loads the whole feed in
one transaction: on any failure nothing is changed, a failed run is recorded and the command exits
non-zero with one line saying why. Each command imports what it needs when it runs, so that
`etl.py --help` and the scheduler's start stay quick.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from ingest.scheduler import Job
    from settings import Settings

log = logging.getLogger("etl")


def command_line() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="etl.py", description="Load the French fuel-price feed.")
    commands = parser.add_subparsers(dest="command", required=True)
    run_cmd = commands.add_parser("run", help="run one pass and exit")
    run_cmd.add_argument("--source", help="feed URL or local file (default: CARBUROAM_FEED_URL)")
    run_cmd.add_argument("--force", action="store_true", help="load even a feed with far fewer stations")
    backfill_cmd = commands.add_parser("backfill", help="load a file of past prices into the history")
    backfill_from = backfill_cmd.add_mutually_exclusive_group(required=True)
    backfill_from.add_argument("--source", help="daily or yearly archive, URL or local file")
    backfill_from.add_argument("--year", type=int, help="the official yearly archive of this year (2007 on)")
    brands_cmd = commands.add_parser("brands", help="import station brands and names from OpenStreetMap")
    brands_cmd.add_argument("--source", help="OSM stations CSV, URL or local file (default: CARBUROAM_BRANDS_URL)")
    places_cmd = commands.add_parser("places", help="import France's communes and postcodes from La Poste")
    places_cmd.add_argument(
        "--source", help="La Poste's postcode base, URL or local file (default: CARBUROAM_PLACES_URL)"
    )
    backup_cmd = commands.add_parser("backup", help="back up the accounts and what they follow")
    backup_cmd.add_argument("--to", help="folder or s3://bucket/prefix (default: BACKUP_TARGET)")
    restore_cmd = commands.add_parser("restore", help="restore a backup of the accounts")
    restore_cmd.add_argument("source", help="backup file or s3:// object; a folder or prefix means its newest backup")
    restore_cmd.add_argument(
        "--with-deleted", action="store_true", help="also bring back the accounts deleted since the backup"
    )
    commands.add_parser("serve", help="run passes on schedule (pid-file guarded)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = command_line().parse_args(argv)
    serving = args.command == "serve"
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s" if serving else "%(message)s",
        stream=sys.stdout if serving else sys.stderr,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)

    from settings import load_settings

    try:
        settings = load_settings()
    except ValueError as exc:
        log.error("etl: configuration error: %s", exc)
        return 2
    if serving:
        return _serve(settings)

    # Importing SQLAlchemy and the models makes ~100,000 objects that live to the end: the cyclic garbage
    # collector would run ~150 times meanwhile, then go through them all again at each full collection
    # of the run, freeing nothing (a sixth of an hourly `etl.py run`'s CPU). It is held off during the
    # imports; in a process of its own, what they made is then frozen out of every later collection,
    # before the collector is back: its first pass would otherwise go through them all once more (a
    # quarter of a bare parse of the feed).
    from utils import collector_held, first_line

    with collector_held():
        from sqlalchemy.exc import SQLAlchemyError

        from ingest import passes
        from ingest.runs import EtlError
        from session import init_db, make_engine

        if __name__ == "__main__":
            gc.freeze()

    engine = make_engine(settings.database_url)
    try:
        init_db(engine)
        if args.command == "run":
            summary = passes.run_pass(engine, settings, args.source, args.force)
        elif args.command in ("brands", "places"):
            summary = _import_command(engine, settings, args)
        elif args.command == "backfill":
            summary = _backfill_command(engine, settings, args)
        else:
            summary = _backup_command(engine, settings, args)
    except EtlError as exc:
        log.error("etl: %s", exc)
        return 1
    except SQLAlchemyError as exc:
        log.error("etl: cannot prepare the database: %s", first_line(exc))
        return 1
    finally:
        engine.dispose()
    print(summary)
    return 0


def _import_command(engine: Engine, settings: Settings, args: argparse.Namespace) -> str:
    """A brand or places import (a price run never needs their code), said in one line."""
    from ingest import imports

    reference = imports.REFERENCES[args.command]
    source = args.source or reference.url(settings)
    return imports.import_reference(engine, settings, reference, source).describe(source)


def _backfill_command(engine: Engine, settings: Settings, args: argparse.Namespace) -> str:
    """A backfill with a progress bar on the terminal (the admin page shows the same progress)."""
    from tqdm import tqdm

    from ingest import passes
    from ingest.errors import FeedError
    from ingest.runs import EtlError
    from ingest.source import yearly_archive_url
    from utils import PARIS, utcnow

    try:
        source = args.source or yearly_archive_url(args.year, utcnow().astimezone(PARIS).year)
    except FeedError as exc:
        raise EtlError(str(exc)) from exc
    bars: dict[str, tqdm] = {}

    def show(phase: str, done: int, total: int) -> None:
        if phase not in BAR_LABELS:
            return
        bar = bars.get(phase)
        if bar is None:
            unit = "B" if phase == "loading" else " days"
            bar = bars[phase] = tqdm(total=total, desc=BAR_LABELS[phase], unit=unit, unit_scale=phase == "loading")
        bar.update(done - bar.n)

    try:
        return str(passes.backfill(engine, settings, source, show))
    finally:
        for bar in bars.values():
            bar.close()


BAR_LABELS = {"loading": "reading the archive", "aggregates": "daily figures"}


def _backup_command(engine: Engine, settings: Settings, args: argparse.Namespace) -> str:
    """A backup or a restore (a price run never needs their code, nor the translations they load)."""
    from backups import service
    from backups.archive import BackupError
    from ingest.runs import EtlError

    try:
        if args.command == "backup":
            return service.backup(engine, settings, args.to)
        return service.restore(engine, settings, args.source, with_deleted=args.with_deleted)
    except BackupError as exc:
        raise EtlError(str(exc)) from exc


def _serve(settings: Settings) -> int:
    from ingest.scheduler import serve

    jobs, startup = scheduler_jobs(settings)
    return serve(settings, jobs=jobs, startup=startup, after_pass=[alerts_job(settings)])


def scheduler_jobs(settings: Settings) -> tuple[list[Job], list[Job]]:
    """The jobs handed to the scheduler (the pipeline knows nothing of accounts): the daily backup, and
    at start the restore of a lost database."""
    from functools import partial

    from backups.archive import BackupError
    from backups.service import restore_if_lost, scheduled_backup
    from ingest.scheduler import Job

    daily_backup = Job(
        kind="backup",
        source=settings.backup_location,
        interval_seconds=settings.backup_interval_seconds,
        run=partial(scheduled_backup, settings=settings),
        failures=(BackupError,),
    )
    lost_disk = Job(
        kind="restore",
        source=settings.backup_target,
        interval_seconds=0,
        run=partial(restore_if_lost, settings=settings),
        failures=(BackupError,),
    )
    return [daily_backup], [lost_disk]


def alerts_job(settings: Settings) -> Job:
    """The alerts, evaluated and mailed after each successful pass (see alerts/outbox.py)."""
    from functools import partial

    from alerts.outbox import FAILURES, after_pass
    from ingest.scheduler import Job

    return Job(
        kind="alerts",
        source=settings.smtp_host or str(settings.mail_dir),
        interval_seconds=0,
        run=partial(after_pass, settings=settings),
        failures=FAILURES,
    )


if __name__ == "__main__":
    sys.exit(main())
