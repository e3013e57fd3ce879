"""Move the ``champion`` alias back to an earlier registered version.

    python -m registry.rollback --version 3
    python -m registry.rollback --to-previous     # the latest earlier version that was champion
    python -m registry.rollback --version 4 --force --reason "..."   # one that never passed

The target must exist and must load and answer a smoke request through the same path serving
uses; anything else is refused and the alias does not move. The target must also hold a signed
decision record that passed (:mod:`registry.decision_record`) for the very checkpoint it has now:
a version that was rejected, never decided, or whose artifact changed since is refused unless
``--force`` (``force=True``) is given, which is logged as a loud warning and recorded as forced.
The target gets a signed ``rollback`` record (passed when its earlier record passed, forced
otherwise) BEFORE the alias moves, so serving, which loads only versions with such a record,
never sees the alias on a version without one.

Every action, done or refused, is recorded as ``$RECSYS_HOME/decisions/rollback-<UTC
timestamp>.json`` next to the promotion decisions, and the target version gets the tags
``decision=rolled_back_to`` and ``rolled_back_at``. A running API follows within
``RECSYS_CHAMPION_POLL_SECONDS`` (or at once after ``POST /admin/reload``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any

from core.settings import Settings

log = logging.getLogger(__name__)


class RollbackRefused(RuntimeError):
    def __init__(self, record: dict[str, Any]):
        super().__init__(record["reason"])
        self.record = record


def previous_champion(settings: Settings, client=None) -> str | None:
    """The highest version below the current champion that was champion once (promoted or
    rolled back to), or None."""
    from registry.versions import champion_version
    from training.tracking import mlflow_client

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


def _passing_record(settings: Settings, client, version: str, digest: str) -> tuple[dict[str, Any] | None, str]:
    """``version``'s record when it passed for the checkpoint whose SHA-256 is ``digest``;
    else (None, why not)."""
    from registry.decision_record import DecisionRefused, read_record

    try:
        record = read_record(settings, client, version)
    except DecisionRefused as exc:
        return None, str(exc)
    if not record.get("passed"):
        how = "was forced, never passed" if record.get("forced") else "did not pass"
        return None, f"v{version}'s decision record ({record.get('action')}) {how}"
    if record.get("artifact_sha256") != digest:
        return None, (f"v{version}'s checkpoint changed since its decision (sha256 "
                      f"{str(record.get('artifact_sha256'))[:12]} -> {digest[:12]})")
    return record, ""


def _restore(client, name: str, version: str, tags: dict[str, str]) -> None:
    """Put ``version``'s decision-record tags back as they were (``tags``: the earlier ones)."""
    from registry.decision_record import RECORD_TAG, SIGNATURE_TAG

    for key in (RECORD_TAG, SIGNATURE_TAG):
        if key in tags:
            client.set_model_version_tag(name, version, key, tags[key])
        else:
            client.delete_model_version_tag(name, version, key)


def rollback(settings: Settings, version: str | int | None = None, *, to_previous: bool = False,
             reason: str = "", force: bool = False) -> dict[str, Any]:
    """Point the champion alias at ``version`` (or the previous champion); raise
    :class:`RollbackRefused` (after recording why) when it does not exist, cannot serve, or has
    no passing decision record and ``force`` is not set."""
    from mlflow.exceptions import MlflowException

    from registry.decision_record import RECORD_TAG, SIGNATURE_TAG, artifact_digest, build_record, write_record
    from registry.versions import champion_version, download_registered_checkpoint, load_recommender
    from training.tracking import mlflow_client

    client = mlflow_client(settings)
    name = settings.registered_model_name
    before = champion_version(settings, client)
    if (version is None) == (not to_previous):
        raise ValueError("give exactly one of version or to_previous")
    target = previous_champion(settings, client) if to_previous else str(version).strip()
    record: dict[str, Any] = {
        "action": "rollback", "registered_model_name": name, "requested": "previous" if to_previous else target,
        "target_version": target, "champion_version_before": before, "note": reason, "force": bool(force),
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
        registered = client.get_model_version(name, target)
    except MlflowException as exc:
        refuse(f"{name} v{target} does not exist ({exc.error_code})")
    if target == before:
        refuse(f"v{target} already is the champion")
    try:
        # The file whose digest is recorded is the file that was loaded and smoke-tested.
        checkpoint = download_registered_checkpoint(settings, target, client)
        digest = artifact_digest(checkpoint)
        load_recommender(checkpoint).smoke_test()
    except Exception as exc:  # noqa: BLE001 - whatever broke, this version cannot serve
        refuse(f"{name} v{target} cannot be loaded: {type(exc).__name__}: {exc}")
    earlier, why_not = _passing_record(settings, client, target, digest)
    if earlier is None and not force:
        refuse(f"{why_not}; only a version that passed its checks is rolled back to "
               "(--force to serve it anyway)")

    if earlier is not None:
        signed = build_record(settings, target, action="rollback", passed=True, artifact_sha256=digest,
                              checks=earlier.get("checks", []), run_id=earlier.get("run_id") or registered.run_id,
                              run_date=earlier.get("run_date", ""))
    else:
        log.warning("FORCED ROLLBACK of %s to v%s, which has no passing decision record (%s): it is "
                    "served although it never passed its checks. Reason given: %s",
                    name, target, why_not, reason or "(none)")
        signed = build_record(settings, target, action="rollback", passed=False, forced=True,
                              artifact_sha256=digest, run_id=registered.run_id,
                              checks=[{"name": "passing_decision_record", "passed": False}])
    # Record first, then the alias: serving never sees the alias on a version without a record.
    tags_before = dict(registered.tags or {})
    write_record(settings, client, signed)
    try:
        client.set_registered_model_alias(name, settings.champion_alias, target)
    except Exception:
        if champion_version(settings, client) != target:
            _restore(client, name, target, {k: v for k, v in tags_before.items() if k in (RECORD_TAG, SIGNATURE_TAG)})
        raise
    now = datetime.now(timezone.utc).isoformat()
    client.set_model_version_tag(name, target, "decision", "forced_rollback_to" if earlier is None else "rolled_back_to")
    client.set_model_version_tag(name, target, "rolled_back_at", now)
    if before is not None:
        client.set_model_version_tag(name, before, "rolled_back_from_at", now)
    after = champion_version(settings, client)
    log.info("champion %s: v%s -> v%s", name, before, after)
    return _record(settings, record | {
        "done": True, "forced": earlier is None, "reason": reason or "manual rollback",
        "forced_because": why_not or None, "champion_version_after": after, "decision_record": signed,
    })


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Move the champion alias back to an earlier version.")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--version", help="registered model version to serve")
    which.add_argument("--to-previous", action="store_true",
                       help="the latest earlier version that was champion")
    parser.add_argument("--reason", default="", help="why (kept in the record)")
    parser.add_argument("--force", action="store_true",
                        help="serve a version that has no passing decision record (recorded as forced)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    try:
        result = rollback(Settings.from_env(), args.version, to_previous=args.to_previous, reason=args.reason,
                          force=args.force)
    except RollbackRefused as exc:
        print(json.dumps(exc.record, indent=2), file=sys.stderr)
        print(f"rollback refused: {exc}", file=sys.stderr)
        return 1
    if result["forced"]:
        print(f"WARNING: forced rollback: v{result['target_version']} never passed its checks "
              f"({result['forced_because']}); it serves now", file=sys.stderr)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
