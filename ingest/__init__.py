"""Raw interaction logs into the Parquet lake.

``generator`` writes synthetic arrival days in the canonical JSON-lines format, ``ingest_day``
is the Spark job that turns one arrival day into lake events, quarantine rows and a
reconciliation record (and plans ranges of days). Its parts, in the order a day goes through
them: ``raw_inventory`` lists the raw files, ``raw_files`` reads them (salvaging damaged ones),
``classify`` gives each line its quarantine reason and drops duplicates (``line_parser``: the
JVM parser it can use), ``staging`` writes and reconciles the run, ``publish`` makes it
visible atomically. ``schema`` and ``ids`` hold the contracts both sides share and ``spark``
builds the session every Spark task uses.
"""
