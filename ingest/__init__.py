"""Raw interaction logs into the Parquet lake.

``generator`` writes synthetic arrival days in the canonical JSON-lines format, ``ingest_day``
is the Spark job that turns one arrival day into lake events, quarantine rows and a
reconciliation record, ``schema`` holds the contracts both sides share and ``spark`` builds the
session every Spark task uses.
"""
