"""The two line parsers of ingestion classify alike: the one-pass Java function
(ingest/jvm/ParseEventLine.java) and Spark's own expressions, on every defect and JSON corner."""

from __future__ import annotations

import importlib.util
import json
from datetime import date
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from ingest import line_parser
from ingest.classify import classify_lines
from ingest.ingest_day import ingest_arrival_day
from ingest.schema import MAX_LINE_BYTES
from core.settings import Settings

# The every-defect lines of the ingestion test (same folder, loaded by path: tests are no package).
_spec = importlib.util.spec_from_file_location("every_defect", Path(__file__).with_name("test_ingest_day.py"))
every_defect = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(every_defect)
DAY, event = every_defect.DAY, every_defect.event

VALID = {"event_time": "2026-11-05T10:00:00Z", "user_id": "u", "item_id": "i", "event_type": "view"}


def raw(**fields) -> str:
    return json.dumps({"event_id": "x"} | VALID | fields, separators=(",", ":"), ensure_ascii=False)


def glued(prefix: str, suffix: str) -> str:
    """An event whose text has ``prefix`` / ``suffix`` spliced into the object (hand-made JSON)."""
    body = raw()[1:-1]
    return "{" + prefix + body + suffix + "}"


# JSON corners where a second parser could disagree with Spark's: strictness, duplicate keys at
# depth, escapes, numbers the variant and Jackson spell differently, nesting, unknown fields.
CORNERS = [
    glued("", ',"extra":{"a":{"b":1,"b":2}}'),  # duplicate key two levels down
    glued("", ',"unknown":[{"k":1,"k":1}]'),  # duplicate key inside an ignored field
    glued("", ',"n":01'),
    glued("", ',"n":NaN'),
    glued("", ',"n":.5'),
    glued("/*c*/", ""),
    glued("", ',"t":1,'),  # a trailing comma
    glued("", ',"s":"tab\there"'),  # an unescaped control character
    '{"event_id":"x\\u00e9\\n\\"q\\"","event_time":"2026-11-05T10:00:00Z","user_id":"\\ud83d\\ude00",'
    '"item_id":"i\\/j","event_type":"view"}',
    raw(event_id="e1", extra={"p": 1.0e2, "q": -0.0, "r": 12345678901234567890123, "s": 1.5e-7,
                              "t": "\u00e9\"\\", "u": [1, {"v": None}], "w": True, "x": ""}),
    glued("", ',"extra":{"e":1E+2,"f":-0,"g":1.000,"h":1e400}'),
    raw(event_id="e2", extra={}),
    glued("", ',"extra": { "a" : [ 1 , 2 ] ,\n "b" : { } }'),
    glued("", ',"unknown":' + "[" * 300 + "]" * 300),
    glued("", ',"extra":' + '{"d":' * 200 + "1" + "}" * 200),
    raw(event_id="e3", unknown={"deep": [[{"x": None}]]}, other=[1, "2", None]),
    raw(event_id="e4", extra=None, session_id=None),
    raw(event_id="e5", extra=[1]),
    raw(event_id="e6", extra=7),
    raw(event_id="e7", user_id=True),
    raw(event_id="e8", item_id=["i"]),
    raw(event_id="e9", event_time=None),
    '{"event_id":"e10","event_time":"2026-11-05T10:00:00Z","user_id":"\\ud800","item_id":"i","event_type":"view"}',
    # Half a surrogate pair, wherever it is, and what only looks like one.
    glued("", ',"unknown":"\\udc00"'),
    glued("", ',"\\ud83d":1'),
    glued("", ',"extra":{"a":"\\ud83d\\u0041"}'),
    glued("", ',"extra":{"a":"\\ude00\\ud83d"}'),
    glued("", ',"extra":{"a":"\\ud83d\\ude00 ok","b":"\\\\ud800 is text"}'),
    "\t " + raw(event_id="e11") + "\n",
    raw(event_id="e12") + "\u00a0",  # a no-break space is not JSON whitespace
    raw(event_id="e13", event_type="view", user_id="u" * 5000),
    "{}",
    '{"event_id":"e14"}{}',
    "  [" + raw(event_id="e15") + "]",
    '"just a string"',
    "42",
    "true",
]


def _classified(spark: SparkSession, settings: Settings, lines: list[str], parser: str) -> dict[str, dict]:
    """Each line's classification, by the line (its source_file names its position)."""
    rows = [(line, str(n), len(line.encode()), None) for n, line in enumerate(lines)]
    frame = spark.createDataFrame(rows, "raw_line string, source_file string, line_bytes int, preset_reason string")
    classified = classify_lines(frame, settings, DAY, MAX_LINE_BYTES, parser)
    out = {}
    for row in classified.collect():
        # A quarantined line keeps its text and reason only (the quarantine's columns): what a
        # parser made of the rest of it goes nowhere.
        out[lines[int(row["source_file"])]] = row.asDict() if row["reason"] is None else {
            "raw_line": row["raw_line"], "reason": row["reason"], "line_bytes": row["line_bytes"]}
    return out


@pytest.fixture
def jvm_parser(spark: SparkSession, settings: Settings) -> str:
    if line_parser.register(spark, settings) != "jvm":
        pytest.skip("the Java line parser is not available here (no JDK compiler); the SQL parser is tested alone")
    return "jvm"


@pytest.mark.slow
def test_both_parsers_classify_every_line_alike(spark: SparkSession, settings: Settings, jvm_parser: str) -> None:
    lines = [line for line, _ in every_defect.REJECTED] + every_defect.ACCEPTED + [every_defect.LONG_LINE,
                                                                                    every_defect.NON_ASCII] + CORNERS
    by_jvm = _classified(spark, settings, lines, "jvm")
    by_sql = _classified(spark, settings, lines, "sql")
    assert len(by_jvm) == len(set(lines))
    differ = {line[:120]: (by_jvm[line], by_sql[line]) for line in lines if by_jvm[line] != by_sql[line]}
    assert not differ
    # The corners are not all rejected (the comparison would then prove little).
    reasons = [row["reason"] for row in by_jvm.values()]
    assert reasons.count(None) >= 10 and reasons.count("unparseable") >= 12


@pytest.mark.slow
def test_the_every_defect_day_reconciles_the_same_with_the_sql_parser(
    spark: SparkSession, settings: Settings, tmp_path: Path, jvm_parser: str
) -> None:
    with_jvm = every_defect_day(spark, settings)
    sql_settings = settings.replace(home=tmp_path / "sql-home", ingest_parser="sql")
    with_sql = every_defect_day(spark, sql_settings)
    assert with_jvm == with_sql
    assert every_defect.lake_rows(spark, settings) == every_defect.lake_rows(spark, sql_settings)
    assert every_defect.quarantine(spark, settings, DAY) == every_defect.quarantine(spark, sql_settings, DAY)


def every_defect_day(spark: SparkSession, settings: Settings) -> dict:
    lines = [line for line, _ in every_defect.REJECTED] + every_defect.ACCEPTED + CORNERS
    every_defect.write_day(settings, DAY, {"part-a.jsonl": lines, "part-b.jsonl": every_defect.BAD_ENCODING})
    return ingest_arrival_day(settings, DAY, spark)


def test_the_parser_setting_is_checked(settings: Settings) -> None:
    with pytest.raises(ValueError, match="ingest_parser"):
        line_parser.parser_jar(settings.replace(ingest_parser="fast"))
    assert line_parser.parser_jar(settings.replace(ingest_parser="sql")) is None
    assert not (settings.home / "jvm").exists()


def test_without_a_compiler_auto_falls_back_and_jvm_refuses(settings: Settings, monkeypatch, caplog) -> None:
    # This machine has a JDK; a runtime-only machine is what is faked here.
    monkeypatch.setattr(line_parser, "_javac", lambda: None)
    assert line_parser.parser_jar(settings) is None
    assert "no javac" in caplog.text
    with pytest.raises(line_parser.ParserUnavailable, match="no javac"):
        line_parser.parser_jar(settings.replace(ingest_parser="jvm"))


def test_the_jar_is_built_once_per_source(settings: Settings, monkeypatch) -> None:
    if line_parser._javac() is None:
        pytest.skip("no JDK compiler on this machine")
    jar = line_parser.parser_jar(settings.replace(ingest_parser="jvm"))
    assert jar is not None and jar.is_file() and jar.parent == settings.home / "jvm"
    import zipfile

    assert "recsys/ingest/ParseEventLine.class" in zipfile.ZipFile(jar).namelist()
    monkeypatch.setattr(line_parser, "_javac", lambda: None)  # built: no compiler needed again
    assert line_parser.parser_jar(settings) == jar
