"""Session logs under the session protocol: HR@20 / MRR@20 / NDCG@10/20 of the zoo on the public
YOOCHOOSE 100k sample and the DIGINETICA sample, read through the platform's own importers and
split by its own session protocol (:mod:`training.protocol`), so the figures are what a nightly
run with ``RECSYS_EVAL_PROTOCOL=session`` measures.

    python -m benchmarks.session_logs                         # both samples, the default models
    python -m benchmarks.session_logs --dataset yoochoose --models sknn,gru4rec --max-minutes 2

Windows (session-rec's): YOOCHOOSE's last day is the test window and the day before validation;
DIGINETICA's thin sample uses the last seven days each.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from benchmarks import common

NAME = "session_logs"
DEFAULT_MODELS = "popularity,repeat,covisitation,sknn,gru4rec,sasrec"
METRICS = ("hr_at_20", "mrr_at_20", "ndcg_at_10", "ndcg_at_20")
# session-rec (Ludewig et al.) on the full RSC15, for context only: a 100k sample is not RSC15.
PUBLISHED_RSC15 = {"sknn": (0.651, 0.287, "V-SKNN"), "gru4rec": (0.649, 0.289, "GRU4Rec"),
                   "sr-gnn": (0.671, 0.314, "SR-GNN")}


@dataclass(frozen=True)
class Dataset:
    format: str
    files: tuple[str, ...]  # under ../shared/data
    window_days: float


DATASETS = {
    "yoochoose": Dataset("yoochoose", ("yoochoose/yoochoose-clicks-100k_train_full.txt",
                                       "yoochoose/yoochoose-clicks-100k_test.txt"), 1.0),
    "diginetica": Dataset("diginetica", ("diginetica/sample_train-item-views.csv",), 7.0),
}


def read_sessions(dataset: Dataset, data_dir: Path):
    """The valid events of the files, as the importer converts them, grouped per log session."""
    from ingest.importers import IMPORTERS
    from training.protocol import LogSession

    events: dict[tuple[str, str], list[tuple[datetime, str]]] = {}
    for name in dataset.files:
        for row in IMPORTERS[dataset.format].read_rows(data_dir / name):
            for line in row.lines:
                if line.reason is not None:
                    continue  # a row ingestion would quarantine
                event = json.loads(line.text)
                key = (event.get("session_id") or event["user_id"], event["user_id"])
                time = datetime.fromisoformat(event["event_time"].replace("Z", "+00:00")).replace(tzinfo=None)
                events.setdefault(key, []).append((time, event["item_id"]))
    sessions = []
    for (session_id, user_id), pairs in sorted(events.items()):
        pairs.sort(key=lambda p: p[0])
        sessions.append(LogSession(session_id, user_id, tuple(i for _, i in pairs), tuple(t for t, _ in pairs)))
    return sessions


def run(dataset_name: str, models: Sequence[str], *, epochs: int, max_minutes: float, data_dir: Path,
        work_dir: Path, command: str, hardware: dict[str, Any], date: str) -> list[dict]:
    from core.settings import Settings
    from training.config import TrainConfig
    from training.protocol import LogFacts, build_split, choose_plan
    from training.train import train_model

    dataset = DATASETS[dataset_name]
    sessions = read_sessions(dataset, data_dir)
    facts = LogFacts.measure(sessions)
    auto = choose_plan(facts)
    plan = choose_plan(facts, "session", dataset.window_days, dataset.window_days)
    split = build_split(sessions, [], 50, plan)
    info = split.info()
    print(f"{dataset_name}: {facts.n_sessions} sessions, {facts.n_events} events; auto protocol: "
          f"{auto.protocol} ({auto.reason}); {info['n_val_examples']} val / {info['n_test_examples']} test "
          f"examples; exclude_seen={split.exclude_seen} ({info['exclude_seen_reason']})")
    settings = Settings(home=work_dir / "home")
    records = []
    for model in models:
        tc = TrainConfig(epochs=epochs, max_train_seconds=max_minutes * 60, progress=False, patience=2)
        result = train_model(settings, split, model, tc, checkpoint_path=work_dir / dataset_name / model / "c.pt")
        vs = "popularity" if model != "popularity" else None
        for metric, value, unit, baseline in [*((k, result.test_metrics[k], "ratio", vs) for k in METRICS),
                                              ("train_seconds", result.train_seconds, "s", None)]:
            records.append(common.record(metric, value, unit, dataset=f"{dataset_name} (session protocol)",
                                         model=model, baseline=baseline, command=command, hardware=hardware, date=date))
    print(f"*{dataset_name}*: {facts.n_sessions:,} sessions, {facts.n_events:,} events over "
          f"{facts.span_days:.0f} days; windows {plan.test_days:g} + {plan.val_days:g} days; "
          f"{info['n_test_sessions']:,} test sessions, {info['n_test_examples']:,} test prefixes.")
    return records


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--dataset", action="append", choices=sorted(DATASETS), help="default: both")
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--max-minutes", type=float, default=3.0, help="training time cap per model")
    parser.add_argument("--data-dir", type=Path, default=common.REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--results", type=Path, default=common.RESULTS_DIR / f"{NAME}.json")
    args = parser.parse_args(argv)
    if not args.data_dir.is_dir():
        parser.error(f"no public data at {args.data_dir} (--data-dir)")
    command = common.command_line(f"benchmarks.{NAME}", list(argv) if argv is not None else sys.argv[1:])
    hardware, date = common.hardware(), common.now_iso()
    work_dir = args.work_dir or common.default_work_dir(NAME)
    records = []
    for name in args.dataset or sorted(DATASETS, reverse=True):
        records += run(name, [m.strip() for m in args.models.split(",") if m.strip()], epochs=args.epochs,
                       max_minutes=args.max_minutes, data_dir=args.data_dir, work_dir=work_dir,
                       command=command, hardware=hardware, date=date)
    return common.finish(NAME, args.results, records)


if __name__ == "__main__":
    raise SystemExit(main())
