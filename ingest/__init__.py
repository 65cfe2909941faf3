"""The price pipeline: fetch the official feed, read it, load it, record each pass, run on schedule.

    fetch -> source -> parse (records) / update -> load (bulk) -> passes, imports (runs) -> scheduler

`etl.py` is its command line. Nothing here imports Streamlit: the scheduler runs as its own process.
"""
