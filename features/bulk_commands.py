"""The Redis commands of Feast's Redis online store for a batch of offline rows, as Arrow columns.

:class:`CommandEncoder` turns the rows of views sharing one source and join key into what
Feast's ``online_write_batch`` sends for them: per entity an ``HSET`` of the key with, per view
written, ``_ts:<view>`` and each feature's ``_mmh3("<view>:<feature>")`` field, then an
``EXPIRE`` when the store sets ``key_ttl_seconds``; and the ``HMGET`` of the stored timestamps
the newer-wins rule reads first. Values and keys come from features/bulk_encoding.py.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features import redis_pipe
from features.bulk_encoding import (
    SUPPORTED_LISTS,
    KeyEncoder,
    StringListEncoder,
    TimestampCodec,
    check_rows,
    scalar_bytes,
)


class ViewLayout(NamedTuple):
    view: Any
    ts_field: bytes  # ``_ts:<view>``
    fields: list[tuple[str, bytes, Any]]  # (feature, hash field, Feast value type)


class EncodedBatch(NamedTuple):
    size: int
    key_args: pa.BinaryArray  # the keys as RESP arguments
    seconds: np.ndarray  # the rows' instants, as protobuf splits them
    nanos: np.ndarray
    segments: list[pa.BinaryArray]  # per view: its HSET field and value arguments


class CommandEncoder:
    """Commands of ``views`` (one FileSource, one string join key) for batches of their rows."""

    def __init__(self, store: Any, views: list[Any], join_key: str, timestamp_field: str,
                 *, check: bool = True) -> None:
        from feast.infra.online_stores.helpers import _mmh3
        from feast.infra.online_stores.redis import _versioned_fv_name

        self.layouts = []
        for view in views:
            name = _versioned_fv_name(view, store.config)
            fields = [(f.name, _mmh3(f"{name}:{f.name}"), f.dtype.to_value_type()) for f in view.features]
            self.layouts.append(ViewLayout(view, f"_ts:{name}".encode(), fields))
        self.join_key, self.timestamp_field = join_key, timestamp_field
        self.features = list(dict.fromkeys(name for layout in self.layouts for name, _, _ in layout.fields))
        self.columns = [join_key, timestamp_field, *self.features]
        self._types = {name: vt for layout in self.layouts for name, _, vt in layout.fields}
        self.list_features = [name for name in self.features if self._types[name].name in SUPPORTED_LISTS]
        self.keys = KeyEncoder(store.config.project, join_key, store.config.entity_key_serialization_version)
        self.timestamps, self._lists = TimestampCodec(), StringListEncoder()
        self._ttl = store.config.online_store.key_ttl_seconds
        self._check = check

    def _values(self, column: pa.Array, name: str) -> pa.BinaryArray:
        value_type = self._types[name]
        if value_type.name in SUPPORTED_LISTS:
            return self._lists.encode(column)
        return scalar_bytes(column, value_type)

    def encode(self, batch: pa.RecordBatch) -> EncodedBatch:
        n = batch.num_rows
        key_bytes = self.keys.encode(batch.column(self.join_key))
        seconds, nanos = self.timestamps.split(batch.column(self.timestamp_field))
        ts_bytes = self.timestamps.encode(seconds, nanos)
        values = {name: self._values(batch.column(name), name) for name in self.features}
        if self._check:  # the batch's first and last rows against Feast's own encoding
            for layout in self.layouts:
                own = batch.select([self.join_key, self.timestamp_field, *[f for f, _, _ in layout.fields]])
                check_rows(self.keys.redis_key, layout.view, own, sorted({0, n - 1}),
                           key_bytes, values, ts_bytes, self.timestamp_field)
        ts_args = redis_pipe.bulk_strings(ts_bytes)
        segments = [
            redis_pipe.join_rows(
                redis_pipe.bulk_string(layout.ts_field), ts_args,
                *[part for name, field, _ in layout.fields
                  for part in (redis_pipe.bulk_string(field), redis_pipe.bulk_strings(values[name]))])
            for layout in self.layouts
        ]
        return EncodedBatch(n, redis_pipe.bulk_strings(key_bytes), seconds, nanos, segments)

    def hmget(self, batch: EncodedBatch) -> pa.BinaryArray:
        """``HMGET key _ts:<view> ...`` per row: the stored instants, in layout order."""
        return redis_pipe.join_rows(
            redis_pipe.command_header(2 + len(self.layouts)), redis_pipe.bulk_string(b"HMGET"),
            batch.key_args, *[redis_pipe.bulk_string(layout.ts_field) for layout in self.layouts])

    def writes(self, batch: EncodedBatch, write: list[np.ndarray]) -> tuple[pa.BinaryArray, int]:
        """(commands, replies they owe) writing view ``v``'s fields of the rows ``write[v]``
        selects: one HSET per row with any, then its EXPIRE where Feast sets one."""
        argc = np.full(batch.size, 2, np.int64)  # HSET and the key
        segments, any_write = [], np.zeros(batch.size, bool)
        everything = all(selected.all() for selected in write)  # the usual case: one shape
        for layout, segment, selected in zip(self.layouts, batch.segments, write):
            argc += selected * 2 * (1 + len(layout.fields))
            any_write |= selected
            if not everything:
                segment = pc.if_else(pa.array(selected), segment, pa.scalar(None, pa.binary()))
            segments.append(segment)
        header = redis_pipe.command_header(int(argc[0]) if everything and batch.size else argc)
        parts = [header, redis_pipe.bulk_string(b"HSET"), batch.key_args, *segments]
        if self._ttl:
            parts += [b"*3\r\n", redis_pipe.bulk_string(b"EXPIRE"), batch.key_args,
                      redis_pipe.bulk_string(str(int(self._ttl)).encode())]
        commands = redis_pipe.join_rows(*parts)
        if not any_write.all():
            commands = commands.filter(pa.array(any_write))
        return commands, len(commands) * (2 if self._ttl else 1)
