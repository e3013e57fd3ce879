"""Signed decision records: the only thing that makes a registered version servable.

The ``champion`` alias says which version the registry *points at*; anyone who can reach MLflow
can move it. What serving trusts instead is a decision record on the version itself:

* written by the promotion step (:func:`registry.promotion.apply_decision`) for every decision
  (before the alias moves; rewritten as not passed when the move fails; a re-decided serving
  champion that is now rejected keeps the record that made it champion), and by rollback
  (:mod:`registry.rollback`) for the version it moves the alias to (passed when that version's
  own record passed for the same artifact, otherwise only with ``force``, recorded as forced);
* holding the registered name, the version, the MLflow run, the run date, the checks (name and
  outcome), whether it passed, whether a person forced it, and the SHA-256 of the checkpoint
  artifact the checks were run on;
* stored as the version's ``decision_record`` tag and signed (HMAC-SHA256) in its
  ``decision_signature`` tag, with ``RECSYS_DECISION_SIGNING_KEY`` (or, when that is empty, a
  random key generated once under ``$RECSYS_HOME/secrets/``).

:func:`verify_servable` refuses a version without a record, with a record whose signature does
not match (a hand-written or edited tag), a record that did not pass and was not forced, or an
artifact whose digest differs from the recorded one (a swapped checkpoint file).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from core.settings import Settings

RECORD_TAG = "decision_record"
SIGNATURE_TAG = "decision_signature"
KEY_FILE = "decision.key"
# MLflow's SQL store caps a tag value at 5000 characters; a record holds names and booleans
# only (the details live in the decision file), far below that.
MAX_RECORD_CHARS = 4900


class DecisionRefused(RuntimeError):
    """This version must not serve; the message says why (one line)."""


def artifact_digest(path: str | Path) -> str:
    """SHA-256 (hex) of a checkpoint file."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def signing_key(settings: Settings, *, create: bool = True) -> bytes:
    """The configured key, or the local generated one (created on first use, mode 0600, when
    ``create``: only writers create it; a reader without a key gets :class:`DecisionRefused`
    naming the setting, rather than a fresh key that matches no record)."""
    if settings.decision_signing_key:
        return settings.decision_signing_key.encode()
    path = settings.secrets_dir / KEY_FILE
    if not path.exists() and not create:
        raise DecisionRefused(f"no decision signing key: set RECSYS_DECISION_SIGNING_KEY to the key the "
                              f"pipeline signs with, or share {path} with it")
    if not path.exists():
        settings.secrets_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)  # first writer wins; a concurrent one reads the winner's key
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip().encode()


def _canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)


def _signature(settings: Settings, text: str, *, create_key: bool = True) -> str:
    return hmac.new(signing_key(settings, create=create_key), text.encode(), hashlib.sha256).hexdigest()


def build_record(
    settings: Settings, version: str | int, *, action: str, passed: bool, artifact_sha256: str,
    checks: Iterable[dict[str, Any]] = (), run_id: str | None = None, run_date: str = "",
    forced: bool = False,
) -> dict[str, Any]:
    """A record's content (``action``: ``promotion`` or ``rollback``)."""
    return {
        "registered_model_name": settings.registered_model_name,
        "version": str(version),
        "action": action,
        "passed": bool(passed),
        "forced": bool(forced),
        "run_id": run_id,
        "run_date": run_date,
        "checks": [{"name": str(c["name"]), "passed": bool(c["passed"])} for c in checks],
        "artifact_sha256": artifact_sha256,
        "decided_at": datetime.now(timezone.utc).isoformat(),
    }


def write_record(settings: Settings, client, record: dict[str, Any]) -> dict[str, Any]:
    """Store ``record`` and its signature as tags of its version; returns the record."""
    text = _canonical(record)
    if len(text) > MAX_RECORD_CHARS:
        raise ValueError(f"decision record of {len(text)} characters exceeds {MAX_RECORD_CHARS}")
    name, version = record["registered_model_name"], record["version"]
    client.set_model_version_tag(name, version, RECORD_TAG, text)
    client.set_model_version_tag(name, version, SIGNATURE_TAG, _signature(settings, text))
    return record


def read_record(settings: Settings, client, version: str | int) -> dict[str, Any]:
    """The version's record, its signature checked; raises :class:`DecisionRefused`."""
    name = settings.registered_model_name
    tags = client.get_model_version(name, str(version)).tags or {}
    text, signature = tags.get(RECORD_TAG), tags.get(SIGNATURE_TAG)
    if not text:
        raise DecisionRefused(f"{name} v{version} has no decision record: it was never promoted "
                              "by the pipeline nor rolled back to")
    if not signature or not hmac.compare_digest(signature, _signature(settings, text, create_key=False)):
        raise DecisionRefused(f"{name} v{version}: the decision record's signature does not match "
                              "(written or edited outside the pipeline)")
    record = json.loads(text)
    if record.get("registered_model_name") != name or record.get("version") != str(version):
        raise DecisionRefused(f"{name} v{version}: the decision record belongs to "
                              f"{record.get('registered_model_name')} v{record.get('version')}")
    return record


def verify_servable(settings: Settings, client, version: str | int, checkpoint_path: str | Path) -> dict[str, Any]:
    """The record that lets ``version`` serve from ``checkpoint_path``; raises
    :class:`DecisionRefused` when there is none, it failed (unforced), or the artifact changed."""
    record = read_record(settings, client, version)
    name = settings.registered_model_name
    if not (record["passed"] or record["forced"]):
        failed = [c["name"] for c in record.get("checks", []) if not c["passed"]]
        raise DecisionRefused(f"{name} v{version} failed its decision ({', '.join(failed) or 'no check passed'}) "
                              "and no rollback forced it")
    digest = artifact_digest(checkpoint_path)
    if digest != record["artifact_sha256"]:
        raise DecisionRefused(f"{name} v{version}: the artifact's digest {digest[:12]} is not the "
                              f"decided one {str(record['artifact_sha256'])[:12]} (artifact replaced)")
    return record
