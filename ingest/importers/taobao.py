"""Taobao UserBehavior (Tianchi, 2017): ``user_id,item_id,category_id,behavior,timestamp``
without a header, ``timestamp`` in unix seconds.

``pv``/``cart``/``buy`` become ``view``/``add_to_cart``/``purchase``. ``fav`` (adding the item
to favourites) has no canonical type; it becomes ``click``, the type between a view and an
add-to-cart in the funnel the platform counts, and ``extra`` keeps ``{"behavior": "fav"}`` so it
can be told apart. Any other behaviour is quarantined as an unknown event type. The log has no
sessions: they come from the inactivity gap. ``category_id`` goes into ``extra``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ingest.importers.canonical import (
    EventIds,
    SourceRow,
    event_line,
    ms_from_seconds,
    text_or_none,
    unparseable_line,
)
from ingest.importers.source_files import Record, open_text, split_lines

NAME = "taobao"
DESCRIPTION = "Taobao UserBehavior.csv: user,item,category,behavior(pv|buy|cart|fav),timestamp (s), no header"
EVENT_TYPES = {"pv": "view", "fav": "click", "cart": "add_to_cart", "buy": "purchase"}
FIELDS = 5


def read_rows(source: Path) -> Iterator[SourceRow]:
    ids = EventIds(NAME)
    with open_text(source) as handle:
        for record in split_lines(handle, ","):
            yield _row(ids, record)


def _row(ids: EventIds, record: Record) -> SourceRow:
    fields = record.fields
    if fields is None or len(fields) != FIELDS:
        return SourceRow(record.line_number, (unparseable_line(ids, record.text),))
    user, item, category, behavior, raw_time = fields
    extra: dict[str, str] = {}
    if category:
        extra["category_id"] = category
    if behavior == "fav":
        extra["behavior"] = behavior
    line = event_line(
        ids,
        time_ms=ms_from_seconds(raw_time),
        raw_time=raw_time,
        user_id=text_or_none(user),
        item_id=text_or_none(item),
        event_type=EVENT_TYPES.get(behavior),
        raw_event_type=behavior or None,
        extra=extra,
    )
    return SourceRow(record.line_number, (line,))
