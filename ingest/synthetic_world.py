"""The synthetic world the generator's logs come from: a catalog, users and a day of their behaviour.

* item popularity follows a power law (Zipf, exponent ~1), so a popularity baseline is
  a reasonable but beatable opponent;
* items belong to taste clusters and every item has a few likely successor items (a sparse
  Markov chain), and users prefer one or two clusters: the next item depends on the current
  one, which a sequential model (SASRec) can learn and a popularity ranking cannot;
* users are active on some days only; their events form sessions separated by more than 30
  minutes of inactivity, with events seconds to minutes apart inside a session; half the users'
  clients send a session id;
* event types follow a funnel: every visit is a ``view``, some get a ``click``, fewer an
  ``add_to_cart`` and about half of those a ``purchase``.

All randomness comes from the generators the caller passes, in a fixed order: a seed gives the
same world and the same events (``ingest.generator`` turns them into arrival days).
"""

from __future__ import annotations

import math
import random
from bisect import bisect
from dataclasses import dataclass
from datetime import date
from itertools import accumulate
from typing import Any, Sequence

import numpy as np

from core.names import EVENT_TYPES

VIEW, CLICK, ADD_TO_CART, PURCHASE = EVENT_TYPES

DAY_MS = 86_400_000
SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
# Sessions in the logs are separated by more than the 30-minute gap the sessionizer uses, and
# events inside one are never that far apart, so gap sessions and log session ids agree.
MIN_SESSION_GAP_MS = 31 * MINUTE_MS
MEAN_EXTRA_SESSION_GAP_MS = 90 * MINUTE_MS
MAX_IN_SESSION_GAP_MS = 10 * MINUTE_MS

ZIPF_EXPONENT = 1.0
ITEMS_PER_CLUSTER = 25
MAX_CLUSTERS = 40
SUCCESSOR_WEIGHTS = (0.5, 0.25, 0.15, 0.1)
# Next visit: a successor of the current item, else the user's taste, else anything popular.
P_FOLLOW_SUCCESSOR = 0.75
P_TASTE = 0.7
# Per visit: the probability that the session ends after it (mean ~5 visits per session).
P_END_SESSION = 0.2
# Funnel: P(click | view), P(add_to_cart | click), P(purchase | add_to_cart).
P_CLICK, P_ADD_TO_CART, P_PURCHASE = 0.35, 0.25, 0.5
P_CLIENT_SENDS_SESSION_ID = 0.5
REFERRERS = ("search", "home", "recommendation", "category")


@dataclass(frozen=True)
class Catalog:
    item_ids: list[str]
    popularity_cum: list[float]
    cluster_members: list[list[int]]
    cluster_cum: list[list[float]]
    successors: list[list[int]]
    successor_cum: list[list[float]]
    prices: list[float]


@dataclass(frozen=True)
class User:
    user_id: str
    activity: float
    clusters: tuple[int, ...]
    sends_session_id: bool


@dataclass
class Event:
    time_ms: int  # since the epoch, UTC
    user: int
    session_id: str | None
    item: int
    event_type: str
    extra: dict[str, Any] | None


# ---- the world: items, clusters, successors, users ----


def build_catalog(rng: random.Random, n_items: int) -> Catalog:
    width = max(5, len(str(n_items - 1)))
    item_ids = [f"i{k:0{width}d}" for k in range(n_items)]
    # Popularity rank is shuffled against the id so that ids carry no signal.
    ranks = list(range(n_items))
    rng.shuffle(ranks)
    popularity = [1.0 / (rank + 1) ** ZIPF_EXPONENT for rank in ranks]

    n_clusters = max(1, min(MAX_CLUSTERS, n_items // ITEMS_PER_CLUSTER))
    order = list(range(n_items))
    rng.shuffle(order)
    cluster_of = [0] * n_items
    cluster_members: list[list[int]] = [[] for _ in range(n_clusters)]
    for position, item in enumerate(order):
        cluster_of[item] = position % n_clusters
        cluster_members[position % n_clusters].append(item)
    for members in cluster_members:
        members.sort()
    cluster_cum = [list(accumulate(popularity[i] for i in members)) for members in cluster_members]

    # Successors come from the item's own cluster, weighted by sqrt-popularity: popular items are
    # reached more often, yet each item's successor set is specific to it.
    successors: list[list[int]] = []
    successor_cum: list[list[float]] = []
    for item in range(n_items):
        candidates = [i for i in cluster_members[cluster_of[item]] if i != item]
        chosen = _sample_without_replacement(
            rng, candidates, [math.sqrt(popularity[i]) for i in candidates], len(SUCCESSOR_WEIGHTS)
        )
        if chosen and n_clusters > 1 and rng.random() < 0.2:
            # An occasional cross-cluster link keeps the clusters from being closed worlds.
            other = rng.randrange(n_items)
            if other != item and other not in chosen:
                chosen[-1] = other
        successors.append(chosen)
        successor_cum.append(list(accumulate(SUCCESSOR_WEIGHTS[: len(chosen)])))
    prices = [round(math.exp(rng.gauss(3.0, 0.8)), 2) for _ in range(n_items)]
    return Catalog(
        item_ids=item_ids,
        popularity_cum=list(accumulate(popularity)),
        cluster_members=cluster_members,
        cluster_cum=cluster_cum,
        successors=successors,
        successor_cum=successor_cum,
        prices=prices,
    )


def _sample_without_replacement(
    rng: random.Random, population: Sequence[int], weights: Sequence[float], k: int
) -> list[int]:
    pool, pool_weights = list(population), list(weights)
    chosen: list[int] = []
    while pool and len(chosen) < k:
        index = bisect(list(accumulate(pool_weights)), rng.random() * sum(pool_weights))
        index = min(index, len(pool) - 1)
        chosen.append(pool.pop(index))
        pool_weights.pop(index)
    return chosen


def build_users(rng: random.Random, n_users: int, n_clusters: int) -> list[User]:
    width = max(6, len(str(n_users - 1)))
    users = []
    for k in range(n_users):
        n_taste = 1 if rng.random() < 0.6 or n_clusters == 1 else 2
        users.append(
            User(
                user_id=f"u{k:0{width}d}",
                activity=min(1.0, max(0.15, rng.betavariate(2.0, 2.5))),
                clusters=tuple(rng.sample(range(n_clusters), n_taste)),
                sends_session_id=rng.random() < P_CLIENT_SENDS_SESSION_ID,
            )
        )
    return users


# ---- one day of behaviour ----


def simulate_day(
    rng: random.Random,
    np_rng: np.random.Generator,
    catalog: Catalog,
    users: list[User],
    day: date,
    events_per_user_per_day: float,
) -> list[Event]:
    activity = np.array([u.activity for u in users])
    active = np_rng.random(len(users)) < activity
    # Mean events on an active day, so that the mean over all days is events_per_user_per_day.
    targets = np.maximum(1, np_rng.poisson(events_per_user_per_day / activity))
    day_start_ms = (day - date(1970, 1, 1)).days * DAY_MS
    day_last_ms = day_start_ms + DAY_MS - SECOND_MS
    events: list[Event] = []
    for index in np.flatnonzero(active).tolist():
        _simulate_user_day(rng, catalog, users[index], index, int(targets[index]),
                           day_start_ms, day_last_ms, events)
    events.sort(key=lambda e: (e.time_ms, e.user))
    return events


def _simulate_user_day(
    rng: random.Random,
    catalog: Catalog,
    user: User,
    user_index: int,
    target: int,
    day_start_ms: int,
    day_last_ms: int,
    out: list[Event],
) -> None:
    t = day_start_ms + rng.randrange(16 * 60 * MINUTE_MS)
    emitted = 0
    while emitted < target and t <= day_last_ms:
        session_id = f"{rng.getrandbits(64):016x}" if user.sends_session_id else None
        current: int | None = None
        while emitted < target and t <= day_last_ms:
            current = _next_item(rng, catalog, user, current)
            for event_type in _funnel(rng):
                out.append(Event(t, user_index, session_id, current, event_type,
                                  _extra(rng, catalog, current, event_type)))
                emitted += 1
                if emitted >= target:
                    return
                t += rng.randrange(2 * SECOND_MS, 45 * SECOND_MS)
                if t > day_last_ms:
                    return
            if rng.random() < P_END_SESSION:
                break
            gap = int(math.exp(rng.gauss(math.log(40 * SECOND_MS), 1.0)))
            t += min(MAX_IN_SESSION_GAP_MS, max(3 * SECOND_MS, gap))
        t += MIN_SESSION_GAP_MS + int(rng.expovariate(1.0 / MEAN_EXTRA_SESSION_GAP_MS))


def _next_item(rng: random.Random, catalog: Catalog, user: User, current: int | None) -> int:
    if current is not None and catalog.successors[current] and rng.random() < P_FOLLOW_SUCCESSOR:
        return catalog.successors[current][_pick(rng, catalog.successor_cum[current])]
    if rng.random() < P_TASTE:
        cluster = user.clusters[rng.randrange(len(user.clusters))]
        return catalog.cluster_members[cluster][_pick(rng, catalog.cluster_cum[cluster])]
    return _pick(rng, catalog.popularity_cum)


def _pick(rng: random.Random, cumulative: list[float]) -> int:
    return min(bisect(cumulative, rng.random() * cumulative[-1]), len(cumulative) - 1)


def _funnel(rng: random.Random) -> list[str]:
    steps = [VIEW]
    for event_type, probability in ((CLICK, P_CLICK), (ADD_TO_CART, P_ADD_TO_CART), (PURCHASE, P_PURCHASE)):
        if rng.random() >= probability:
            break
        steps.append(event_type)
    return steps


def _extra(rng: random.Random, catalog: Catalog, item: int, event_type: str) -> dict[str, Any] | None:
    if event_type in (ADD_TO_CART, PURCHASE):
        return {"price": catalog.prices[item], "quantity": 1 if rng.random() < 0.85 else 2}
    if event_type == CLICK:
        return {"position": rng.randrange(1, 21)}
    if rng.random() < 0.3:
        return {"referrer": REFERRERS[rng.randrange(len(REFERRERS))]}
    return None
