"""ETL benchmark: every figure is measured in this one run and printed as a ratio to a bare parse.

    python bench/etl_bench.py [--stations 10000] [--repeat 3] [--database-url postgresql+psycopg://...]

1. Generates a feed of N stations and a second one a day later with 30% of
   prices changed (../shared/tools/gen_feed.py), and a daily-style history file.
2. Times a bare lxml iterparse of the first feed's XML (elements cleared; the
   least any parser of this document can do).
3. Times, in this process on a fresh SQLite database, the ETL's first load,
   the update to the second feed and a re-run of the unchanged second feed
   (best of --repeat, each on its own fresh database). Steps 2, 3 and the
   in-process part of 5 count this process's CPU time: SQLite works inside
   it, and the ratios hold on a machine busy with other work, as wall time
   does not.
4. Measures peak RSS of the real command (`python etl.py run|backfill`) in a
   child process, for the first load, the update and the backfill; then for
   backfills of larger archives of 10,000 stations (--archive-history records
   per fuel, default 30 and 100), each into a fresh database: a backfill holds
   one batch at a time, so peak RSS must stay flat as the archive grows. A
   yearly archive is about 365 records per fuel (14.6 million observations,
   1.1 GB of XML): `--archive-history 365` measures it, at the cost of minutes
   to generate it (and gigabytes of memory for the generator) and to load it.
5. Hourly updates: `python etl.py run` of the newer feed on a database
   holding the older one, against `python -c` doing a bare iterparse of the
   same zip, both timed as whole processes (best of --repeat, wall and CPU
   time); then the same update in this process, as the scheduler (`etl.py
   serve`) runs it, against the bare iterparse in this process. For the real
   pair of snapshots two hours apart (../shared/feeds/real, skipped when
   absent) and a generated pair where about 2% of the stations change (same
   day, --price-drift 0.005). Also timed: `python -c "import etl"`, and a
   process importing what `etl.py run` imports (Python, SQLAlchemy, the
   models and the ingest package) before any work: the floor of a run.
6. With --database-url (or CARBUROAM_BENCH_DATABASE_URL), a PostgreSQL server:
   the first load and the update of step 3 again, each attempt in a database
   of its own created on that server and dropped afterwards; wall time, and
   this process's CPU time (the client's share: the server works beside it).
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from lxml import etree

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingest import passes  # noqa: E402
from session import init_db, make_engine  # noqa: E402
from settings import load_settings  # noqa: E402

GEN_FEED = ROOT.parent / "shared" / "tools" / "gen_feed.py"
REAL_FEEDS = ROOT.parent / "shared" / "feeds" / "real"
REAL_PAIR = tuple(REAL_FEEDS / f"instantane_yzpt-dataflow_2023-11-25{half}.zip" for half in "ab")
TARGETS = {"first load": 3.0, "update": 3.0, "unchanged re-run": 1.5}
# PostgreSQL's figures are judged on this process's CPU time: the server works on another core.
PG_TARGETS = {"first load": 4.0}
ARCHIVE_RSS_TARGET = 200  # MB, for the backfill of a yearly archive
ARCHIVE_STATIONS = 10_000  # as many as the real archives list
HOURLY_TARGET = 1.2  # an hourly update, whole process, against a bare-parse process of the same zip
HOURLY_DRIFT = "0.005"  # share of prices changed: with ~4 prices a station, ~2% of the stations change
# What `etl.py run` imports before it reads anything, as it imports them (collector held off, then frozen).
RUN_IMPORTS = "import gc; gc.disable(); import sqlalchemy.exc, ingest.passes, session; gc.freeze()"
BARE_PARSE_SCRIPT = """
import sys, zipfile
from lxml import etree
with zipfile.ZipFile(sys.argv[1]) as archive, archive.open(archive.infolist()[0]) as xml:
    for _, element in etree.iterparse(xml, events=("end",), tag="pdv"):
        element.clear(keep_tail=False)
        while element.getprevious() is not None:
            del element.getparent()[0]
"""


def generate(out: Path, *args: str) -> Path:
    subprocess.run([sys.executable, str(GEN_FEED), "--out", str(out), *args], check=True, capture_output=True)
    return out


def generated_archive(work: Path, stations: int, history: int) -> tuple[Path, int, int]:
    """A quotidien-style archive of `history` price records per fuel: (path, observations, bytes of XML)."""
    out = work / f"archive-{history}.zip"
    command = [sys.executable, str(GEN_FEED), "--out", str(out), "--kind", "quotidien", "--stations", str(stations)]
    done = subprocess.run([*command, "--seed", "2", "--history", str(history)], check=True, capture_output=True)
    counts = dict(field.split("=", 1) for field in done.stderr.decode().split())
    return out, int(counts["prix"]), int(counts["xml_bytes"])


def archive_backfills(work: Path, stations: int, histories: list[int]) -> list[tuple[int, int, float, float]]:
    """(observations, bytes of XML, peak RSS in MB, wall seconds) of `etl.py backfill` of each archive, each into
    a fresh database."""
    figures = []
    for history in histories:
        archive, observations, size = generated_archive(work, stations, history)
        data_dir = work / f"archive-{history}"
        data_dir.mkdir()
        figures.append((observations, size, *peak_rss_mb(data_dir, "backfill", "--source", str(archive))))
        archive.unlink()
        (data_dir / "db.sqlite3").unlink(missing_ok=True)
    return figures


def bare_parse_seconds(xml_path: Path) -> float:
    started = time.process_time()
    for _, element in etree.iterparse(str(xml_path), events=("end",), tag="pdv"):
        element.clear(keep_tail=False)
        while element.getprevious() is not None:
            del element.getparent()[0]
    return time.process_time() - started


def timed_passes(work: Path, first: Path, second: Path, repeat: int) -> dict[str, float]:
    """Best-of-`repeat` seconds for first load, update and unchanged re-run, each series on a fresh database."""
    best: dict[str, float] = {}
    for attempt in range(repeat):
        data_dir = work / f"timed-{attempt}"
        data_dir.mkdir()
        os.environ["CARBUROAM_DATA_DIR"] = str(data_dir)
        settings = load_settings()
        engine = make_engine(settings.database_url)
        init_db(engine)
        for label, feed in (("first load", first), ("update", second), ("unchanged re-run", second)):
            started = time.process_time()
            passes.run_pass(engine, settings, str(feed))
            elapsed = time.process_time() - started
            best[label] = min(elapsed, best.get(label, elapsed))
        engine.dispose()
    return best


def timed_server_passes(work: Path, server_url: str, first: Path, second: Path, repeat: int) -> dict[str, tuple]:
    """Best-of-`repeat` (wall, CPU of this process) seconds of the first load and the update on a database server.

    Each attempt creates a database of its own on the server of `server_url`, and drops it afterwards.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy_utils import create_database, drop_database

    best: dict[str, tuple[float, float]] = {}
    for attempt in range(repeat):
        url = make_url(server_url).set(database=f"carburoam_bench_{os.getpid()}_{attempt}")
        url_text = url.render_as_string(hide_password=False)
        create_database(url_text)
        try:
            data_dir = work / f"server-{attempt}"
            data_dir.mkdir()
            os.environ["CARBUROAM_DATA_DIR"] = str(data_dir)
            settings = load_settings()
            engine = make_engine(url_text)
            init_db(engine)
            for label, feed in (("first load", first), ("update", second)):
                wall, cpu = time.perf_counter(), time.process_time()
                passes.run_pass(engine, settings, str(feed))
                figures = (time.perf_counter() - wall, time.process_time() - cpu)
                best[label] = min(figures, best.get(label, figures))
            engine.dispose()
        finally:
            drop_database(url_text)
    return best


def peak_rss_mb(data_dir: Path, *command: str) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of `python etl.py COMMAND` run as a child process."""
    env = {**os.environ, "CARBUROAM_DATA_DIR": str(data_dir)}
    script = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "subprocess.run(sys.argv[1:], check=True, capture_output=True)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, time.perf_counter() - t)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, sys.executable, str(ROOT / "etl.py"), *command],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    ).stdout.split()
    return float(out[0]), float(out[1])


def process_seconds(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall, CPU) seconds of `command` run to its end as a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def hourly_update(work: Path, label: str, older: Path, newer: Path, repeat: int) -> dict[str, tuple[float, float]]:
    """Best-of-`repeat` (wall, CPU) of a bare-parse process of `newer` and of `etl.py run` from `older` to `newer`."""
    bare = min(process_seconds([sys.executable, "-c", BARE_PARSE_SCRIPT, str(newer)]) for _ in range(repeat))
    runs = []
    for attempt in range(repeat):
        data_dir = work / f"{label}-{attempt}"
        data_dir.mkdir()
        env = {**os.environ, "CARBUROAM_DATA_DIR": str(data_dir)}
        env.pop("CARBUROAM_DATABASE_URL", None)
        etl_run = [sys.executable, str(ROOT / "etl.py"), "run", "--source"]
        process_seconds([*etl_run, str(older)], env)
        runs.append(process_seconds([*etl_run, str(newer)], env))
    return {"bare": bare, "update": min(runs)}


def extracted(work: Path, zipped: Path) -> Path:
    """The XML of `zipped`, written beside the other files of the run."""
    with zipfile.ZipFile(zipped) as archive:
        member = archive.infolist()[0]
        path = work / f"{zipped.stem}.xml"
        path.write_bytes(archive.read(member))
    return path


def changed_share(older: Path, newer: Path) -> tuple[int, int]:
    """(stations whose <pdv> bytes differ or are new in `newer`, stations in `newer`)."""

    def blocks(path: Path) -> dict[bytes, bytes]:
        with zipfile.ZipFile(path) as archive:
            xml = archive.read(archive.infolist()[0])
        return {block[: block.index(b'"', 1)]: block for block in xml.split(b"<pdv id=")[1:]}

    before, after = blocks(older), blocks(newer)
    return sum(before.get(key) != block for key, block in after.items()), len(after)


def timed_update(work: Path, label: str, older: Path, newer: Path, repeat: int) -> float:
    """Best-of-`repeat` seconds of the pass from `older` to `newer` in this process, each on a fresh database."""
    best = float("inf")
    for attempt in range(repeat):
        data_dir = work / f"inproc-{label}-{attempt}"
        data_dir.mkdir()
        os.environ["CARBUROAM_DATA_DIR"] = str(data_dir)
        settings = load_settings()
        engine = make_engine(settings.database_url)
        init_db(engine)
        passes.run_pass(engine, settings, str(older))
        started = time.process_time()
        passes.run_pass(engine, settings, str(newer))
        best = min(best, time.process_time() - started)
        engine.dispose()
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stations", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("CARBUROAM_BENCH_DATABASE_URL"),
        help="a PostgreSQL server (any database name: the benchmark creates and drops its own)",
    )
    parser.add_argument(
        "--archive-history",
        default="30,100",
        help="price records per fuel of the larger archives backfilled, comma-separated (365: a yearly archive)",
    )
    args = parser.parse_args()
    if not GEN_FEED.exists():
        print(f"needs {GEN_FEED} (the shared feed generator)", file=sys.stderr)
        return 2
    logging.disable(logging.INFO)

    with tempfile.TemporaryDirectory(prefix="carburoam-bench-") as tmp:
        work = Path(tmp)
        first = generate(work / "day1.zip", "--stations", str(args.stations), "--seed", "1")
        second = generate(
            work / "day2.zip", "--stations", str(args.stations), "--seed", "1", "--day", "2024-05-09",
            "--price-drift", "0.3",
        )  # fmt: skip
        daily = generate(
            work / "quotidien.zip", "--kind", "quotidien", "--stations", str(args.stations), "--seed", "2",
            "--history", "10",
        )  # fmt: skip
        with zipfile.ZipFile(first) as archive:
            member = archive.infolist()[0]
            archive.extract(member, work)
            xml_path = work / member.filename
            size_mb = xml_path.stat().st_size / 1e6
        with zipfile.ZipFile(daily) as archive:
            observations = archive.read(archive.infolist()[0]).count(b"<prix ")

        bare = min(bare_parse_seconds(xml_path) for _ in range(args.repeat))
        passes = timed_passes(work, first, second, args.repeat)
        server = timed_server_passes(work, args.database_url, first, second, args.repeat) if args.database_url else {}

        rss_dir = work / "rss"
        rss_dir.mkdir()
        rss_first, wall_first = peak_rss_mb(rss_dir, "run", "--source", str(first))
        rss_update, wall_update = peak_rss_mb(rss_dir, "run", "--source", str(second))
        backfill_dir = work / "backfill"
        backfill_dir.mkdir()
        rss_backfill, wall_backfill = peak_rss_mb(backfill_dir, "backfill", "--source", str(daily))
        histories = [int(history) for history in args.archive_history.split(",") if history]
        archives = archive_backfills(work, ARCHIVE_STATIONS, histories)

        hourly_next = generate(
            work / "day1-later.zip", "--stations", str(args.stations), "--seed", "1", "--price-drift", HOURLY_DRIFT
        )
        hourly = {}
        pairs = {"generated pair": (first, hourly_next)}
        if all(path.is_file() for path in REAL_PAIR):
            pairs = {"real pair 2023-11-25": REAL_PAIR, **pairs}
        for label, (older, newer) in pairs.items():
            key = label.split()[0]
            figures = hourly_update(work, key, older, newer, args.repeat)
            newer_xml = extracted(work, newer)
            figures["bare in process"] = min(bare_parse_seconds(newer_xml) for _ in range(args.repeat))
            figures["update in process"] = timed_update(work, key, older, newer, args.repeat)
            hourly[label] = (changed_share(older, newer), figures)
        imports = min(process_seconds([sys.executable, "-c", "import etl"]) for _ in range(args.repeat))
        run_imports = min(process_seconds([sys.executable, "-c", RUN_IMPORTS]) for _ in range(args.repeat))

    databases = "SQLite and PostgreSQL" if server else "SQLite"
    print(f"feed: {args.stations:,} stations, {size_mb:.1f} MB of XML; {databases}; best of {args.repeat}")
    print(f"bare lxml iterparse of the XML        {bare:7.3f} s   1.00x  (CPU time, as the stages below)")
    for label, seconds in passes.items():
        ratio = seconds / bare
        verdict = "ok" if ratio <= TARGETS[label] else "OVER"
        print(f"ETL {label:<33} {seconds:7.3f} s   {ratio:4.2f}x  (target <= {TARGETS[label]}x: {verdict})")
    for label, (wall, cpu) in server.items():
        target = PG_TARGETS.get(label)
        verdict = f"target <= {target}x: {'ok' if cpu / bare <= target else 'OVER'}" if target else "no target"
        print(
            f"ETL {label + ', PostgreSQL':<33} {wall:7.3f} s   {wall / bare:4.2f}x wall; "
            f"client CPU {cpu:.3f} s {cpu / bare:4.2f}x  ({verdict})"
        )
    print(f"peak RSS, `etl.py run` first load      {rss_first:7.1f} MB  (target <= 100 MB; {wall_first:.2f} s wall)")
    print(f"peak RSS, `etl.py run` update          {rss_update:7.1f} MB  (target <= 100 MB; {wall_update:.2f} s wall)")
    print(
        f"peak RSS, `etl.py backfill` of {observations:,} observations {rss_backfill:7.1f} MB"
        f"  (target <= 150 MB; {wall_backfill:.2f} s wall)"
    )
    for observations, size, rss, wall in archives:
        verdict = "ok" if rss <= ARCHIVE_RSS_TARGET else "OVER"
        print(
            f"peak RSS, `etl.py backfill` of an archive of {observations:,} observations ({size / 1e6:,.0f} MB of XML)"
            f" {rss:7.1f} MB  (target for a yearly archive <= {ARCHIVE_RSS_TARGET} MB: {verdict}; {wall:.1f} s wall)"
        )
    if len(archives) > 1:
        (smallest, _, low, _), (largest, _, high, _) = archives[0], archives[-1]
        print(
            f"  {largest / smallest:.1f}x the observations, {high / low:.2f}x the peak RSS"
            " (flat when memory is bounded by the batch, not the file)"
        )
    if not all(path.is_file() for path in REAL_PAIR):
        print(f"hourly update of the real pair: skipped ({REAL_FEEDS} is absent)")
    for label, ((changed, stations), figures) in hourly.items():
        (bare_wall, bare_cpu), (wall, cpu) = figures["bare"], figures["update"]
        verdict = "ok" if wall / bare_wall <= HOURLY_TARGET else "OVER"
        bare_here, here = figures["bare in process"], figures["update in process"]
        print(
            f"hourly update, {label} ({changed:,} of {stations:,} stations changed):\n"
            f"  whole processes: `python -c` bare iterparse of the zip {bare_wall:6.3f} s wall {bare_cpu:6.3f} s CPU"
            f"  1.00x\n"
            f"                   `etl.py run` update                   {wall:6.3f} s wall {cpu:6.3f} s CPU"
            f"  {wall / bare_wall:4.2f}x wall {cpu / bare_cpu:4.2f}x CPU  (target <= {HOURLY_TARGET}x: {verdict})\n"
            f"  in this process: bare iterparse of the XML {bare_here:6.3f} s, update {here:6.3f} s"
            f"  {here / bare_here:4.2f}x"
        )
    bare_wall, bare_cpu = next(iter(hourly.values()))[1]["bare"]
    print(
        f'starting up: `python -c "import etl"` {imports[0]:.3f} s wall {imports[1]:.3f} s CPU, '
        f"{imports[0] / bare_wall:4.2f}x the first bare-parse process above, before any work\n"
        f"             what `etl.py run` imports before any work (SQLAlchemy, the models, ingest)"
        f" {run_imports[0]:.3f} s wall {run_imports[1]:.3f} s CPU, {run_imports[1] / bare_cpu:4.2f}x its CPU"
    )
    print(f"(this process: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
