"""Schemas and quarantine reasons of the raw-log and lake contracts (docs/architecture.md)."""

from __future__ import annotations

from pyspark.sql.types import DateType, StringType, StructField, StructType, TimestampType

from pipeline.settings import EVENT_TYPES

__all__ = [
    "CORRUPT_RECORD_FIELD",
    "EVENT_TYPES",
    "LAKE_EVENT_COLUMNS",
    "LAKE_EVENT_SCHEMA",
    "LAKE_PARTITION_COLUMNS",
    "MAX_RAW_LINE_CHARS",
    "OPTIONAL_FIELDS",
    "QUARANTINE_SCHEMA",
    "RAW_EVENT_FIELDS",
    "RAW_EVENT_SCHEMA",
    "REQUIRED_FIELDS",
    "STRING_FIELDS",
    "EMPTY_LINE",
    "UNPARSEABLE",
    "UNKNOWN_EVENT_TYPE",
    "FUTURE_TIMESTAMP",
    "TOO_OLD_TIMESTAMP",
    "bad_type",
    "missing_field",
]

# Field order of the canonical format; quarantine checks walk fields in this order.
RAW_EVENT_FIELDS = ("event_id", "event_time", "user_id", "session_id", "item_id", "event_type", "extra")
REQUIRED_FIELDS = ("event_id", "event_time", "user_id", "item_id", "event_type")
OPTIONAL_FIELDS = ("session_id", "extra")
# Fields whose JSON value must be a string; ``extra`` must be an object.
STRING_FIELDS = ("event_id", "event_time", "user_id", "session_id", "item_id", "event_type")

# Spark puts a line it cannot parse into this field instead of failing the job.
CORRUPT_RECORD_FIELD = "_corrupt_record"

# Every field is read as a string: the JSON parser then hands over an object value of ``extra``
# as its JSON text, so nested values keep their types (a MapType would coerce them to strings).
# Type checks happen after parsing, where a wrong type becomes a quarantine reason instead of a
# silently coerced value.
RAW_EVENT_SCHEMA = StructType(
    [StructField(name, StringType(), nullable=True) for name in RAW_EVENT_FIELDS]
    + [StructField(CORRUPT_RECORD_FIELD, StringType(), nullable=True)]
)

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

# Quarantine reasons, machine-readable.
EMPTY_LINE = "empty_line"
UNPARSEABLE = "unparseable"
UNKNOWN_EVENT_TYPE = "unknown_event_type"
FUTURE_TIMESTAMP = "future_timestamp"
TOO_OLD_TIMESTAMP = "too_old_timestamp"


def missing_field(name: str) -> str:
    """Reason for a required field that is absent, null or blank."""
    return f"missing_field:{name}"


def bad_type(name: str) -> str:
    """Reason for a field whose JSON type (or, for ``event_time``, whose format) is wrong."""
    return f"bad_type:{name}"
