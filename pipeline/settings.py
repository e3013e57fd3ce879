"""All settings of the platform, in one typed place, read from the environment.

Every stage takes a :class:`Settings`; nothing reads ``os.environ`` elsewhere. The embedded
defaults (Spark ``local[*]``, DuckDB, SQLite, MLflow on a local SQLite file) need no server; a
cluster deployment changes environment variables only (see ``docker/.env.example``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

REPO_ROOT = Path(__file__).resolve().parents[1]

EVENT_TYPES = ("view", "click", "add_to_cart", "purchase")


def _env(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name)
    return default if value is None or value == "" else value


@dataclass(frozen=True)
class Settings:
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
    # Features and models look at a user's last K items.
    max_sequence_length: int = 50
    feast_online_store: str = "sqlite"  # "sqlite" or "redis"
    redis_connection_string: str = "127.0.0.1:6379"
    mlflow_tracking_uri: str = ""  # empty: sqlite file under home
    registered_model_name: str = "sequential_recommender"
    champion_alias: str = "champion"
    device: str = "auto"  # "auto", "cpu", "cuda"
    seed: int = 42
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
    decision_signing_key: str = field(default="", repr=False)
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
    auto_models: str = "repeat,covisitation,sknn,gru4rec,sasrec"
    # Serving: how often the API checks the registry's champion alias (0 disables the poller),
    # how long a request waits for the online store before answering from popularity, and
    # "live" (model per request) or "precomputed" (top-K lists written after promotion).
    champion_poll_seconds: float = 30.0
    feature_timeout_ms: float = 50.0
    serving_mode: str = "live"
    precompute_k: int = 100
    # PyTorch intra-op threads while the API runs (0: leave as is). A batch-1 forward gains
    # nothing from more, and spinning OpenMP threads cost 10x its latency on a busy small machine.
    serving_torch_threads: int = 1
    # Bearer token POST /admin/reload requires; empty (the local default) leaves it open. Read
    # from the environment only (RECSYS_ADMIN_TOKEN), never from a file in the repository.
    admin_token: str = field(default="", repr=False)
    # Bearer token POST /events requires; empty leaves it open on a loopback bind only.
    events_token: str = field(default="", repr=False)
    # The address the API binds (uvicorn --host). A non-loopback bind refuses to start unless
    # both tokens are set.
    api_host: str = "127.0.0.1"
    # Every online-store write on the push path is given up after this long (503, not a hang).
    push_timeout_ms: float = 1000.0
    # Load shedding: requests in flight beyond this answer 429 with Retry-After; batch forwards
    # run in a pool of this many threads, off the event loop.
    serving_max_concurrency: int = 64
    serving_batch_workers: int = 2

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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        d = cls()
        return cls(
            home=Path(_env(env, "RECSYS_HOME", str(d.home))).resolve(),
            spark_master=_env(env, "RECSYS_SPARK_MASTER", d.spark_master),
            spark_driver_memory=_env(env, "RECSYS_SPARK_DRIVER_MEMORY", d.spark_driver_memory),
            ingest_parser=_env(env, "RECSYS_INGEST_PARSER", d.ingest_parser),
            dbt_target=_env(env, "RECSYS_DBT_TARGET", d.dbt_target),
            session_gap_minutes=int(_env(env, "RECSYS_SESSION_GAP_MINUTES", str(d.session_gap_minutes))),
            max_future_skew_minutes=int(
                _env(env, "RECSYS_MAX_FUTURE_SKEW_MINUTES", str(d.max_future_skew_minutes))
            ),
            max_event_age_days=int(_env(env, "RECSYS_MAX_EVENT_AGE_DAYS", str(d.max_event_age_days))),
            max_sequence_length=int(_env(env, "RECSYS_MAX_SEQUENCE_LENGTH", str(d.max_sequence_length))),
            feast_online_store=_env(env, "RECSYS_FEAST_ONLINE_STORE", d.feast_online_store),
            redis_connection_string=_env(env, "RECSYS_REDIS_CONNECTION_STRING", d.redis_connection_string),
            mlflow_tracking_uri=_env(env, "MLFLOW_TRACKING_URI", d.mlflow_tracking_uri),
            registered_model_name=_env(env, "RECSYS_REGISTERED_MODEL_NAME", d.registered_model_name),
            device=_env(env, "RECSYS_DEVICE", d.device),
            seed=int(_env(env, "RECSYS_SEED", str(d.seed))),
            promotion_min_coverage=float(
                _env(env, "RECSYS_PROMOTION_MIN_COVERAGE", str(d.promotion_min_coverage))
            ),
            champion_poll_seconds=float(
                _env(env, "RECSYS_CHAMPION_POLL_SECONDS", str(d.champion_poll_seconds))
            ),
            feature_timeout_ms=float(_env(env, "RECSYS_FEATURE_TIMEOUT_MS", str(d.feature_timeout_ms))),
            serving_mode=_env(env, "RECSYS_SERVING_MODE", d.serving_mode),
            precompute_k=int(_env(env, "RECSYS_PRECOMPUTE_K", str(d.precompute_k))),
            serving_torch_threads=int(
                _env(env, "RECSYS_SERVING_TORCH_THREADS", str(d.serving_torch_threads))
            ),
            admin_token=_env(env, "RECSYS_ADMIN_TOKEN", d.admin_token),
            events_token=_env(env, "RECSYS_EVENTS_TOKEN", d.events_token),
            api_host=_env(env, "RECSYS_API_HOST", d.api_host),
            push_timeout_ms=float(_env(env, "RECSYS_PUSH_TIMEOUT_MS", str(d.push_timeout_ms))),
            serving_max_concurrency=int(
                _env(env, "RECSYS_SERVING_MAX_CONCURRENCY", str(d.serving_max_concurrency))
            ),
            serving_batch_workers=int(_env(env, "RECSYS_SERVING_BATCH_WORKERS", str(d.serving_batch_workers))),
            promotion_min_gain=float(_env(env, "RECSYS_PROMOTION_MIN_GAIN", str(d.promotion_min_gain))),
            promotion_confidence=float(
                _env(env, "RECSYS_PROMOTION_CONFIDENCE", str(d.promotion_confidence))
            ),
            promotion_bootstrap_samples=int(
                _env(env, "RECSYS_PROMOTION_BOOTSTRAP_SAMPLES", str(d.promotion_bootstrap_samples))
            ),
            decision_signing_key=_env(env, "RECSYS_DECISION_SIGNING_KEY", d.decision_signing_key),
            eval_protocol=_env(env, "RECSYS_EVAL_PROTOCOL", d.eval_protocol),
            eval_test_days=float(_env(env, "RECSYS_EVAL_TEST_DAYS", str(d.eval_test_days))),
            eval_val_days=float(_env(env, "RECSYS_EVAL_VAL_DAYS", str(d.eval_val_days))),
            min_eval_examples=int(_env(env, "RECSYS_MIN_EVAL_EXAMPLES", str(d.min_eval_examples))),
            exclude_seen=_env(env, "RECSYS_EXCLUDE_SEEN", d.exclude_seen).lower(),
            repeat_share_threshold=float(
                _env(env, "RECSYS_REPEAT_SHARE_THRESHOLD", str(d.repeat_share_threshold))
            ),
            auto_models=_env(env, "RECSYS_AUTO_MODELS", d.auto_models),
        )

    def with_home(self, home: Path) -> "Settings":
        return replace(self, home=Path(home).resolve())
