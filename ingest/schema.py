"""Schemas and quarantine reasons of the raw-log and lake contracts (docs/architecture.md)."""

from __future__ import annotations

from pyspark.sql.types import DateType, StringType, StructField, StructType, TimestampType

from ingest.ids import ID_FIELDS, MAX_ID_LENGTH, invalid_id
from core.names import (
    BAD_ENCODING, CORRUPT_FILE, EMPTY_LINE, EVENT_TYPES, FUTURE_TIMESTAMP, LINE_TOO_LONG, TOO_OLD_TIMESTAMP,
    TRUNCATED_FILE, UNKNOWN_EVENT_TYPE, UNPARSEABLE, bad_type, missing_field,
)

__all__ = [
    "EVENT_TYPES",
    "ID_FIELDS",
    "LAKE_EVENT_COLUMNS",
    "LAKE_EVENT_SCHEMA",
    "LAKE_PARTITION_COLUMNS",
    "MAX_ID_LENGTH",
    "MAX_LINE_BYTES",
    "MAX_RAW_LINE_CHARS",
    "OPTIONAL_FIELDS",
    "QUARANTINE_SCHEMA",
    "RAW_EVENT_FIELDS",
    "REQUIRED_FIELDS",
    "STRING_FIELDS",
    "EMPTY_LINE",
    "UNPARSEABLE",
    "UNKNOWN_EVENT_TYPE",
    "FUTURE_TIMESTAMP",
    "TOO_OLD_TIMESTAMP",
    "BAD_ENCODING",
    "LINE_TOO_LONG",
    "TRUNCATED_FILE",
    "CORRUPT_FILE",
    "bad_type",
    "invalid_id",
    "missing_field",
]

# Field order of the canonical format; quarantine checks walk fields in this order.
RAW_EVENT_FIELDS = ("event_id", "event_time", "user_id", "session_id", "item_id", "event_type", "extra")
REQUIRED_FIELDS = ("event_id", "event_time", "user_id", "item_id", "event_type")
OPTIONAL_FIELDS = ("session_id", "extra")
# Fields whose JSON value must be a string; ``extra`` must be an object.
STRING_FIELDS = ("event_id", "event_time", "user_id", "session_id", "item_id", "event_type")

LAKE_PARTITION_COLUMNS = ("event_date", "arrival_date")
LAKE_EVENT_COLUMNS = ("event_id", "event_time", "user_id", "session_id", "item_id", "event_type", "extra")
# Data columns, then the hive partition columns; readers pass this schema so that an empty lake
# folder reads as zero rows instead of failing schema inference.
LAKE_EVENT_SCHEMA = StructType(
    [
        StructField("event_id", StringType(), nullable=False),
        StructField("event_time", TimestampType(), nullable=False),
        StructField("user_id", StringType(), nullable=False),
        StructField("session_id", StringType(), nullable=True),
        StructField("item_id", StringType(), nullable=False),
        StructField("event_type", StringType(), nullable=False),
        StructField("extra", StringType(), nullable=True),
        StructField("event_date", DateType(), nullable=False),
        StructField("arrival_date", DateType(), nullable=False),
    ]
)

QUARANTINE_SCHEMA = StructType(
    [
        StructField("raw_line", StringType(), nullable=False),
        StructField("reason", StringType(), nullable=False),
        StructField("source_file", StringType(), nullable=False),
    ]
)
# Quarantine keeps evidence, not arbitrarily large payloads.
MAX_RAW_LINE_CHARS = 10_000
# Longest raw line (bytes, without its line end) that ingestion parses. An event is a few hundred
# bytes; a line far beyond that is a broken export (a lost newline across a whole file, a binary
# blob) and must neither be parsed nor held whole in memory: it is quarantined with a prefix.
MAX_LINE_BYTES = 1 << 20
