"""Move the ``champion`` alias back to an earlier registered version.

    python -m training.rollback --version 3
    python -m training.rollback --to-previous     # the latest earlier version that was champion

The target must exist and must load and answer a smoke request through the same path serving
uses (:func:`training.recommender.load_registered_version`); anything else is refused and the
alias does not move. Every action, done or refused, is recorded as
``$RECSYS_HOME/decisions/rollback-<UTC timestamp>.json`` next to the promotion decisions, and the
target version gets the tags ``decision=rolled_back_to`` and ``rolled_back_at``. A running API
follows within ``RECSYS_CHAMPION_POLL_SECONDS`` (or at once after ``POST /admin/reload``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any

from pipeline.settings import Settings

log = logging.getLogger(__name__)


class RollbackRefused(RuntimeError):
    def __init__(self, record: dict[str, Any]):
        super().__init__(record["reason"])
        self.record = record


def previous_champion(settings: Settings, client=None) -> str | None:
    """The highest version below the current champion that was champion once (promoted or
    rolled back to), or None."""
    from training.recommender import champion_version
    from training.train import mlflow_client

    client = client or mlflow_client(settings)
    current = champion_version(settings, client)
    versions = client.search_model_versions(f"name='{settings.registered_model_name}'")
    earlier = [
        int(v.version) for v in versions
        if (v.tags or {}).get("promoted_at") or (v.tags or {}).get("rolled_back_at")
        or (v.tags or {}).get("decision") == "promoted"
    ]
    if current is not None:
        earlier = [v for v in earlier if v < int(current)]
    return str(max(earlier)) if earlier else None


def _record(settings: Settings, record: dict[str, Any]) -> dict[str, Any]:
    settings.decisions_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    path = settings.decisions_dir / f"rollback-{stamp}.json"
    path.write_text(json.dumps(record, indent=2, default=str))
    return record | {"record_path": str(path)}


def rollback(settings: Settings, version: str | int | None = None, *, to_previous: bool = False,
             reason: str = "") -> dict[str, Any]:
    """Point the champion alias at ``version`` (or the previous champion); raise
    :class:`RollbackRefused` (after recording why) when it does not exist or cannot serve."""
    from mlflow.exceptions import MlflowException

    from training.recommender import ModelLoadError, champion_version, load_registered_version
    from training.train import mlflow_client

    client = mlflow_client(settings)
    name = settings.registered_model_name
    before = champion_version(settings, client)
    if (version is None) == (not to_previous):
        raise ValueError("give exactly one of version or to_previous")
    target = previous_champion(settings, client) if to_previous else str(version).strip()
    record: dict[str, Any] = {
        "action": "rollback", "registered_model_name": name, "requested": "previous" if to_previous else target,
        "target_version": target, "champion_version_before": before, "note": reason,
        "decided_at": datetime.now(timezone.utc).isoformat(),
    }

    def refuse(why: str) -> None:
        full = _record(settings, record | {"done": False, "reason": why, "champion_version_after": before})
        log.error("rollback refused: %s", why)
        raise RollbackRefused(full)

    if target is None:
        refuse("no earlier version was ever champion")
    if not target.isdigit():
        refuse(f"version must be a positive integer, got {target!r}")
    try:
        client.get_model_version(name, target)
    except MlflowException as exc:
        refuse(f"{name} v{target} does not exist ({exc.error_code})")
    if target == before:
        refuse(f"v{target} already is the champion")
    try:
        load_registered_version(settings, target)
    except ModelLoadError as exc:
        refuse(str(exc))

    client.set_registered_model_alias(name, settings.champion_alias, target)
    now = datetime.now(timezone.utc).isoformat()
    client.set_model_version_tag(name, target, "decision", "rolled_back_to")
    client.set_model_version_tag(name, target, "rolled_back_at", now)
    if before is not None:
        client.set_model_version_tag(name, before, "rolled_back_from_at", now)
    after = champion_version(settings, client)
    log.info("champion %s: v%s -> v%s", name, before, after)
    return _record(settings, record | {"done": True, "reason": reason or "manual rollback",
                                       "champion_version_after": after})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Move the champion alias back to an earlier version.")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--version", help="registered model version to serve")
    which.add_argument("--to-previous", action="store_true",
                       help="the latest earlier version that was champion")
    parser.add_argument("--reason", default="", help="why (kept in the record)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    try:
        result = rollback(Settings.from_env(), args.version, to_previous=args.to_previous, reason=args.reason)
    except RollbackRefused as exc:
        print(json.dumps(exc.record, indent=2), file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
