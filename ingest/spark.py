"""The one place a SparkSession is configured, so every Spark task sees the same settings."""

from __future__ import annotations

from pyspark import SparkContext
from pyspark.sql import SparkSession

from ingest.line_parser import parser_jar
from core.settings import Settings

# A day of events is small; Spark's default of 200 shuffle partitions would mostly schedule
# empty tasks and write tiny files. Fewer partitions than this make each of the dedup's tasks
# of a big day sort more rows than the driver's memory holds, so they spill to disk and the
# events write slows down. Adaptive execution merges the partitions of a small day back into one.
SHUFFLE_PARTITIONS = 8


def spark_session(settings: Settings) -> SparkSession:
    """Return the process's SparkSession, creating it from ``settings`` when none is running.

    getOrCreate semantics: an already running session is reused (Airflow tasks and the demo
    ingest several days with one). Its runtime options (time zone, overwrite mode, shuffle
    partitions) are set again; JVM options (driver memory, Derby home) and the warehouse dir only
    take effect when this call starts the JVM.
    """
    settings.home.mkdir(parents=True, exist_ok=True)
    derby_home = settings.home / "spark-derby"
    # Derby (Hive's embedded metastore) writes metastore_db/ and derby.log into the working
    # directory unless its home is set; JVM time zone UTC so nothing falls back to local time.
    # The parallel collector: ingestion is a batch job that wants throughput, not short pauses;
    # it ran faster with less peak memory than G1 (the JVM's default) when compared back to
    # back with benchmarks/ingest_throughput.py.
    java_options = f"-Dderby.system.home={derby_home} -Duser.timezone=UTC -XX:+UseParallelGC"
    builder = SparkSession.builder
    # The ingest line parser's jar (ingest.line_parser), built on first use; on a cluster
    # spark.jars ships it to the executors. Only a starting JVM takes jars: a running one is
    # reused as it is.
    if SparkContext._active_spark_context is None:
        jar = parser_jar(settings)
        if jar is not None:
            builder = builder.config("spark.jars", str(jar))
    return (
        builder.master(settings.spark_master)
        .appName("recsys-platform")
        .config("spark.driver.memory", settings.spark_driver_memory)
        .config("spark.driver.extraJavaOptions", java_options)
        .config("spark.executor.extraJavaOptions", java_options)
        .config("spark.sql.warehouse.dir", str(settings.spark_warehouse_dir))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
        .config("spark.sql.shuffle.partitions", str(SHUFFLE_PARTITIONS))
        # The dedup keeps the first row per event_id; for such a filter Spark sorts every row
        # once more before the shuffle to drop the other copies early (WindowGroupLimit), which
        # only pays where most rows are copies, which a day of events rarely is.
        .config("spark.sql.optimizer.windowGroupLimitThreshold", "-1")
        # The ingestion job caches a day's classified lines on disk and reads them back for the
        # quarantine and the dedup (ingest.staging): compressing the cached columns costs more
        # CPU than it saves.
        .config("spark.sql.inMemoryColumnarStorage.compressed", "false")
        .config("spark.ui.enabled", "false")
        # Progress bars interleave with the task logs Airflow keeps; the job logs its own counts.
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
