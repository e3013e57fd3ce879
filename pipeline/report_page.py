"""The nightly report's HTML: the collected data (``pipeline.report.collect``) through the Jinja2
templates in ``pipeline/templates/``, with the charts of ``pipeline.report_charts`` inlined.

The page is one self-contained file: no script, no stylesheet or font to fetch.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from pipeline.report_charts import (event_type_chart, item_tail_chart, session_length_chart, svg_line_chart,
                                    volume_chart)


@functools.cache
def _environment() -> Environment:
    env = Environment(loader=PackageLoader("pipeline", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["file_uri"] = file_uri
    env.filters["thousands"] = lambda n: f"{n:,}"
    env.filters["figure"] = figure
    env.filters["delta"] = delta
    env.filters["percent"] = lambda share: f"{100 * share:.1f}%"
    return env


def figure(value: float | None) -> str:
    """A metric in the table: four decimals, a dash when nothing was recorded."""
    return "—" if value is None else f"{value:.4f}"


def delta(value: dict[str, float | None] | None) -> str:
    """A difference in the table: signed, with the relative change when the base is not 0."""
    if value is None:
        return "—"
    rel = value.get("rel")
    return f"{value['abs']:+.4f}" + ("" if rel is None else f" ({rel:+.1%})")


def file_uri(path: str) -> str:
    """A link to a file written on this machine (or a URL, kept as is)."""
    return path if "://" in path else Path(path).resolve().as_uri()


def _metric(metrics: dict | None, key: str) -> float | None:
    value = (metrics or {}).get(key)
    return float(value) if isinstance(value, (int, float)) else None


def evaluation_summary(decision: dict[str, Any]) -> str:
    """How the night measured its candidate (protocol, evidence, seen-item rule), in plain words,
    and a plain "not enough evidence" when that is why nothing was promoted."""
    return _environment().get_template("evaluation.html.j2").render(decision=decision).strip()


def charts(data: dict[str, Any], metric: str) -> dict[str, Any]:
    """The page's charts as inline SVG markup, by section."""
    history = data["decisions"]
    series = {
        label: [(d["run_date"], _metric(d["metrics"].get(key), metric)) for d in history]
        for label, key in (("candidate", "candidate"), ("champion (re-scored)", "champion_rescored"),
                           ("popularity", "popularity"))
    }
    training = data["training"]
    dist = data["distributions"] or {}
    return {
        "session_lengths": Markup(session_length_chart(dist.get("session_lengths") or [])),
        "item_tail": Markup(item_tail_chart((dist.get("item_tail") or {}).get("points") or [])),
        "event_types": Markup(event_type_chart(dist.get("event_types") or [])),
        "volumes": Markup(volume_chart(data["volumes"])),
        "training": [Markup(svg_line_chart({name: points}, title=f"{name} per epoch", x_title="epoch",
                                           size=(5.0, 2.6)))
                     for name, points in (training["curves"].items() if training else ())],
        "metrics": Markup(svg_line_chart(series, title=f"{metric}: candidate vs champion vs popularity",
                                         x_labels=[d["run_date"] for d in history], x_title="run date")),
    }


def render(data: dict[str, Any], *, metric: str) -> str:
    """The whole page of one run date."""
    return _environment().get_template("report.html.j2").render(
        data=data, metric=metric, charts=charts(data, metric))
