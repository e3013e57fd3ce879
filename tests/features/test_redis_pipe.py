"""Arrow-built Redis commands on a real Redis: they are what redis-py would send, replies come back
per batch in order, and an error reply raises instead of passing silently."""

from __future__ import annotations

import socket
import uuid

import pyarrow as pa
import pytest

from features import redis_pipe

pytestmark = pytest.mark.integration


@pytest.fixture
def client():
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            if not sock.recv(16).startswith(b"+PONG"):
                raise OSError
    except OSError:
        pytest.skip("no Redis answering on 127.0.0.1:6379")
    import redis

    prefix = f"test_pipe_{uuid.uuid4().hex[:10]}:"
    client = redis.Redis(host="127.0.0.1", port=6379, db=15)
    yield client, prefix
    for key in list(client.scan_iter(match=f"{prefix}*")):
        client.delete(key)


def _hset_commands(keys: list[bytes], values: list[bytes]) -> pa.BinaryArray:
    return redis_pipe.join_rows(redis_pipe.command_header(4), redis_pipe.bulk_string(b"HSET"),
                                redis_pipe.bulk_strings(pa.array(keys, pa.binary())),
                                redis_pipe.bulk_string(b"f"), redis_pipe.bulk_strings(pa.array(values, pa.binary())))


def test_commands_are_redis_pys_and_replies_come_back_by_ticket(client):
    from redis.connection import Connection

    client, prefix = client
    keys = [f"{prefix}{i}".encode() for i in range(5)]
    values = [b"", b"\r\n\x00binary", "é".encode(), b"x" * 70_000, b"v"]
    commands = _hset_commands(keys, values)
    expected = b"".join(Connection().pack_command("HSET", k, "f", v)[0] for k, v in zip(keys, values))
    assert bytes(redis_pipe.packed(commands)) == expected
    assert bytes(redis_pipe.packed(commands.slice(1, 3))) == b"".join(
        Connection().pack_command("HSET", k, "f", v)[0] for k, v in zip(keys[1:4], values[1:4]))

    with redis_pipe.PipelinedConnection(client) as connection:
        first = connection.send(redis_pipe.packed(commands.slice(0, 2)), 2)
        second = connection.send(redis_pipe.packed(commands.slice(2)), 3)
        hmget = redis_pipe.join_rows(redis_pipe.command_header(4), redis_pipe.bulk_string(b"HMGET"),
                                     redis_pipe.bulk_strings(pa.array(keys, pa.binary())),
                                     redis_pipe.bulk_string(b"f"), redis_pipe.bulk_string(b"missing"))
        third = connection.send(redis_pipe.packed(hmget), 5)
        assert first < second < third
        assert connection.read_through(third) == [[v, None] for v in values]  # the HSETs' first
        assert connection.drain() == 0
    assert client.hget(keys[3], "f") == b"x" * 70_000


def test_an_error_reply_raises_and_drops_the_connection(client):
    from redis.exceptions import ResponseError

    client, prefix = client
    client.set(f"{prefix}plain", "a string, not a hash")
    keys = [f"{prefix}{name}".encode() for name in ("ok", "plain", "ok2")]
    with redis_pipe.PipelinedConnection(client) as connection:
        connection.send(redis_pipe.packed(_hset_commands(keys, [b"1", b"2", b"3"])), 3)
        with pytest.raises(ResponseError, match="1 of 3 commands failed.*WRONGTYPE"):
            connection.drain()
    assert client.ping()  # the pool hands out a fresh connection
    assert client.hget(keys[2], "f") == b"3"  # Redis ran the commands after the failed one
