"""The docs tables of the catalog-scale serving benchmarks (``serving_catalog``,
``serving_capacity``), registered in :data:`benchmarks.report_docs.SECTIONS`."""

from __future__ import annotations

import re
from typing import Any, Sequence

from benchmarks import common

Records = Sequence[dict[str, Any]]
LOAD = re.compile(r"^(?P<prefix>.*), (?P<store>\w+) online store, (?P<rate>[\d.]+) req/s$")
CAPACITY = re.compile(r"^capacity at p99 <= (?P<p99>[\d.]+) ms, (?P<items>\d+) items, (?P<store>\w+) online store, "
                      r"(?P<workers>\d+) workers, (?P<duration>[\d.]+) s per rate$")


def serving_catalog(records: Records, _=None) -> list[dict]:
    from benchmarks.report_docs import caption, fmt, table, text

    loads = [r for r in records if LOAD.match(r["dataset"])]
    rows = []
    for (dataset, model), v in common.by_key(loads, "dataset", "model").items():
        m = LOAD.match(dataset)
        rows.append([model.split("), ", 1)[1], m["store"], m["rate"], fmt(v.get("throughput"), 1),
                     fmt(v.get("p50_latency"), 2), fmt(v.get("p99_latency"), 2), fmt(v.get("service_p99_latency"), 2),
                     fmt(v.get("errors"), 0), fmt(v.get("fallbacks"), 0)])
    rest = [r for r in records if not LOAD.match(r["dataset"])]
    figures = [[r["metric"], r["model"], fmt(r["value"], 4 if r["unit"] == "fraction" else 2), r["unit"],
                r["dataset"].rsplit(", ", 1)[1]] for r in rest]
    prefix = LOAD.match(loads[0]["dataset"])["prefix"] if loads else records[0]["dataset"]
    return [text(caption(records, f" — {prefix};")),
            table(["retrieval", "online store", "offered req/s", "achieved req/s", "p50 ms", "p99 ms",
                   "service p99 ms", "errors", "fallbacks"], rows, "llrrrrrrr"),
            table(["figure", "path", "value", "unit", "measured"], figures, "llrll")]


def serving_capacity(records: Records, _=None) -> list[dict]:
    from benchmarks.report_docs import caption, fmt, table, text

    rows = []
    for (dataset, model), v in common.by_key(records, "dataset", "model").items():
        m = CAPACITY.match(dataset)
        if m is None:
            continue
        retrieval = model.rsplit(", ", 1)[1].removesuffix(")").removesuffix(" retrieval")
        rows.append([f"{int(m['items']):,}", m["store"], m["workers"], retrieval, fmt(v.get("capacity"), 0),
                     fmt(v.get("p99_at_capacity"), 2), fmt(v.get("probes"), 0)])
    first = CAPACITY.match(records[0]["dataset"])
    goal = f"p99 <= {first['p99']} ms, {first['duration']} s per rate" if first else ""
    return [text(caption(records, f" — {goal};")),
            table(["catalog items", "online store", "workers", "retrieval", "capacity req/s", "p99 at capacity ms",
                   "rates tried"], rows, "rlrlrrr")]
