"""What an id of the raw contract may hold: the rule ingestion quarantines by.

An id reaches the lake only if the serving API can be asked about it: at most
``MAX_ID_LENGTH`` characters and none of the characters a log line, a URL path or a terminal
treats as structure (C0 and C1 control characters such as NUL, tab or NEL, DEL, and the Unicode
line and paragraph separators). A user whose id breaks the rule could never be served, so the
event is quarantined as ``invalid_id:<field>`` instead of entering the lake.

Free of pyspark: the importers predict ingestion's reasons with it (``ingest.importers.canonical``)
and the import DAG's parse must not load Spark.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

# The serving API's limit on a user or item id (serving.app.MAX_USER_ID_LENGTH); the two must
# agree, or ingestion lets in users the API refuses (tests/reliability/test_bad_ids.py checks).
# Counted in Unicode code points, as Python's len and Spark's length both count.
MAX_ID_LENGTH = 256
# The id fields of the raw contract, in its field order (the first bad one names the reason).
ID_FIELDS = ("event_id", "user_id", "session_id", "item_id")
# Written so that Python's re and Java's regex (Spark's rlike) read the same class: C0 controls,
# DEL and the C1 controls (NEL is U+0085), LINE SEPARATOR and PARAGRAPH SEPARATOR.
FORBIDDEN_ID_CHARACTERS = r"[\x00-\x1f\x7f-\x9f\u2028\u2029]"
_FORBIDDEN = re.compile(FORBIDDEN_ID_CHARACTERS)
# What ingestion's blank check calls blank: Java's ``^\s*$``, whose ``$`` also matches before
# one final line terminator (NEL and the separators included). A blank id is a missing one (a
# blank session id is no session id), not a bad one.
_BLANK = re.compile(r"[ \t\n\x0b\f\r]*[\u0085\u2028\u2029]?")


def invalid_id(name: str) -> str:
    """Quarantine reason for an id too long or holding a forbidden character."""
    return f"invalid_id:{name}"


def is_valid_id(value: str) -> bool:
    """Whether ``value`` (a present, non-blank id) may enter the lake."""
    return len(value) <= MAX_ID_LENGTH and _FORBIDDEN.search(value) is None


def first_invalid_id(record: Mapping[str, Any]) -> str | None:
    """``invalid_id:<field>`` for the first id of ``record`` (parsed JSON) in contract order that
    breaks the rule, None if none does. Absent, non-string and blank ids are other reasons."""
    for name in ID_FIELDS:
        value = record.get(name)
        if not isinstance(value, str) or _BLANK.fullmatch(value):
            continue
        if not is_valid_id(value):
            return invalid_id(name)
    return None
