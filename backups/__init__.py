"""Backups of what people create: their accounts, credentials, fuels, followed stations and settings.

`archive` owns the file format (a gzip'd JSON document with a format version and the SHA-256 of
its payload), `targets` where backups are kept (a local folder or an S3 prefix, newest N kept),
`content` which rows a backup holds and how they are put back, and `service` the backup, the
restore and the automatic restore that `etl.py` offers. Price data is not backed up: the feed
brings it back within a pass.
"""
