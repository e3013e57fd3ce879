"""The bulk route's column encoders give exactly the bytes Feast and protobuf give, value by value,
on the edges: varint widths, negative and huge numbers, the epoch and instants before it, nulls,
empty and long lists, non-ASCII ids; and the per-batch check refuses bytes that differ."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from feast.type_map import python_values_to_proto_values
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp

from features.bulk_encoding import (
    KeyEncoder,
    StringListEncoder,
    TimestampCodec,
    check_rows,
    scalar_bytes,
    varint_bytes,
)

UTC = timezone.utc


def feast_bytes(column: pa.Array, value_type: ValueType) -> list[bytes]:
    """What Feast's materialization serializes for ``column`` (as its arrow conversion calls it)."""
    values = python_values_to_proto_values(column.to_numpy(zero_copy_only=False), value_type)
    return [v.SerializeToString() for v in values]


@pytest.mark.parametrize("values", [
    [0, 1, 127, 128, 300, 16383, 16384, 2**31, 2**35, 2**62, 2**63 - 1, -1, -(2**63)],
    [0, 5, 127],  # one byte each
])
def test_varints_match_protobuf(values):
    values = np.array(values, np.int64)
    # an Int64 ValueProto is its field tag then the varint: the tail is protobuf's varint
    expected = [b[1:] for b in feast_bytes(pa.array(values, pa.int64()), ValueType.INT64)]
    assert varint_bytes(values).to_pylist() == expected


INSTANTS = [
    datetime(2026, 11, 1, tzinfo=UTC),
    datetime(2026, 11, 1, 12, 30, 1, 999_999, tzinfo=UTC),
    datetime(1970, 1, 1, tzinfo=UTC),  # both fields zero: no bytes at all
    datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
    datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC),  # negative seconds
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
]


def _proto_ts(instant: datetime) -> bytes:
    stamp = Timestamp()
    stamp.FromDatetime(instant)
    return stamp.SerializeToString()


def test_timestamps_encode_and_decode_like_protobuf():
    codec = TimestampCodec()
    seconds, nanos = codec.split(pa.array(INSTANTS, pa.timestamp("us", tz="UTC")))
    assert codec.encode(seconds, nanos).to_pylist() == [_proto_ts(t) for t in INSTANTS]

    reordered = b"\x10\x05\x08\x07"  # nanos before seconds: valid protobuf, not what it writes
    stored = [_proto_ts(t) for t in INSTANTS] + [None, reordered]
    present, got_s, got_n = codec.decode(stored)
    assert present.tolist() == [True] * len(INSTANTS) + [False, True]
    assert got_s.tolist() == seconds.tolist() + [0, 7]
    assert got_n.tolist() == nanos.tolist() + [0, 5]


def test_stored_timestamps_of_any_instant_decode_as_protobuf_reads_them():
    rng = np.random.default_rng(3)
    seconds = np.concatenate([rng.integers(-10**10, 3 * 10**11, 500),  # any year, before 1970 too
                              rng.integers(2**28, 2**35, 1500), [0, 1, 2**28]])  # the common layout
    nanos = rng.choice([0, 5, 1000, 128_000, 16_384_000, 999_999_999], len(seconds))
    stored = [Timestamp(seconds=int(s), nanos=int(n)).SerializeToString() for s, n in zip(seconds, nanos)]
    present, got_s, got_n = TimestampCodec().decode(stored)
    assert present.all() and got_s.tolist() == seconds.tolist() and got_n.tolist() == nanos.tolist()


def test_nanosecond_timestamps_are_truncated_as_feast_truncates_them():
    codec = TimestampCodec()
    ns = pa.array([1_793_491_200_123_456_789], pa.timestamp("ns", tz="UTC"))
    seconds, nanos = codec.split(ns)
    assert (seconds[0], nanos[0]) == (1_793_491_200, 123_456_000)


def test_keys_match_feasts_redis_key():
    encoder = KeyEncoder("recsys_x", "user_id", 3)
    ids = ["u1", "", "ü-é 名", "x" * 300]
    assert encoder.encode(pa.array(ids)).to_pylist() == [encoder.feast_key(i) for i in ids]
    with pytest.raises(ValueError, match="null entity key"):
        encoder.encode(pa.array(["u1", None]))


@pytest.mark.parametrize("column, value_type", [
    (pa.array([5, None, 5, 0, -3, 2**40], pa.int64()), ValueType.INT64),
    (pa.array([7, 8], pa.int64()), ValueType.INT64),
    (pa.array(["a", None, "", "é", "a"], pa.string()), ValueType.STRING),
])
def test_scalars_match_feast(column, value_type):
    assert scalar_bytes(column, value_type).to_pylist() == feast_bytes(column, value_type)


def test_string_lists_match_feast():
    column = pa.array([["a", "bb"], None, [], ["x" * 200] * 100, ["a", None], ["é", "名"]],
                      pa.list_(pa.string()))
    expected = feast_bytes(column, ValueType.STRING_LIST)
    encoder = StringListEncoder()
    assert encoder.encode(column).to_pylist() == expected
    assert encoder.encode(column.slice(2, 3)).to_pylist() == expected[2:5]  # offsets of a slice
    assert encoder.encode(column.cast(pa.large_list(pa.string()))).to_pylist() == expected
    no_items = pa.array([[], None, []], pa.list_(pa.string()))
    assert encoder.encode(no_items).to_pylist() == feast_bytes(no_items, ValueType.STRING_LIST)


def test_dictionary_encoded_items_encode_as_plain_ones():
    """Parquet's dictionary-encoded items (how the bulk route reads them) give the same bytes,
    also when consecutive batches bring another dictionary."""
    encoder = StringListEncoder()
    for rows in ([["a", "bb"], None, [], ["a", None, "é"]], [["zz"], ["a"], None], [["zz", "y" * 300]]):
        plain = pa.array(rows, pa.list_(pa.string()))
        items = pa.array([item for row in rows if row for item in row], pa.string()).dictionary_encode()
        counts = [len(row) if row is not None else 0 for row in rows]
        offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
        coded = pa.ListArray.from_arrays(offsets, items, mask=pa.array([row is None for row in rows]))
        assert pa.types.is_dictionary(coded.type.value_type)
        assert encoder.encode(coded).to_pylist() == feast_bytes(plain, ValueType.STRING_LIST)
        assert encoder.encode(coded.slice(1)).to_pylist() == feast_bytes(plain, ValueType.STRING_LIST)[1:]


def test_check_rows_refuses_bytes_that_differ_from_feasts(tmp_path: Path):
    from features import store as feature_ops
    from features.definitions import feature_definitions

    view = feature_definitions(tmp_path).feature_views.user_activity
    batch = pa.RecordBatch.from_pydict({
        "user_id": ["u1", "u2"],
        "event_timestamp": pa.array([datetime(2026, 11, 1, tzinfo=UTC)] * 2, pa.timestamp("us", tz="UTC")),
        "n_events_total": pa.array([3, None], pa.int64()),
        "n_sessions_total": pa.array([2, 1], pa.int64()),
        "n_purchases_total": pa.array([0, 1], pa.int64()),
    })
    keys = KeyEncoder(feature_ops.PROJECT, "user_id", 3)
    key_bytes = keys.encode(batch.column("user_id"))
    values = {name: scalar_bytes(batch.column(name), ValueType.INT64)
              for name in ("n_events_total", "n_sessions_total", "n_purchases_total")}
    codec = TimestampCodec()
    ts = codec.encode(*codec.split(batch.column("event_timestamp")))
    args = (key_bytes, values, ts, "event_timestamp")
    check_rows(keys.redis_key, view, batch, [0, 1], *args)  # the real encoding passes

    later = pa.array([datetime(2026, 11, 1, tzinfo=UTC) + timedelta(microseconds=1)] * 2, pa.timestamp("us", tz="UTC"))
    shifted = codec.encode(*codec.split(later))
    with pytest.raises(RuntimeError, match="differs from Feast"):
        check_rows(keys.redis_key, view, batch, [1], key_bytes, values, shifted, "event_timestamp")
    other_keys = keys.encode(pa.array(["u1", "u3"]))
    with pytest.raises(RuntimeError, match="differs from Feast"):
        check_rows(keys.redis_key, view, batch, [1], other_keys, values, ts, "event_timestamp")
    wrong = dict(values, n_events_total=pa.array([b" \x03", b" \x00"], pa.binary()))  # null as 0
    with pytest.raises(RuntimeError, match="differs from Feast"):
        check_rows(keys.redis_key, view, batch, [1], key_bytes, wrong, ts, "event_timestamp")
