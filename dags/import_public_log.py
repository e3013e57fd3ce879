"""Manual Airflow DAG: import a public data set into the raw folder as canonical arrival days.

This file only wires one task; the work is ``pipeline.imports.import_public_log``.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Param, dag, get_current_context, task

from ingest.importers import IMPORTERS

DOC = """
### Import a public interaction log

Converts a public recommender data set into the platform's canonical raw events, written to
`$RECSYS_HOME/raw/<arrival day>/<format>-00000.jsonl.gz` by the UTC date of each event.
Trigger it with **Params**:

* `format` — the data set's format (YOOCHOOSE, OTTO, DIGINETICA, Taobao, MovieLens,
  Retailrocket, Amazon-M2);
* `source` — absolute path of the file on the worker (`.gz` is read as is).

The task's XCom is the import summary: rows read, events written per arrival day, and rows that
could not be converted, counted per quarantine reason. Those rows are written too, in a form
ingestion quarantines, so nothing is lost on the way. Importing again replaces that format's
files. Then run `nightly_recsys` (or `python -m ingest.ingest_day`) for the arrival days listed,
oldest first.
"""


@dag(
    dag_id="import_public_log",
    description="Convert a public data set into canonical raw arrival days",
    doc_md=DOC,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["recsys", "import", "manual"],
    default_args={"owner": "recsys-platform", "retries": 0},
    params={
        "format": Param(
            "yoochoose",
            type="string",
            enum=sorted(IMPORTERS),
            title="Format",
            description="Format of the source file.",
        ),
        "source": Param(
            None,
            type="string",
            pattern=r"^/\S.*$",
            minLength=2,
            title="Source file",
            description="Absolute path of the file to import, on the worker (.gz allowed).",
        ),
    },
)
def import_public_log():
    @task
    def import_log() -> dict:
        from pipeline import imports
        from core.settings import Settings

        params = get_current_context()["params"]
        return imports.import_public_log(Settings.from_env(), params["format"], params["source"])

    import_log()


import_public_log()
