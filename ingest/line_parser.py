"""The JVM line parser: ``ingest/jvm/ParseEventLine.java``, built into a jar on first use and
registered in the Spark session as ``recsys_parse_event_line``.

Without it, ingestion parses each line three times with Spark's own expressions
(``ingest.classify``): ``from_json`` for the fields' text, ``try_parse_json`` to know the line is
strict JSON with no duplicate key, and ``schema_of_variant`` for each field's JSON type. Those
passes cost the classification more than reading the day does; the Java function does all three
in one Jackson pass (docs/benchmarks.md has the measurements).

The jar is compiled with the JDK's ``javac`` against the jars of the installed pyspark (so the
same Jackson and Spark API), once per source and pyspark version, into
``$RECSYS_HOME/jvm/``. ``spark.jars`` ships it to a cluster's executors. A machine with a Java
runtime but no compiler (``ingest_parser = "auto"``) falls back to the SQL expressions, with a
warning; both paths classify every line alike (``tests/ingest/test_line_parser.py`` runs the
every-defect log through each).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

from ingest.schema import RAW_EVENT_FIELDS
from core.settings import Settings

log = logging.getLogger(__name__)

JAVA_SOURCE = Path(__file__).with_name("jvm") / "ParseEventLine.java"
CLASS_NAME = "recsys.ingest.ParseEventLine"
FUNCTION_NAME = "recsys_parse_event_line"
# What ParseEventLine.call returns, field for field.
RETURN_TYPE = (
    "struct<whole_object: boolean, "
    + ", ".join(f"type_{name}: string" for name in RAW_EVENT_FIELDS)
    + ", "
    + ", ".join(f"text_{name}: string" for name in RAW_EVENT_FIELDS)
    + ">"
)
PARSERS = ("auto", "jvm", "sql")


class ParserUnavailable(RuntimeError):
    """``ingest_parser = "jvm"`` was asked for and cannot be had here."""


def _check(settings: Settings) -> None:
    if settings.ingest_parser not in PARSERS:
        raise ValueError(f"ingest_parser must be one of {PARSERS}, not {settings.ingest_parser!r}")


def _pyspark_jars() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent / "jars"


def _javac() -> str | None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "javac").is_file():
        return str(Path(java_home) / "bin" / "javac")
    return shutil.which("javac")


def jar_path(settings: Settings) -> Path:
    """Where the jar of this source and this pyspark lives (built or not)."""
    import pyspark

    digest = hashlib.sha256(JAVA_SOURCE.read_bytes() + pyspark.__version__.encode()).hexdigest()[:16]
    return settings.home / "jvm" / f"recsys-ingest-{digest}.jar"


def parser_jar(settings: Settings) -> Path | None:
    """The jar to put on ``spark.jars``, built if needed; None when the SQL parser is to be used."""
    _check(settings)
    if settings.ingest_parser == "sql":
        return None
    jar = jar_path(settings)
    if jar.is_file():
        return jar
    try:
        return _build(jar)
    except ParserUnavailable as exc:
        if settings.ingest_parser == "jvm":
            raise
        log.warning("%s; ingestion parses lines with Spark's SQL expressions instead (slower)", exc)
        return None


def _build(jar: Path) -> Path:
    javac = _javac()
    if javac is None:
        raise ParserUnavailable("no javac (a JDK, not only a Java runtime) to build the ingest line parser")
    jar.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=jar.parent, prefix=".build-") as scratch:
        classes = Path(scratch) / "classes"
        command = [javac, "--release", "17", "-nowarn", "-cp", str(_pyspark_jars() / "*"), "-d", str(classes),
                   str(JAVA_SOURCE)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ParserUnavailable(f"javac could not run: {exc}") from exc
        if done.returncode != 0:
            raise ParserUnavailable(f"javac failed on {JAVA_SOURCE.name}: {done.stderr.strip()[-2000:]}")
        # A jar is a zip with a manifest; writing it here needs no `jar` tool.
        partial = Path(scratch) / jar.name
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\r\nCreated-By: recsys-platform\r\n\r\n")
            for path in sorted(classes.rglob("*.class")):
                archive.write(path, path.relative_to(classes).as_posix())
        os.replace(partial, jar)  # atomic: a concurrent build of the same source writes the same jar
    log.info("built the ingest line parser: %s", jar)
    return jar


def register(spark, settings: Settings) -> str:
    """Register the function in ``spark``'s session: "jvm" when it is there, else "sql".

    The jar reaches the JVM only through ``spark.jars`` when the session starts
    (``ingest.spark.spark_session``); a session started otherwise has no such class.
    """
    _check(settings)
    if settings.ingest_parser == "sql":
        return "sql"
    try:
        spark.udf.registerJavaFunction(FUNCTION_NAME, CLASS_NAME, RETURN_TYPE)
        return "jvm"
    except Exception as exc:  # noqa: BLE001 - py4j and Spark raise several kinds for a missing class
        if settings.ingest_parser == "jvm":
            raise ParserUnavailable(f"the Spark session cannot load {CLASS_NAME}: {exc}") from exc
        log.warning("the Spark session has no %s (started without its jar); ingestion uses the SQL parser",
                    CLASS_NAME)
        return "sql"
