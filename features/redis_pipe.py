"""Redis commands built as Arrow columns and written through one redis-py connection.

redis-py's ``pipeline()`` packs every command in Python (several microseconds a command), more
than a whole row may cost on the bulk route. Here a batch of commands is one Arrow binary column
built by Arrow's kernels (RESP: ``*<argc>\\r\\n`` then ``$<len>\\r\\n<arg>\\r\\n`` per argument),
its data buffer is sent as it lies with redis-py's ``send_packed_command`` and the replies are
read back with hiredis and checked: Redis's mass-insertion pattern (pre-encoded protocol),
through the connection pool, credentials and timeouts Feast configures.

The connection is pipelined: batches are sent before the replies of earlier ones are read (each
send returns a ticket to read its replies by), so Redis executes one batch while the caller
prepares the next. Any error reply drops the connection (its later replies are then
meaningless) and raises.
"""

from __future__ import annotations

import gc
from collections import deque
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def bulk_string(arg: bytes) -> bytes:
    """One RESP bulk string."""
    return b"$%d\r\n%s\r\n" % (len(arg), arg)


def bulk_strings(values: pa.Array) -> pa.BinaryArray:
    """RESP bulk strings of a binary column (null stays null: the argument is left out)."""
    lengths = pc.binary_length(values).cast(pa.string()).cast(pa.binary())
    return pc.binary_join_element_wise(b"$", lengths, b"\r\n", values, b"\r\n", b"")


def command_header(argc: np.ndarray | int) -> pa.Array | bytes:
    """``*<argc>\\r\\n``: one for all rows, or one per row where rows pass different counts."""
    if isinstance(argc, int):
        return b"*%d\r\n" % argc
    counts = pa.array(argc).cast(pa.string()).cast(pa.binary())
    return pc.binary_join_element_wise(b"*", counts, b"\r\n", b"")


def join_rows(*parts: Any) -> pa.BinaryArray:
    """Concatenate per-row parts (columns or constant bytes); null parts are left out."""
    return pc.binary_join_element_wise(*parts, b"", null_handling="skip")


def packed(commands: pa.BinaryArray) -> memoryview:
    """The bytes of all rows of ``commands``, back to back, without copying them."""
    if len(commands) == 0:
        return memoryview(b"")
    _, offsets, data = commands.buffers()
    bounds = np.frombuffer(offsets, np.int32, len(commands) + 1, commands.offset * 4)
    return memoryview(data)[int(bounds[0]):int(bounds[-1])]


class PipelinedConnection:
    """One connection of a redis-py client: batches sent ahead, replies read back in order.

    redis-py opens the connection (address, credentials, database, TLS, timeouts: Feast's
    connection string) and sends; the replies are parsed here with hiredis straight off that
    connection's socket, since redis-py's ``read_response`` costs more per reply than a whole
    row's encoding.
    """

    def __init__(self, client: Any) -> None:
        import hiredis

        self._pool = client.connection_pool
        self._connection = self._pool.get_connection()
        self._sock = self._connection._sock  # opened and handshaken by redis-py
        self._reader = hiredis.Reader()
        self._error = hiredis.ReplyError
        self._pending: deque[tuple[int, int]] = deque()  # (ticket, replies owed) per batch sent
        self._tickets = 0

    def send(self, data: memoryview | bytes, replies: int) -> int:
        """Send pre-encoded commands that owe ``replies`` replies; returns the batch's ticket
        for :meth:`read_through`."""
        self._tickets += 1
        if replies == 0:
            return self._tickets
        try:
            self._connection.send_packed_command([data], check_health=False)
        except BaseException:
            self._drop()
            raise
        self._pending.append((self._tickets, replies))
        return self._tickets

    def read_through(self, ticket: int) -> list[Any]:
        """The replies of batch ``ticket``, after those of every batch sent before it (checked
        for errors, then dropped)."""
        while self._pending and self._pending[0][0] < ticket:
            self.read()
        if not self._pending or self._pending[0][0] != ticket:
            return []  # a batch that owed no reply
        return self.read()

    def read(self) -> list[Any]:
        """The replies of the oldest batch sent; raises on an error reply."""
        from redis.exceptions import ConnectionError, ResponseError

        _, remaining = self._pending.popleft()
        out: list[Any] = []
        append, gets, feed, recv = out.append, self._reader.gets, self._reader.feed, self._sock.recv
        collecting = gc.isenabled()
        # A batch's replies are thousands of small lists, which would set off the cyclic garbage
        # collector over and over, each pass scanning every object of the process; they hold
        # only bytes and None, so no cycle is left behind by pausing it.
        gc.disable()
        try:
            while remaining:
                reply = gets()
                if reply is False:
                    data = recv(1 << 20)
                    if not data:
                        raise ConnectionError("Redis closed the connection mid-batch")
                    feed(data)
                    continue
                append(reply)
                remaining -= 1
        except BaseException:
            self._drop()
            raise
        finally:
            if collecting:
                gc.enable()
        errors = [reply for reply in out if isinstance(reply, self._error)]
        if errors:
            self._drop()
            raise ResponseError(f"{len(errors)} of {len(out)} commands failed; the first: {errors[0]}")
        return out

    def drain(self) -> int:
        """Read every reply still owed; returns how many there were."""
        count = 0
        while self._pending:
            count += len(self.read())
        return count

    def _drop(self) -> None:
        # Replies are owed or half read: the connection cannot be reused.
        self._pending.clear()
        self._connection.disconnect()

    def close(self) -> None:
        if self._pending:
            self._drop()
        self._pool.release(self._connection)

    def __enter__(self) -> "PipelinedConnection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
