"""Bulk materialization into Redis: the rows, keys and values of Feast's standard route, written
a batch of encoded commands at a time.

:func:`bulk_materialize` does what :func:`features.materialize.materialize` does through Feast's
``write_to_online_store`` on Redis, with the same outcome in the store:

* the latest row per entity in ``[start, end)`` of the view's FileSource (the later file row
  among rows of one timestamp);
* Feast's newer-wins rule: a row is written only when it is newer than the row stored online
  (an equal instant is not rewritten); except that a stored row stamped after ``trusted_until``
  is replaced, as the standard route replaces it;
* one ``HSET`` per entity with Feast's key, field names and serialized values
  (features/bulk_encoding.py), plus Feast's ``EXPIRE`` when the store sets ``key_ttl_seconds``,
  so a reader sees an entity's old row or its new one, never a mix.

Views that read one source with one join key (``user_recent_items`` and ``user_activity``) share
the source read and the online timestamp read, and an entity's fields of both views go in one
``HSET`` (the same hash Feast writes twice). Like Feast, the online timestamps are read before the
writes, so a writer racing this one (a push) can land in between and be overwritten; here that
window is a batch or two, where Feast reads a whole view's timestamps before writing any of it.
The summary is the standard route's, number for number: ``written`` counts the entities handed
to the write, including those whose stored row has the same instant, which Feast's rule (and so
this route) leaves as they are.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features import redis_pipe
from features.bulk_commands import CommandEncoder, EncodedBatch
from features.bulk_encoding import SUPPORTED_LISTS, SUPPORTED_SCALARS, TimestampCodec, UnsupportedLayout

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BulkMaterializeConfig:
    # Entities per round trip: large enough that Redis never waits on the client between
    # batches, small enough that a batch's commands stay a few megabytes.
    batch_rows: int = 20_000
    # Rows of each batch (its first and last) compared with Feast's own encoding before writing.
    check_rows: bool = True


class ViewGroup(NamedTuple):
    """Views that read one source on one join key: one read, one HMGET and one HSET per entity."""

    path: str
    join_key: str
    timestamp_field: str
    views: list[Any]


def unsupported_reason(store: Any, view: Any) -> str | None:
    """Why the bulk route cannot write ``view`` to ``store`` (None: it can)."""
    from feast import FileSource

    online = store.config.online_store
    if online.type != "redis" or getattr(online, "redis_type", "redis") != "redis":
        return f"online store {online.type}/{getattr(online, 'redis_type', '')} is not a single Redis"
    source = view.batch_source
    if not isinstance(source, FileSource):
        return f"batch source {type(source).__name__} is not a FileSource"
    if source.field_mapping or source.created_timestamp_column:
        return "the source maps fields or has a created timestamp"
    if len(view.entity_columns) != 1 or view.entity_columns[0].dtype.to_value_type().name != "STRING":
        return "the view is not keyed on one string join key"
    for feature in view.features:
        if feature.dtype.to_value_type().name not in SUPPORTED_SCALARS + SUPPORTED_LISTS:
            return f"feature {feature.name} has type {feature.dtype}"
    return None


def bulk_views(route: str, store: Any, views: list[Any]) -> list[Any]:
    """The views ``route`` ("auto", "bulk") writes through this module; "bulk" refuses a view it
    cannot write, "auto" leaves such views (and any store but Redis) to the standard route."""
    if route not in ("auto", "bulk"):
        raise ValueError(f"feast_materialize_route must be 'auto', 'bulk' or 'standard', got {route!r}")
    chosen = []
    for view in views:
        reason = unsupported_reason(store, view)
        if reason is None:
            chosen.append(view)
        elif route == "bulk":
            raise UnsupportedLayout(f"{view.name}: {reason} (feast_materialize_route=bulk)")
        elif store.config.online_store.type == "redis":
            logger.info("%s: standard materialization (%s)", view.name, reason)
    return chosen


def bulk_materialize(
    store: Any,
    views: list[Any],
    start: datetime,
    end: datetime,
    trusted_until: datetime,
    config: BulkMaterializeConfig = BulkMaterializeConfig(),
) -> dict[str, dict[str, int]]:
    """Materialize ``views`` (each supported: :func:`unsupported_reason`) of ``store``'s Redis.

    Returns ``{view: {"rows", "entities", "written", "replaced_future"}}``, counted as the
    standard route counts them.
    """
    for view in views:
        if (reason := unsupported_reason(store, view)) is not None:
            raise UnsupportedLayout(f"{view.name}: {reason}")
    online_store = store._get_provider().online_store
    client = online_store._get_client(store.config.online_store)
    summary: dict[str, dict[str, int]] = {}
    with redis_pipe.PipelinedConnection(client) as connection:
        for group in view_groups(views):
            summary.update(_materialize_group(store, group, start, end, trusted_until, config, connection))
    return summary


def view_groups(views: list[Any]) -> list[ViewGroup]:
    groups: dict[tuple[str, str, str], list[Any]] = {}
    for view in sorted(views, key=lambda v: v.name):
        source = view.batch_source
        key = (source.path, view.entity_columns[0].name, source.timestamp_field)
        groups.setdefault(key, []).append(view)
    return [ViewGroup(*key, group_views) for key, group_views in groups.items()]


def latest_row_indices(path: str, join_key: str, timestamp_field: str,
                       start: datetime, end: datetime) -> tuple[int, np.ndarray]:
    """(rows in ``[start, end)``, file row numbers of each entity's latest row, ascending)."""
    # One thread throughout: Redis needs the machine's other core more than Arrow does.
    table = pq.read_table(path, columns=[join_key, timestamp_field], use_threads=False)
    ts = table.column(timestamp_field).combine_chunks()
    in_window = pc.and_(pc.greater_equal(ts, pa.scalar(start, type=ts.type)),
                        pc.less(ts, pa.scalar(end, type=ts.type)))
    rows = np.flatnonzero(pc.fill_null(in_window, False).to_numpy(zero_copy_only=False))
    if len(rows) == 0:
        return 0, rows
    keys = table.column(join_key).combine_chunks().take(pa.array(rows))
    codes = keys.dictionary_encode().indices.to_numpy()
    stamps = ts.take(pa.array(rows)).cast(pa.int64()).to_numpy()
    # Stable: among rows of one entity and one timestamp the later file row sorts last and wins,
    # as in the standard route.
    order = np.lexsort((stamps, codes))
    sorted_codes = codes[order]
    last = np.ones(len(order), bool)
    last[:-1] = sorted_codes[1:] != sorted_codes[:-1]
    return len(rows), np.sort(rows[order[last]])


def winning_batches(path: str, columns: list[str], winners: np.ndarray, size: int,
                    dictionary_lists: Sequence[str] = ()) -> Iterator[pa.RecordBatch]:
    """The winning rows of the file, ``size`` at a time, reading only row groups that hold some.

    The items of the list columns ``dictionary_lists`` are read dictionary-encoded: item ids
    repeat across users, and decoding Parquet's dictionary pages into strings would cost more
    than the rest of a row's encoding.
    """
    schema = pq.ParquetFile(path).schema
    paths = [schema.column(i).path for i in range(len(schema))]
    parquet = pq.ParquetFile(path, read_dictionary=[p for p in paths if p.split(".")[0] in dictionary_lists
                                                    and p != p.split(".")[0]])
    starts = np.cumsum([0] + [parquet.metadata.row_group(i).num_rows
                              for i in range(parquet.num_row_groups)])
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    for group in range(parquet.num_row_groups):
        lo, hi = np.searchsorted(winners, [starts[group], starts[group + 1]])
        if lo == hi:
            continue
        wanted = winners[lo:hi] - starts[group]
        offset = 0
        for batch in parquet.iter_batches(batch_size=size, row_groups=[group], columns=columns, use_threads=False):
            a, b = np.searchsorted(wanted, [offset, offset + batch.num_rows])
            offset += batch.num_rows
            if a == b:
                continue
            pending.append(batch.take(pa.array(wanted[a:b] - (offset - batch.num_rows))))
            pending_rows += b - a
            if pending_rows >= size:
                yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]
                pending, pending_rows = [], 0
    if pending:
        yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]


def decide(codec: TimestampCodec, stored: list[bytes | None], seconds: np.ndarray, nanos: np.ndarray,
           trusted: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows to write, rows the standard route counts as written, rows replacing an untrusted
    stored row) for one view, from its stored ``_ts`` bytes (None: no row)."""
    present, old_s, old_n = codec.decode(stored)
    present &= (old_s != 0) | (old_n != 0)  # Feast reads a zero instant as no row
    untrusted = present & ((old_s > trusted[0]) | ((old_s == trusted[0]) & (old_n > trusted[1])))
    # Feast's rule: only a newer row is written; the standard route hands it the rows that are
    # not older and counts them all, so a row of the stored instant is counted, not written.
    newer = ~present | (seconds > old_s) | ((seconds == old_s) & (nanos > old_n))
    not_older = newer | ((seconds == old_s) & (nanos == old_n))
    return newer | untrusted, not_older | untrusted, untrusted


def _materialize_group(store: Any, group: ViewGroup, start: datetime, end: datetime,
                       trusted_until: datetime, config: BulkMaterializeConfig,
                       connection: redis_pipe.PipelinedConnection) -> dict[str, dict[str, int]]:
    rows, winners = latest_row_indices(group.path, group.join_key, group.timestamp_field, start, end)
    encoder = CommandEncoder(store, group.views, group.join_key, group.timestamp_field,
                             check=config.check_rows)
    codec = encoder.timestamps
    trusted_s, trusted_n = codec.split(pa.array([trusted_until], pa.timestamp("us", tz="UTC")))
    trusted = (int(trusted_s[0]), int(trusted_n[0]))
    counts = {view.name: {"written": 0, "replaced_future": 0} for view in group.views}

    batches = iter(winning_batches(group.path, encoder.columns, winners, config.batch_rows,
                                   encoder.list_features))
    ahead: deque[tuple[EncodedBatch, int]] = deque()  # encoded, their stored timestamps asked for

    def read_ahead() -> None:
        # The next batch is encoded and its stored timestamps asked for while Redis still runs
        # the writes before it, so Redis has work queued while this process decides a batch.
        # The batches hold distinct entities: no write meanwhile changes the answer.
        batch = next(batches, None)
        if batch is not None:
            encoded = encoder.encode(batch)
            ticket = connection.send(redis_pipe.packed(encoder.hmget(encoded)), encoded.size)
            ahead.append((encoded, ticket))

    read_ahead()
    while ahead:
        read_ahead()
        encoded, ticket = ahead.popleft()
        stored = connection.read_through(ticket)
        writes = []
        for v, layout in enumerate(encoder.layouts):
            write, counted, untrusted = decide(codec, [reply[v] for reply in stored],
                                               encoded.seconds, encoded.nanos, trusted)
            writes.append(write)
            counts[layout.view.name]["written"] += int(counted.sum())
            counts[layout.view.name]["replaced_future"] += int(untrusted.sum())
        commands, replies = encoder.writes(encoded, writes)
        connection.send(redis_pipe.packed(commands), replies)
    connection.drain()

    summary = {}
    for view in group.views:
        summary[view.name] = {"rows": rows, "entities": len(winners), **counts[view.name]}
        if counts[view.name]["replaced_future"]:
            logger.warning("%s: %d entities had an online row stamped after %s; overwriting it",
                           view.name, counts[view.name]["replaced_future"], trusted_until.isoformat())
        logger.info("bulk-materialized %s [%s, %s): %s", view.name, start, end, summary[view.name])
    return summary
