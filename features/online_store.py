"""How the platform holds Feast's online-store connections; features/store.py applies both rules
to every FeatureStore it builds.

* **Redis sockets are bounded.** redis-py waits forever on a socket by default, so a Redis that
  accepts connections and never answers would hold a thread (a push, a feature read) for good.
  :func:`bounded_redis_connection_string` adds ``socket_timeout`` and
  ``socket_connect_timeout`` to Feast's connection string (Feast's ``RedisOnlineStoreConfig``
  passes every ``key=value`` of it, JSON-decoded, to ``redis.Redis``); values already in the
  configured string win. On the request path it also sets ``retry=null``: redis-py's default
  retries a timed-out command three times with exponential backoff of up to seconds, far past
  any request's deadline, so they would only keep a thread on a hung Redis longer. Batch work
  (apply, materialize) keeps the retries and gets a longer timeout.
* **A replaced SQLite file is reopened.** Feast's ``SqliteOnlineStore`` opens its file once and
  keeps the connection. When the file is replaced (an ``os.replace`` of a re-materialized copy)
  or deleted and recreated by another process, that connection keeps reading the old, unlinked
  file and every write fails with "attempt to write a readonly database" until a restart.
  :func:`reopen_replaced_sqlite` makes the store compare the path's ``(st_dev, st_ino)`` with
  the file it opened on every use (one ``stat``) and reopen when it changed or the file is gone.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

log = logging.getLogger(__name__)

REDIS_TIMEOUT_PARAMETERS = ("socket_timeout", "socket_connect_timeout")


def bounded_redis_connection_string(connection_string: str, timeout_s: float, *, retries: bool) -> str:
    """``connection_string`` with both socket timeouts set to ``timeout_s`` and, unless
    ``retries``, redis-py's command retries off; only where the string sets none of them."""
    if timeout_s <= 0:
        raise ValueError(f"a Redis socket timeout must be positive, got {timeout_s}")
    present = {part.split("=", 1)[0].strip() for part in connection_string.split(",") if "=" in part}
    wanted = {name: f"{timeout_s:g}" for name in REDIS_TIMEOUT_PARAMETERS}
    if not retries:
        wanted["retry"] = "null"  # JSON null: redis.Redis(retry=None), no retry
    extra = [f"{name}={value}" for name, value in wanted.items() if name not in present]
    return ",".join([connection_string, *extra])


def _file_identity(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


class _ReopeningConnection:
    """Stands in for ``SqliteOnlineStore._get_conn`` on one store instance (same signature)."""

    def __init__(self, online_store: Any):
        self._online_store = online_store
        self._open = online_store._get_conn  # Feast's own method: opens and caches ``_conn``
        self._lock = threading.Lock()
        self._identity: tuple[int, int] | None = None

    def __call__(self, config: Any) -> Any:
        path = self._online_store._get_db_path(config)
        current = _file_identity(path)
        conn = self._online_store._conn
        if conn is not None and current == self._identity:
            return conn
        with self._lock:
            conn = self._online_store._conn
            if conn is not None and current == self._identity:
                return conn  # another thread reopened it meanwhile
            if conn is not None:
                log.warning("online store file %s was %s; reopening it", path,
                            "deleted" if current is None else "replaced")
                # Not closed here: another thread may be in a query on it. It is closed when
                # its last user lets go of it.
                self._online_store._conn = None
            # The identity seen before opening: a file replaced between the stat and the open
            # then differs on the next use and is reopened once more, never missed.
            before = _file_identity(path)
            conn = self._open(config)
            self._identity = before if before is not None else _file_identity(path)
            return conn


def reopen_replaced_sqlite(online_store: Any) -> None:
    """Make a Feast ``SqliteOnlineStore`` instance reopen its file when it is replaced or gone.

    Any other online store is left as it is. Idempotent.
    """
    from feast.infra.online_stores.sqlite import SqliteOnlineStore

    if not isinstance(online_store, SqliteOnlineStore):
        return
    if isinstance(vars(online_store).get("_get_conn"), _ReopeningConnection):
        return
    online_store._get_conn = _ReopeningConnection(online_store)
