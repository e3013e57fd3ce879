"""Names several floors share, importable without torch, Spark or Airflow.

The DAG's ``model`` Param, the importers, the quality suites and the feature store all need these
lists; the floors that own the real objects (``training.models``, ``ingest.schema``) check at
import time that they agree with the lists here, so a copy can never drift.
"""

from __future__ import annotations

# The interaction types the lake accepts (``ingest.schema``), in funnel order.
EVENT_TYPES = ("view", "click", "add_to_cart", "purchase")

# The models the zoo has (``training.models.MODELS`` checks it holds exactly these), and what the
# DAG's ``model`` Param offers besides them.
MODEL_NAMES = ("sasrec", "bert4rec", "gru4rec", "hstu", "popularity", "covisitation", "sknn", "repeat", "hybrid",
               "tiger")
AUTO_MODEL = "auto"

# Quarantine reasons, machine-readable.
EMPTY_LINE = "empty_line"
UNPARSEABLE = "unparseable"
UNKNOWN_EVENT_TYPE = "unknown_event_type"
FUTURE_TIMESTAMP = "future_timestamp"
TOO_OLD_TIMESTAMP = "too_old_timestamp"
# The line's bytes are not UTF-8. Spark would read them with U+FFFD in place of the bad bytes,
# which would put altered ids into the lake.
BAD_ENCODING = "bad_encoding"
# The line is longer than the line limit (MAX_LINE_BYTES unless the run sets another); the
# quarantine keeps its first MAX_RAW_LINE_CHARS characters.
LINE_TOO_LONG = "line_too_long"
# A compressed file ends before its end marker (an upload cut short): its complete lines are
# ingested, and what cannot be read (the cut line, the lost rest) is one record with this reason.
TRUNCATED_FILE = "truncated_file"
# A compressed file's data is damaged (not gzip, bad deflate data, CRC mismatch): as for a
# truncated file, the lines before the damage are ingested and the rest is one record.
CORRUPT_FILE = "corrupt_file"


def missing_field(name: str) -> str:
    """Reason for a required field that is absent, null or blank."""
    return f"missing_field:{name}"


def bad_type(name: str) -> str:
    """Reason for a field whose JSON type (or, for ``event_time``, whose format) is wrong."""
    return f"bad_type:{name}"
