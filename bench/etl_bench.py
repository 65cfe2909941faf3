"""ETL benchmark: every figure is measured in this one run and printed as a ratio to a bare parse.

    python bench/etl_bench.py [--stations 10000] [--repeat 3]

1. Generates a feed of N stations and a second one a day later with 30% of
   prices changed (../shared/tools/gen_feed.py), and a daily-style history file.
2. Times a bare lxml iterparse of the first feed's XML (elements cleared; the
   least any parser of this document can do).
3. Times, in this process on a fresh SQLite database, the ETL's first load,
   the update to the second feed and a re-run of the unchanged second feed
   (best of --repeat, each on its own fresh database).
4. Measures peak RSS of the real command (`python etl.py run|backfill`) in a
   child process, for the first load, the update and the backfill.
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

import etl  # noqa: E402
from session import init_db, make_engine  # noqa: E402
from settings import load_settings  # noqa: E402

GEN_FEED = ROOT.parent / "shared" / "tools" / "gen_feed.py"
TARGETS = {"first load": 3.0, "update": 3.0, "unchanged re-run": 1.5}


def generate(out: Path, *args: str) -> Path:
    subprocess.run([sys.executable, str(GEN_FEED), "--out", str(out), *args], check=True, capture_output=True)
    return out


def bare_parse_seconds(xml_path: Path) -> float:
    started = time.perf_counter()
    for _, element in etree.iterparse(str(xml_path), events=("end",), tag="pdv"):
        element.clear(keep_tail=False)
        while element.getprevious() is not None:
            del element.getparent()[0]
    return time.perf_counter() - started


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
            started = time.perf_counter()
            etl.run_pass(engine, settings, str(feed))
            elapsed = time.perf_counter() - started
            best[label] = min(elapsed, best.get(label, elapsed))
        engine.dispose()
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stations", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
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

        rss_dir = work / "rss"
        rss_dir.mkdir()
        rss_first, wall_first = peak_rss_mb(rss_dir, "run", "--source", str(first))
        rss_update, wall_update = peak_rss_mb(rss_dir, "run", "--source", str(second))
        backfill_dir = work / "backfill"
        backfill_dir.mkdir()
        rss_backfill, wall_backfill = peak_rss_mb(backfill_dir, "backfill", "--source", str(daily))

    print(f"feed: {args.stations:,} stations, {size_mb:.1f} MB of XML; SQLite; best of {args.repeat}")
    print(f"bare lxml iterparse of the XML        {bare:7.3f} s   1.00x")
    for label, seconds in passes.items():
        ratio = seconds / bare
        verdict = "ok" if ratio <= TARGETS[label] else "OVER"
        print(f"ETL {label:<33} {seconds:7.3f} s   {ratio:4.2f}x  (target <= {TARGETS[label]}x: {verdict})")
    print(f"peak RSS, `etl.py run` first load      {rss_first:7.1f} MB  (target <= 100 MB; {wall_first:.2f} s wall)")
    print(f"peak RSS, `etl.py run` update          {rss_update:7.1f} MB  (target <= 100 MB; {wall_update:.2f} s wall)")
    print(
        f"peak RSS, `etl.py backfill` of {observations:,} observations {rss_backfill:7.1f} MB"
        f"  (target <= 150 MB; {wall_backfill:.2f} s wall)"
    )
    print(f"(this process: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
