"""All settings of the platform, in one typed place, read from the environment in one place.

Every stage takes a :class:`Settings`. ``Settings()`` is the defaults plus the values given in
code (tests, benchmarks); :meth:`Settings.from_env` reads ``RECSYS_<FIELD>`` (and MLflow's own
``MLFLOW_TRACKING_URI``) with pydantic-settings, which also checks each value's type: a bad value
is one line naming the variable. Nothing else in the platform reads ``os.environ`` for its
settings. The embedded defaults (Spark ``local[*]``, DuckDB, SQLite, MLflow on a local SQLite
file) need no server; a cluster deployment changes environment variables only (see
``docker/.env.example``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

from core.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV_PREFIX = "RECSYS_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True, extra="forbid",
        populate_by_name=True, validate_default=False,
    )

    # Root of every generated artefact (raw logs, lake, warehouse, feature store, MLflow, ...).
    home: Path = REPO_ROOT / ".recsys"
    spark_master: str = "local[*]"
    spark_driver_memory: str = "2g"
    # How ingestion parses raw lines: "jvm" (one Jackson pass per line, ingest/jvm, built into a
    # jar on first use; needs a JDK's javac), "sql" (Spark's own parsers, three passes) or "auto"
    # (jvm when it can be built, else sql). Both classify every line alike.
    ingest_parser: str = "auto"
    dbt_target: str = "duckdb"
    # Sessionization: a new session starts after this much inactivity (unless the log has ids).
    session_gap_minutes: int = 30
    # Ingestion: events further in the future than this (vs. the arrival day's end) are quarantined.
    max_future_skew_minutes: int = 60
    # Ingestion: events older than this many days before their arrival day are quarantined.
    max_event_age_days: int = 30
    # Log lines: "kv" (key=value) or "json" (for a log shipper).
    log_format: Literal["kv", "json"] = "kv"
    # Command-line tools show the traceback of user errors too (as --debug does).
    debug: bool = False
    # Features and models look at a user's last K items.
    max_sequence_length: int = 50
    feast_online_store: str = "sqlite"  # "sqlite" or "redis"
    # How materialization writes Redis: "bulk" (features/bulk_materialize.py: Feast's keys and
    # values, encoded a column at a time), "standard" (Feast's write_to_online_store), "auto"
    # (bulk on Redis for the views it supports, standard otherwise). Same rows either way.
    feast_materialize_route: Literal["auto", "bulk", "standard"] = "auto"
    redis_connection_string: str = "127.0.0.1:6379"
    # Empty: a SQLite file under home. Read from MLflow's own variable, MLFLOW_TRACKING_URI.
    mlflow_tracking_uri: str = Field("", validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "mlflow_tracking_uri"))
    registered_model_name: str = "sequential_recommender"
    champion_alias: str = "champion"
    device: str = "auto"  # "auto", "cpu", "cuda"
    seed: int = 42
    # The code's revision recorded with models and benchmark figures; empty: the git checkout's
    # commit. Set it where the tree's .git is not the commit it holds (a copy shipped elsewhere).
    code_revision: str = ""
    # Promotion: the candidate's catalog coverage@10 must reach this.
    promotion_min_coverage: float = 0.01
    # Promotion needs a real win over the champion: a relative gain of at least this much on
    # the primary metric, and a paired test over the test examples (bootstrap of the
    # per-example differences) that finds the gain above zero at this confidence.
    promotion_min_gain: float = 0.0
    promotion_confidence: float = 0.95
    promotion_bootstrap_samples: int = 2000
    # Key of the HMAC that signs decision records (serving loads only versions whose signed
    # record passed). Empty: a random key kept in $RECSYS_HOME/secrets/decision.key (0600).
    decision_signing_key: str = Field("", repr=False)
    # Evaluation protocol: "user_temporal" (a user's next item after a global time cut),
    # "session" (every prefix of each session in the last days predicts its next item) or "auto"
    # (chosen from the log: see training.protocol). Window lengths in days; 0 = chosen from the
    # log's span (one day each, shrunk for a log too short to hold train + two windows).
    eval_protocol: str = "auto"
    eval_test_days: float = 0.0
    eval_val_days: float = 0.0
    # Minimum evidence: fewer test examples than this refuse promotion (a named check), fewer
    # validation examples make training keep its last epoch instead of selecting on noise.
    min_eval_examples: int = 200
    # Seen items: "auto" keeps them rankable when the validation window's share of next items
    # already in the input reaches repeat_share_threshold; "true"/"false" force the rule.
    exclude_seen: str = "auto"
    repeat_share_threshold: float = 0.05
    # What `model=auto` trains and picks from, by validation metric.
    auto_models: str = "repeat,covisitation,sknn,gru4rec,sasrec,hybrid"
    # The night's training budget: minutes of optimisation for each model the candidate stage
    # trains (auto trains several); the epoch reached when it runs out is validated and the best
    # epoch kept. 0: no limit (epochs and early stopping decide). Evaluation is outside it.
    train_max_minutes: float = 0.0
    # Serving: how often the API checks the registry's champion alias (0 disables the poller),
    # how long a request waits for the online store before answering from popularity, and
    # "live" (model per request) or "precomputed" (top-K lists written after promotion).
    champion_poll_seconds: float = 30.0
    feature_timeout_ms: float = 50.0
    serving_mode: str = "live"
    precompute_k: int = 100
    # PyTorch intra-op threads while the API runs (0: leave as is). A batch-1 forward gains
    # nothing from more, and spinning OpenMP threads on a busy small machine slow it down.
    serving_torch_threads: int = 1
    # Bearer token POST /admin/reload requires; empty (the local default) leaves it open. Read
    # from the environment only (RECSYS_ADMIN_TOKEN), never from a file in the repository.
    admin_token: str = Field("", repr=False)
    # Bearer token POST /events requires; empty leaves it open on a loopback bind only.
    events_token: str = Field("", repr=False)
    # The local Airflow UI's login (`make airflow-ui`, the simple auth manager; an admin), the same
    # every run. Change the password (RECSYS_AIRFLOW_PASSWORD) before exposing the UI beyond this machine.
    airflow_user: str = "admin"
    airflow_password: str = Field("admin", repr=False)
    # The address the API binds (uvicorn --host). A non-loopback bind refuses to start unless
    # both tokens are set.
    api_host: str = "127.0.0.1"
    # Every online-store write on the push path is given up after this long (503, not a hang).
    push_timeout_ms: float = 1000.0
    # Load shedding: requests in flight beyond this answer 429 with Retry-After; batch forwards
    # run in a pool of this many threads, off the event loop.
    serving_max_concurrency: int = 64
    serving_batch_workers: int = 2
    # Catalog-scale retrieval: a champion with item embeddings and at least ann_min_catalog
    # items takes its candidates (ann_candidates, or more when filters need them) from the
    # approximate nearest-neighbour index built at promotion (registry.ann_index), then scores
    # and filters them exactly; below, and without an index, every item is scored.
    # ann_ef_search is the graph search's breadth: recall against time per query.
    ann_min_catalog: int = 100_000
    ann_candidates: int = 100
    ann_ef_search: int = 100

    # ---- derived locations (one place, so every stage agrees) ----
    @property
    def raw_dir(self) -> Path:
        """Raw logs: one folder per arrival day, ``raw/<YYYY-MM-DD>/*.jsonl[.gz]``."""
        return self.home / "raw"

    @property
    def lake_dir(self) -> Path:
        return self.home / "lake"

    @property
    def events_dir(self) -> Path:
        """Valid events: ``events/event_date=<d>/arrival_date=<d>/part-*.parquet``."""
        return self.lake_dir / "events"

    @property
    def quarantine_dir(self) -> Path:
        """Rejected rows with a reason: ``quarantine/arrival_date=<d>/part-*.parquet``."""
        return self.lake_dir / "quarantine"

    @property
    def reconciliation_dir(self) -> Path:
        """One JSON per ingested arrival day: input = written + quarantined + duplicates."""
        return self.lake_dir / "reconciliation"

    @property
    def warehouse_path(self) -> Path:
        """DuckDB file the dbt ``duckdb`` target builds the session tables in."""
        return self.home / "warehouse.duckdb"

    @property
    def spark_warehouse_dir(self) -> Path:
        return self.home / "spark-warehouse"

    @property
    def feature_data_dir(self) -> Path:
        """Parquet files the Feast offline store reads (exported from the dbt marts)."""
        return self.home / "feature_data"

    @property
    def feast_dir(self) -> Path:
        """Feast registry and SQLite online store."""
        return self.home / "feast"

    @property
    def gx_dir(self) -> Path:
        """Great Expectations project (suites, validation results, Data Docs)."""
        return self.home / "gx"

    @property
    def quality_dir(self) -> Path:
        """Gate verdicts: ``quality/<date>.json``."""
        return self.home / "quality"

    @property
    def models_dir(self) -> Path:
        """Local checkpoints before they are logged to MLflow."""
        return self.home / "models"

    @property
    def decisions_dir(self) -> Path:
        """Promotion decisions: ``decisions/<date>.json``."""
        return self.home / "decisions"

    @property
    def secrets_dir(self) -> Path:
        """Generated local secrets (the decision signing key when none is configured)."""
        return self.home / "secrets"

    @property
    def last_good_dir(self) -> Path:
        """Serving's copy of the last version it loaded and verified, used when the champion
        cannot be loaded at start."""
        return self.home / "serving" / "last_good"

    @property
    def precomputed_path(self) -> Path:
        """SQLite file of precomputed top-K lists (used when the online store is not Redis)."""
        return self.home / "serving" / "precomputed.sqlite"

    @property
    def mlflow_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow' / 'mlflow.db'}"

    @property
    def mlflow_artifact_root(self) -> Path:
        return self.home / "mlflow" / "artifacts"

    @field_validator("home", mode="after")
    @classmethod
    def _absolute_home(cls, home: Path) -> Path:
        return Path(home).resolve()

    @field_validator("exclude_seen", "log_format", mode="before")
    @classmethod
    def _lower_case(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        # Built in code: the given values over the defaults, never the environment (a test's
        # Settings(home=tmp) must not pick up a developer's exported RECSYS_* variables).
        return (init_settings,)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """The settings the environment (or ``env``) describes; an unset or empty variable keeps
        the default. A value of the wrong type raises a :class:`UserError` naming it."""
        source = _MappingEnvSource(cls, os.environ if env is None else env)
        try:
            return cls(**source())
        except ValidationError as exc:
            problems = "; ".join(
                f"{ENV_PREFIX}{'.'.join(map(str, e['loc'])).upper()}={e.get('input')!r}: {e['msg']}"
                for e in exc.errors()
            )
            raise UserError(f"bad setting: {problems}", fix="correct the environment variable") from None

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """``{field: environment variable}`` for every setting."""
        names = {}
        for name, info in cls.model_fields.items():
            alias = info.validation_alias
            names[name] = alias.choices[0] if isinstance(alias, AliasChoices) else f"{ENV_PREFIX}{name.upper()}"
        return names

    def replace(self, **changes: Any) -> "Settings":
        """A copy with ``changes`` applied and checked (the settings are frozen)."""
        return type(self)(**{**self.model_dump(), **changes})

    def with_home(self, home: Path) -> "Settings":
        return self.replace(home=home)


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source reading a given mapping instead of ``os.environ``
    (the compose files' environments are checked this way without touching the process's)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]):
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)
