"""Line classification: each raw line's quarantine reason (null for a valid event) and its lake
columns, and the valid events left once duplicates are dropped.

A line is quarantined for the first rule it breaks (``ingest.schema`` names the reasons): a
salvage's reason (truncated or corrupt file, line too long), bad UTF-8, a blank or unparseable
line, a missing field, a field of the wrong JSON type, an id the serving API cannot be asked
about (``ingest.ids``), an unknown event type, a timestamp too far in the future or too old.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from typing import Collection

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from core.settings import Settings
from ingest.ids import FORBIDDEN_ID_CHARACTERS
from ingest.line_parser import FUNCTION_NAME
from ingest.schema import (
    BAD_ENCODING,
    EMPTY_LINE,
    EVENT_TYPES,
    FUTURE_TIMESTAMP,
    ID_FIELDS,
    LAKE_EVENT_COLUMNS,
    LAKE_EVENT_SCHEMA,
    LAKE_PARTITION_COLUMNS,
    LINE_TOO_LONG,
    MAX_ID_LENGTH,
    RAW_EVENT_FIELDS,
    REQUIRED_FIELDS,
    STRING_FIELDS,
    TOO_OLD_TIMESTAMP,
    UNKNOWN_EVENT_TYPE,
    UNPARSEABLE,
    bad_type,
    invalid_id,
    missing_field,
)

# Every line is checked by Spark's variant parser (try_parse_json): strict JSON, which is what
# the format promises, so a client that starts sending single quotes, NaN, comments or unquoted
# keys is noticed in the quarantine instead of being half-understood; duplicate keys are
# rejected at every depth. The contract's fields are cast in one go to a struct of variants,
# whose JSON types decide (a field is null when absent and a variant null when it is JSON null;
# only a JSON object casts to the struct, an array, a scalar or null casts to null).
RAW_FIELDS_TYPE = "struct<" + ", ".join(f"`{name}`: variant" for name in RAW_EVENT_FIELDS) + ">"
# The fields' text is read by Spark's JSON reader (from_json) instead: taking a string out of a
# variant builds and evaluates a Cast expression per value, which cost more than a second parse
# of the line. For a line the variant parser accepted, both read the same strings; an object
# comes back as its text with the keys in the line's order (the variant sorts them and spells
# numbers its own way).
RAW_TEXTS_TYPE = "struct<" + ", ".join(f"`{name}`: string" for name in RAW_EVENT_FIELDS) + ">"
# ISO-8601 with a zone. Spark's timestamp cast alone would also accept "2026" or a time without
# zone (read in the session zone), which the format does not allow.
ISO_TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})$"
BLANK_PATTERN = r"^\s*$"


def _blank(column: Column) -> Column:
    return column.isNull() | column.rlike(BLANK_PATTERN)


def classify_lines(
    lines: DataFrame, settings: Settings, arrival_date: date, max_line_bytes: int, parser: str = "sql",
) -> DataFrame:
    """Add ``reason`` (null for a valid event) and the parsed lake columns to every line.

    ``lines`` has the columns of ``ingest.raw_files.read_lines``. ``parser``: "jvm" parses each
    line once with the registered Java function (``ingest.line_parser``), "sql" with Spark's own
    expressions; both give the same columns.
    """
    types = {name: F.col(f"type_{name}") for name in RAW_EVENT_FIELDS}
    values = {name: F.col(f"value_{name}") for name in STRING_FIELDS}
    event_time = F.col("event_time")
    line = F.col("raw_line")

    typed = _parsed_by_jvm(lines) if parser == "jvm" else _parsed_by_sql(lines)

    with_values = typed.select(
        "*",
        # Only a JSON string is a value: a number or an object in a string field is a bad type.
        *(F.when(types[name] == "STRING", F.col("texts")[name]).alias(f"value_{name}") for name in STRING_FIELDS),
    )
    with_time = with_values.select("*", F.try_to_timestamp(values["event_time"]).alias("event_time"))
    reason = _reason(types, values, event_time, settings, arrival_date, max_line_bytes)
    with_reason = with_time.select("*", reason.alias("reason"))
    return with_reason.select(
        # Kept for the quarantine's evidence only: the cache of a day's lines and the dedup's
        # shuffle would otherwise carry every valid line's text, over half of their bytes.
        F.when(F.col("reason").isNotNull(), line).alias("raw_line"),
        "source_file",
        "line_bytes",
        "reason",
        values["event_id"].alias("event_id"),
        event_time,
        values["user_id"].alias("user_id"),
        # A blank session id is no session id: sessionization falls back to the inactivity gap.
        F.when(~_blank(values["session_id"]), values["session_id"]).alias("session_id"),
        values["item_id"].alias("item_id"),
        values["event_type"].alias("event_type"),
        F.when(F.col("reason").isNull() & types["extra"].startswith("OBJECT"), F.col("texts")["extra"]).alias("extra"),
        # From epoch seconds rather than to_date(), which would use the session time zone.
        F.date_from_unix_date(F.floor(F.unix_seconds(event_time) / 86400).cast("int")).alias("event_date"),
        F.lit(arrival_date).alias("arrival_date"),
    )


def _parsed_by_sql(lines: DataFrame) -> DataFrame:
    """``whole_object``, ``type_<field>`` and ``texts`` from Spark's parsers (three passes)."""
    line = F.col("raw_line")
    fields = F.col("fields")
    # One step per select: each derived column is computed once and the next step refers to it.
    # from_json has no whole-stage code generation: its step comes first, while a row is still
    # narrow, so that it is the only row materialized between the read and the rest of the
    # classification (after the variant parse, that row would carry a variant per field).
    with_texts = lines.select("raw_line", "source_file", "line_bytes", "preset_reason",
                              F.from_json(line, RAW_TEXTS_TYPE).alias("texts"))
    hashed = with_texts.select("*", F.xxhash64(line).alias("line_hash"))
    # The parser reads the first JSON value and ignores whatever follows it, which would let
    # `{...}}`, `{...},{...}` or two events glued by a lost newline through as one event (and
    # lose the rest). So a line is parsed as the first element of `[<line>,<its 64-bit hash>]`:
    # it is one JSON value and nothing more exactly when the hash comes back as the array's
    # second element. Text in the line that closed the array early and faked that ending would
    # have to hold the hash of the very line it is part of.
    wrapped = hashed.select(
        "*", F.try_parse_json(F.concat(F.lit("["), line, F.lit(","), F.col("line_hash"), F.lit("]"))).alias("wrapped"),
    )
    parsed = wrapped.select(
        "raw_line", "source_file", "line_bytes", "preset_reason",
        F.try_variant_get("wrapped", "$[0]", RAW_FIELDS_TYPE).alias("fields"),
        # As JSON text, not cast to a number: a variant cast builds an expression per value.
        (F.to_json(F.try_variant_get("wrapped", "$[1]", "variant")) == F.col("line_hash").cast("string"))
        .alias("whole_line"),
        "texts",
    )
    return parsed.select(
        "raw_line", "source_file", "line_bytes", "preset_reason",
        # Not JSON, not strict JSON, duplicate keys, not an object, or something after the object.
        (fields.isNotNull() & F.coalesce(F.col("whole_line"), F.lit(False))).alias("whole_object"),
        # The JSON type of each field: STRING, BIGINT, OBJECT<...>, VOID (null); null if absent.
        *(F.schema_of_variant(fields[name]).alias(f"type_{name}") for name in RAW_EVENT_FIELDS),
        "texts",
    )


def _parsed_by_jvm(lines: DataFrame) -> DataFrame:
    """The same columns as ``_parsed_by_sql`` from one pass of ``ParseEventLine`` per line."""
    parsed = lines.select("raw_line", "source_file", "line_bytes", "preset_reason",
                          F.call_function(FUNCTION_NAME, F.col("raw_line")).alias("parsed"))
    return parsed.select(
        "raw_line", "source_file", "line_bytes", "preset_reason",
        F.coalesce(F.col("parsed.whole_object"), F.lit(False)).alias("whole_object"),
        *(F.col(f"parsed.type_{name}").alias(f"type_{name}") for name in RAW_EVENT_FIELDS),
        F.struct(*(F.col(f"parsed.text_{name}").alias(name) for name in RAW_EVENT_FIELDS)).alias("texts"),
    )


def _reason(
    types: dict[str, Column], values: dict[str, Column], event_time: Column,
    settings: Settings, arrival_date: date, max_line_bytes: int,
) -> Column:
    """The first rule a line breaks, null if none, from ``classify_lines``'s parsed columns:
    each field's JSON type, its string value and the parsed event time."""
    line = F.col("raw_line")

    day_start = datetime.combine(arrival_date, time.min, tzinfo=timezone.utc)
    latest = day_start + timedelta(days=1, minutes=settings.max_future_skew_minutes)
    earliest = day_start - timedelta(days=settings.max_event_age_days)

    # Not JSON, not strict JSON, duplicate keys, not an object, or something after the object.
    unparseable = ~F.col("whole_object")
    present = {name: types[name].isNotNull() & (types[name] != "VOID") for name in RAW_EVENT_FIELDS}
    wrong_type: dict[str, Column] = {name: present[name] & (types[name] != "STRING") for name in STRING_FIELDS}
    wrong_type["event_time"] = (
        wrong_type["event_time"] | ~values["event_time"].rlike(ISO_TIME_PATTERN) | event_time.isNull()
    )
    wrong_type["extra"] = present["extra"] & ~types["extra"].startswith("OBJECT")

    reason = (
        F.when(F.col("preset_reason").isNotNull(), F.col("preset_reason"))
        # Spark hands over lines up to the limit + HADOOP_LINE_SLACK bytes; the limit is the rule.
        .when(F.col("line_bytes") > max_line_bytes, F.lit(LINE_TOO_LONG))
        # Spark keeps the raw bytes, but the parser reads them as UTF-8 with U+FFFD for bad
        # bytes: such a line would reach the lake with altered ids.
        .when(~F.is_valid_utf8(line), F.lit(BAD_ENCODING))
        # A blank line is never a whole object: the regex (a Java match from every position of
        # the line) runs on the few lines that are not.
        .when(unparseable & line.rlike(BLANK_PATTERN), F.lit(EMPTY_LINE))
        .when(unparseable, F.lit(UNPARSEABLE))
    )
    for name in REQUIRED_FIELDS:
        # Absent, null or a blank string. A value of another type is not blank: a bad type.
        missing = ~present[name] | ((types[name] == "STRING") & values[name].rlike(BLANK_PATTERN))
        reason = reason.when(missing, F.lit(missing_field(name)))
    for name in RAW_EVENT_FIELDS:
        reason = reason.when(wrong_type[name], F.lit(bad_type(name)))
    for name in ID_FIELDS:
        # An id the serving API cannot be asked about (ingest.ids). A blank session id is no
        # session id (see classify_lines), not a bad one.
        bad_id = present[name] & (
            (F.length(values[name]) > MAX_ID_LENGTH) | values[name].rlike(FORBIDDEN_ID_CHARACTERS))
        if name == "session_id":
            bad_id = bad_id & ~values[name].rlike(BLANK_PATTERN)
        reason = reason.when(bad_id, F.lit(invalid_id(name)))
    return (
        reason.when(~values["event_type"].isin(*EVENT_TYPES), F.lit(UNKNOWN_EVENT_TYPE))
        .when(event_time > F.lit(latest), F.lit(FUTURE_TIMESTAMP))
        .when(event_time < F.lit(earliest), F.lit(TOO_OLD_TIMESTAMP))
    )


def new_events(spark: SparkSession, classified: DataFrame, settings: Settings, arrival_date: date,
               excluded_arrival_dates: Collection[str] = ()) -> DataFrame:
    """Valid events, one per ``event_id``, minus those the lake has from earlier arrival days
    (the excluded ones aside)."""
    valid = classified.where(F.col("reason").isNull())
    # Deterministic choice among copies of one event_id, so re-runs keep the same row: the
    # earliest, ties broken by the other lake columns. Copies equal in all of them are the same
    # lake row, whichever line they came from, so the raw lines need not travel to the sort.
    first_copy = Window.partitionBy("event_id").orderBy(*LAKE_EVENT_COLUMNS[1:])
    unique = valid.withColumn("copy", F.row_number().over(first_copy)).where(F.col("copy") == 1)
    events = unique.select(*LAKE_EVENT_COLUMNS, *LAKE_PARTITION_COLUMNS)
    if settings.events_dir.is_dir():
        earlier_ids = (
            spark.read.schema(LAKE_EVENT_SCHEMA)
            .parquet(str(settings.events_dir))
            .where(F.col("arrival_date") < F.lit(arrival_date))
            .where(~F.col("arrival_date").isin([date.fromisoformat(d) for d in excluded_arrival_dates]))
            .select("event_id")
        )
        events = events.join(earlier_ids, on="event_id", how="left_anti")
    return events.select(*LAKE_EVENT_COLUMNS, *LAKE_PARTITION_COLUMNS)
