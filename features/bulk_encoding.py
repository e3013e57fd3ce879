"""Feast's Redis row layout built a column at a time, for the bulk materialization route.

Feast's Redis online store writes one hash per entity: the key is ``_redis_key`` (Feast's
entity-key serialization plus the project), each feature is a field named ``_mmh3("<view>:<feature>")``
holding the feature's serialized ``ValueProto``, and ``_ts:<view>`` holds the row's serialized
protobuf ``Timestamp``. Feast builds all of it one Python object per value, which caps its
materialization at a few thousand rows a second; here every column is encoded with Arrow and
NumPy, from pieces Feast and protobuf produce themselves:

* **Keys**: the constant head of Feast's serialization is read off ``_redis_key`` for probe
  values (and the layout checked); each row then only adds its id's length and bytes.
* **Scalars** (Int64, String): each distinct value of the column is serialized once by Feast's
  ``python_values_to_proto_values``, and rows take their value's bytes.
* **String lists**: a row's list is its items, each as protobuf's repeated ``string`` writes it
  (tag, varint length, UTF-8), back to back in the length-delimited ``string_list_val`` field.
* **Timestamps**: the two varint fields of ``Timestamp``, with the field tags read off protobuf.

Only framing (field tags read off protobuf, varint lengths) is composed here; :func:`check_rows` compares
rows against Feast's own encoding on every batch, so a Feast whose layout differs fails loudly.
Nulls encode as Feast encodes them: an empty ``ValueProto`` (no bytes); a null item of a list as
an empty string.
"""

from __future__ import annotations

import struct
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# The value types the bulk route encodes; a view with any other feature type is materialized
# through Feast's standard route.
SUPPORTED_SCALARS = ("INT64", "STRING")
SUPPORTED_LISTS = ("STRING_LIST",)
_VARINT_MAX_BYTES = 10


class UnsupportedLayout(ValueError):
    """The view or the installed Feast has a layout the bulk route does not reproduce."""


def _binary(chunks: np.ndarray, lengths: np.ndarray) -> pa.BinaryArray:
    """A binary array from the valid prefix (``lengths``) of each row of the matrix ``chunks``."""
    offsets = np.zeros(len(lengths) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    data = chunks[np.arange(chunks.shape[1]) < lengths[:, None]]
    return pa.Array.from_buffers(pa.binary(), len(lengths), [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def varint_bytes(values: np.ndarray) -> pa.BinaryArray:
    """Protobuf's base-128 varint of each value (int64 as its two's complement, as protobuf does)."""
    values = np.ascontiguousarray(values).astype(np.int64, copy=False)
    if len(values) and 0 <= values.min() and values.max() < 0x80:  # one byte each: the value
        small = values.astype(np.uint8)
        return pa.Array.from_buffers(pa.binary(1), len(small), [None, pa.py_buffer(small)]).cast(pa.binary())
    rest = values.view(np.uint64).copy()
    out = np.zeros((len(rest), _VARINT_MAX_BYTES), np.uint8)
    lengths = np.ones(len(rest), np.int32)
    for j in range(_VARINT_MAX_BYTES):
        low = (rest & np.uint64(0x7F)).astype(np.uint8)
        rest >>= np.uint64(7)
        more = rest != 0
        out[:, j] = low | (more.astype(np.uint8) << 7)
        if not more.any():
            break
        lengths += more
    return _binary(out, lengths)


class TimestampCodec:
    """Protobuf ``Timestamp`` bytes of UTC instants, both ways, column at a time."""

    def __init__(self) -> None:
        from google.protobuf.timestamp_pb2 import Timestamp

        self._proto = Timestamp
        # Field tags as protobuf writes them (a zero field is omitted).
        self._seconds_tag = Timestamp(seconds=1).SerializeToString()[:1]
        self._nanos_tag = Timestamp(nanos=1).SerializeToString()[:1]

    @staticmethod
    def split(ts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """(seconds, nanos) of a timestamp column, truncated to microseconds as Feast's
        ``datetime`` conversion truncates them."""
        micros = pc.cast(ts, pa.timestamp("us", tz="UTC"), safe=False).cast(pa.int64())
        micros = micros.to_numpy(zero_copy_only=False)
        seconds, rest = np.divmod(micros, 1_000_000)
        return seconds, rest * 1000

    def encode(self, seconds: np.ndarray, nanos: np.ndarray) -> pa.BinaryArray:
        s_part = pc.binary_join_element_wise(self._seconds_tag, varint_bytes(seconds), b"")
        n_part = pc.binary_join_element_wise(self._nanos_tag, varint_bytes(nanos), b"")
        s_part = pc.if_else(pa.array(seconds != 0), s_part, pa.scalar(None, pa.binary()))
        n_part = pc.if_else(pa.array(nanos != 0), n_part, pa.scalar(None, pa.binary()))
        return pc.binary_join_element_wise(s_part, n_part, b"", null_handling="replace")

    def decode(self, raw: Sequence[bytes | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(present, seconds, nanos) of stored ``Timestamp`` bytes (None: no row stored).

        Vectorised for the layout protobuf writes for instants from 1978 to 3058: the seconds
        tag, a five-byte varint, then, unless zero, the nanos tag and a varint of one to five
        bytes. Any other bytes (the epoch, other years, other field orders) go to protobuf.
        """
        arr = pa.array(raw, pa.binary())
        n = len(arr)
        present = ~arr.is_null().to_numpy(zero_copy_only=False)
        lengths = pc.fill_null(pc.binary_length(arr), 0).to_numpy().astype(np.int64)
        seconds, nanos = np.zeros(n, np.int64), np.zeros(n, np.int64)
        if n == 0 or not lengths.any():
            return present, seconds, nanos
        offsets = np.frombuffer(arr.buffers()[1], np.int32, n + 1, arr.offset * 4).astype(np.int64)
        data = np.frombuffer(arr.buffers()[2], np.uint8)
        width = 12  # tag, 5 bytes, tag, up to 5 bytes
        idx = np.minimum(offsets[:-1, None] + np.arange(width), len(data) - 1)
        m = np.where(np.arange(width) < lengths[:, None], data[idx], 0).astype(np.int64)  # [n, 12]
        low, more = m & 0x7F, m >= 0x80
        shifts = 7 * np.arange(5)
        fast = (present & (lengths >= 6) & (lengths <= width) & (m[:, 0] == self._seconds_tag[0])
                & more[:, 1:5].all(axis=1) & ~more[:, 5])
        seconds[:] = (low[:, 1:6] << shifts).sum(axis=1)
        nanos_len = np.maximum(lengths - 7, 0)  # 0: no nanos field
        k = np.arange(5)
        inside = k < nanos_len[:, None]
        well_formed = ((more[:, 7:12] == (k < nanos_len[:, None] - 1)) | ~inside).all(axis=1)
        fast &= (lengths == 6) | ((lengths >= 8) & (m[:, 6] == self._nanos_tag[0]) & well_formed)
        nanos[:] = np.where(inside, low[:, 7:12] << shifts, 0).sum(axis=1)
        seconds[~fast], nanos[~fast] = 0, 0
        for i in np.flatnonzero(present & ~fast):
            stamp = self._proto.FromString(raw[int(i)])
            seconds[i], nanos[i] = stamp.seconds, stamp.nanos
        return present, seconds, nanos


class KeyEncoder:
    """Feast's Redis hash key of single string join-key values, vectorised."""

    def __init__(self, project: str, join_key: str, serialization_version: int) -> None:
        from feast.infra.online_stores.helpers import _redis_key

        from features.online_reader import entity_key

        self.redis_key = lambda key: _redis_key(project, key, serialization_version)  # Feast's
        self._feast_key = lambda value: self.redis_key(entity_key([join_key], [value]))
        self._tail = project.encode("utf-8")
        probe = self._feast_key("a")
        self._head = probe[: len(probe) - 4 - 1 - len(self._tail)]
        for value in ("a", "", "é" * 300):
            if self._feast_key(value) != self._compose(value.encode("utf-8")):
                raise UnsupportedLayout(f"Feast's Redis key of {join_key!r} is not head + "
                                        "length + value + project; use the standard route")

    def _compose(self, value: bytes) -> bytes:
        return self._head + struct.pack("<I", len(value)) + value + self._tail

    def encode(self, values: pa.Array) -> pa.BinaryArray:
        if values.null_count:
            raise ValueError("null entity key in the offline rows")
        as_binary = values.cast(pa.binary())
        lengths = pc.binary_length(as_binary).to_numpy().astype("<u4")
        packed = pa.Array.from_buffers(pa.binary(4), len(lengths), [None, pa.py_buffer(lengths.tobytes())])
        return pc.binary_join_element_wise(self._head, packed.cast(pa.binary()), as_binary, self._tail, b"")

    def feast_key(self, value: str) -> bytes:
        return self._feast_key(value)


def _null_as_empty(encoded: pa.Array, column: pa.Array) -> pa.BinaryArray:
    """A null value is Feast's empty ``ValueProto``: present, zero bytes."""
    if not column.null_count:
        return encoded
    return pc.if_else(column.is_null(), pa.scalar(b"", pa.binary()), encoded)


def scalar_bytes(column: pa.Array, value_type: Any) -> pa.BinaryArray:
    """Serialized ``ValueProto`` of each value: every distinct value encoded once by Feast."""
    from feast.type_map import python_values_to_proto_values

    encoded = column.dictionary_encode()
    distinct = encoded.dictionary.to_numpy(zero_copy_only=False)
    protos = python_values_to_proto_values(distinct, value_type)
    table = pa.array([p.SerializeToString() for p in protos], pa.binary())
    return _null_as_empty(table.take(encoded.indices), column)


def _offsets(values: pa.Array) -> np.ndarray:
    """The value offsets of a binary array (its slice offset applied), as int64."""
    return np.frombuffer(values.buffers()[1], np.int32, len(values) + 1, values.offset * 4).astype(np.int64)


def _binary_from(data: Any, offsets: np.ndarray) -> pa.BinaryArray:
    """A binary array over the buffer ``data`` (not copied), value ``i`` at ``offsets[i:i + 2]``."""
    buffers = [None, pa.py_buffer(offsets.astype(np.int32)), data]
    return pa.Array.from_buffers(pa.binary(), len(offsets) - 1, buffers)


class StringListEncoder:
    """Serialized ``ValueProto`` (``string_list_val``) of each list: per item its field tag, varint
    length and UTF-8 bytes (protobuf's repeated ``string``), the items back to back, framed as
    the length-delimited ``string_list_val``; both tags read off protobuf."""

    def __init__(self) -> None:
        from feast.protos.feast.types.Value_pb2 import StringList, Value

        self._empty_item = StringList(val=[""]).SerializeToString()  # also a null item's bytes
        self._item_tag = self._empty_item[:-1]
        self._list_tag = Value(string_list_val=StringList()).SerializeToString()[:-1]
        # The last dictionary framed: batches of one Parquet row group share their dictionary.
        self._dictionary: pa.Array | None = None
        self._framed_dictionary: pa.BinaryArray | None = None

    def _framed(self, tag: bytes, values: pa.Array) -> pa.BinaryArray:
        """Each value as protobuf writes a length-delimited field: tag, varint length, bytes."""
        lengths = pc.binary_length(values).to_numpy(zero_copy_only=False)
        return pc.binary_join_element_wise(tag, varint_bytes(lengths), values, b"")

    def _framed_items(self, dictionary: pa.Array) -> pa.BinaryArray:
        cached = self._dictionary
        if cached is None or not (dictionary is cached or dictionary.equals(cached)):
            plain = pc.fill_null(dictionary.cast(pa.string()).cast(pa.binary()), b"")
            self._dictionary, self._framed_dictionary = dictionary, self._framed(self._item_tag, plain)
        return self._framed_dictionary

    def encode(self, column: pa.Array) -> pa.BinaryArray:
        """``column``: a list of strings, its items plain or dictionary-encoded."""
        if pa.types.is_large_list(column.type):
            column = column.cast(pa.list_(column.type.value_type))
        items = pc.list_flatten(column)
        if pa.types.is_dictionary(items.type):  # each distinct item framed once, then gathered
            framed = self._framed_items(items.dictionary).take(items.indices)
            if framed.null_count:
                framed = pc.fill_null(framed, self._empty_item)
        else:
            plain = pc.fill_null(items.cast(pa.string()).cast(pa.binary()), b"")
            framed = self._framed(self._item_tag, plain)
        # A row's items are adjacent: its list body is one slice of the framed items' bytes.
        counts = pc.fill_null(pc.list_value_length(column), 0).to_numpy().astype(np.int64)
        first_item = np.zeros(len(counts) + 1, np.int64)
        np.cumsum(counts, out=first_item[1:])
        bodies = _binary_from(framed.buffers()[2], _offsets(framed)[first_item])
        return _null_as_empty(self._framed(self._list_tag, bodies), column)


def _without_dictionary(column: pa.Array) -> pa.Array:
    """``column`` with dictionary-encoded list items decoded, as Feast is given them."""
    if pa.types.is_list(column.type) and pa.types.is_dictionary(column.type.value_type):
        return column.cast(pa.list_(column.type.value_type.value_type))
    return column


def check_rows(
    redis_key: Any, view: Any, batch: pa.RecordBatch, rows: Sequence[int],
    keys: pa.Array, values: dict[str, pa.Array], ts: pa.Array, timestamp_field: str,
) -> None:
    """Raise unless ``rows`` of ``batch`` encode exactly as Feast's own conversion encodes them
    (``redis_key``: Feast's Redis key of the EntityKey its conversion builds)."""
    from feast.utils import _convert_arrow_to_proto, make_tzaware
    from google.protobuf.timestamp_pb2 import Timestamp

    value_types = {column.name: column.dtype.to_value_type() for column in view.entity_columns}
    picked = batch.take(pa.array(rows, pa.int64()))
    picked = pa.RecordBatch.from_arrays([_without_dictionary(column) for column in picked.columns],
                                        names=picked.schema.names)
    for j, i in enumerate(rows):
        one = picked.slice(j, 1)
        (entity_key, feast_values, event_ts, _), = _convert_arrow_to_proto(one, view, value_types)
        mine = {name: values[name][i].as_py() for name in feast_values}
        theirs = {name: v.SerializeToString() for name, v in feast_values.items()}
        stamp = Timestamp()
        stamp.FromDatetime(make_tzaware(event_ts))
        same_key = keys[i].as_py() == redis_key(entity_key)
        if mine != theirs or not same_key or ts[i].as_py() != stamp.SerializeToString():
            raise RuntimeError(f"{view.name}: the bulk encoding of row {i} differs from Feast's "
                               f"({timestamp_field} {one.column(timestamp_field)[0]}); "
                               "use feast_materialize_route=standard")
