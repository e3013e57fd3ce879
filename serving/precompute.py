"""Precompute mode: the champion's top-K for every active user, written after promotion.

``python -m serving.precompute`` (or the stage ``pipeline.stages.precompute_recommendations``)
loads the current champion, reads every active user's online features (the users of the last
feature export, read through Feast in chunks exactly as live serving reads them), ranks them in
batches and stores one list per user, keyed by the model version:

* Redis (when ``RECSYS_FEAST_ONLINE_STORE=redis``): hash ``recsys:precomputed:<model>:<version>``,
  field = user id, value = JSON ``[[item_id, score], ...]``, on the online store's Redis;
* otherwise SQLite: table ``precomputed(model_version, user_id, items)`` in
  ``$RECSYS_HOME/serving/precomputed.sqlite``.

Lists of older versions are deleted once the new version's are complete. With
``RECSYS_SERVING_MODE=precomputed`` the API answers from the list of the version it serves and
falls back to the live path (features + model, then popularity) when the user has none, the
list is shorter than ``k``, or the store cannot be read. Because lists are keyed by version, a
champion change never serves another version's lists.
"""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import threading
import time
from typing import Any, Iterable, Protocol

from core.settings import Settings

log = logging.getLogger(__name__)

CHUNK = 500


class PrecomputedStore(Protocol):
    def get(self, version: str, user_id: str) -> list[list[Any]] | None: ...
    def write(self, version: str, lists: Iterable[tuple[str, list[list[Any]]]]) -> int: ...
    def versions(self) -> list[str]: ...


class SqlitePrecomputed:
    def __init__(self, settings: Settings):
        self.path = settings.precomputed_path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as con:
            con.execute("CREATE TABLE IF NOT EXISTS precomputed (model_version TEXT NOT NULL, "
                        "user_id TEXT NOT NULL, items TEXT NOT NULL, PRIMARY KEY (model_version, user_id))")

    def _conn(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:  # one connection per thread: sqlite3 connections are not shared
            con = sqlite3.connect(self.path, timeout=5)
            self._local.con = con
        return con

    def get(self, version: str, user_id: str) -> list[list[Any]] | None:
        row = self._conn().execute(
            "SELECT items FROM precomputed WHERE model_version = ? AND user_id = ?", (version, user_id)
        ).fetchone()
        return None if row is None else json.loads(row[0])

    def write(self, version: str, lists: Iterable[tuple[str, list[list[Any]]]]) -> int:
        con = self._conn()
        n = 0
        with con:  # one transaction: readers see the old lists or all of the new ones
            con.execute("DELETE FROM precomputed WHERE model_version = ?", (version,))
            for user_id, items in lists:
                con.execute("INSERT INTO precomputed VALUES (?, ?, ?)", (version, user_id, json.dumps(items)))
                n += 1
            con.execute("DELETE FROM precomputed WHERE model_version != ?", (version,))
        return n

    def versions(self) -> list[str]:
        return [r[0] for r in self._conn().execute("SELECT DISTINCT model_version FROM precomputed")]


def redis_client(settings: Settings, timeout_s: float | None = None):
    """A redis-py client for Feast's ``host:port[,db=N][,password=...]`` connection string."""
    import redis

    first, *options = settings.redis_connection_string.split(",")
    host, _, port = first.partition(":")
    kwargs: dict[str, Any] = dict(item.split("=", 1) for item in options if "=" in item)
    return redis.Redis(
        host=host or "127.0.0.1", port=int(port or 6379), db=int(kwargs.get("db", 0)),
        password=kwargs.get("password"), socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
    )


class RedisPrecomputed:
    def __init__(self, settings: Settings, timeout_s: float | None = None):
        self.prefix = f"recsys:precomputed:{settings.registered_model_name}:"
        self.client = redis_client(settings, timeout_s)

    def get(self, version: str, user_id: str) -> list[list[Any]] | None:
        raw = self.client.hget(self.prefix + version, user_id)
        return None if raw is None else json.loads(raw)

    def write(self, version: str, lists: Iterable[tuple[str, list[list[Any]]]]) -> int:
        key, tmp = self.prefix + version, f"{self.prefix}{version}:writing"
        self.client.delete(tmp)
        n, mapping = 0, {}
        for user_id, items in lists:
            mapping[user_id] = json.dumps(items)
            n += 1
            if len(mapping) >= CHUNK:
                self.client.hset(tmp, mapping=mapping)
                mapping = {}
        if mapping:
            self.client.hset(tmp, mapping=mapping)
        if n:
            self.client.rename(tmp, key)  # atomic: readers see no list or all of them
        for old in self.versions():
            if old != version:
                self.client.delete(self.prefix + old)
        return n

    def versions(self) -> list[str]:
        keys = [k.decode() for k in self.client.scan_iter(match=self.prefix + "*")]
        return sorted({k[len(self.prefix):] for k in keys if not k.endswith(":writing")})


def open_store(settings: Settings, timeout_s: float | None = None) -> PrecomputedStore:
    if settings.feast_online_store == "redis":
        return RedisPrecomputed(settings, timeout_s)
    return SqlitePrecomputed(settings)


def active_user_ids(settings: Settings) -> list[str]:
    """Users of the last feature export (the users the online store was loaded with)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from features.store import USER_FEATURES_FILE

    path = settings.feature_data_dir / USER_FEATURES_FILE
    if not path.exists():
        raise FileNotFoundError(f"no user feature export at {path}: materialize features first")
    column = pq.read_table(path, columns=["user_id"]).column("user_id")
    return sorted(str(u) for u in pc.unique(column).to_pylist() if u is not None)


def precompute(settings: Settings, k: int | None = None) -> dict[str, Any]:
    """Rank every active user with the current champion and store the lists; a summary."""
    from features.online_reader import read_user_features
    from features.store import feature_store
    from registry.versions import load_champion

    k = k or settings.precompute_k
    started = time.perf_counter()
    loaded = load_champion(settings)
    if loaded is None:
        raise RuntimeError("no champion to precompute with: promote a model first")
    model, version = loaded
    users = active_user_ids(settings)
    store = feature_store(settings, redis_batch=True)  # nightly batch work: batch timeouts and retries

    def lists():
        for start in range(0, len(users), CHUNK):
            chunk = users[start:start + CHUNK]
            features = read_user_features(store, chunk)
            histories = {u: list((features.get(u) or {}).get("recent_item_ids") or []) for u in chunk}
            known = [u for u in chunk if histories[u]]
            for user_id, ranked in zip(known, model.recommend_many([histories[u] for u in known], k)):
                yield user_id, [[item, round(score, 6)] for item, score in ranked]

    written = open_store(settings).write(version, lists())
    summary = {
        "model_version": version, "model_name": model.model_name, "k": k,
        "active_users": len(users), "written": written,
        "store": "redis" if settings.feast_online_store == "redis" else str(settings.precomputed_path),
        "seconds": round(time.perf_counter() - started, 3),
    }
    log.info("precomputed recommendations: %s", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Precompute the champion's top-K for every active user.")
    parser.add_argument("--k", type=int, default=None, help="list length (default RECSYS_PRECOMPUTE_K)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    print(json.dumps(precompute(Settings.from_env(), args.k), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
