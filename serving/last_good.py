"""Serving's local copy of the last version it verified and loaded.

Every time serving loads a registered version, the checkpoint it loaded (the very file whose
digest was checked against the signed decision record) is kept under ``settings.last_good_dir``
with that record and its signature. When the champion cannot be loaded at start (registry
unreachable, alias on a broken or refused version), this copy serves instead of nothing.

Layout: ``last_good_dir`` is a symlink to one complete folder under ``last_good.versions/``
(``checkpoint.pt`` + ``decision.json``, and the version's retrieval index when it has one:
:mod:`registry.ann_index`, checked again on use like the checkpoint). A folder is filled and
synced first, then the link is replaced in one ``rename``; a crash at any point leaves the
previous copy or the new one, never half of either. The copy is verified again when used (the same signature and digest checks as
the registry's), so a file edited on disk is refused like a hand-moved alias.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from core.settings import Settings

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
DECISION = "decision.json"
# Folders neither linked nor being written (a crash, or two processes keeping at once) are
# removed once this old; younger ones may be another process's copy in progress.
STALE_AFTER_S = 3600.0


class LastGoodUnusable(RuntimeError):
    """There is no local copy, or it fails its checks; the message says which (one line, shown
    in ``/health``: no path and no library message, those go to the log)."""


class _StoredRegistry:
    """Answers ``read_record``'s one registry call from the tags kept beside the copy, so the
    copy is checked by the same code (signature, outcome, digest) as a registered version."""

    def __init__(self, name: str, version: str, tags: dict[str, str]):
        self.name, self.version, self.tags = name, version, tags

    def get_model_version(self, name: str, version: str):
        if (name, str(version)) != (self.name, self.version):
            from registry.decision_record import DecisionRefused

            raise DecisionRefused(f"the local copy holds {self.name} v{self.version}, not {name} v{version}")
        return SimpleNamespace(tags=self.tags)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Staged:
    """One folder being filled with a version's checkpoint; :meth:`keep` makes it the copy."""

    def __init__(self, store: "LastGood", folder: Path):
        self.store, self.folder = store, folder
        self.checkpoint = folder / CHECKPOINT

    def take(self, downloaded: Path) -> Path:
        """Copy the downloaded checkpoint (and the retrieval index beside it) into this private
        folder and return the copy: the file verified is the file loaded, whatever later happens
        to the download folder."""
        from registry.ann_index import FILES

        shutil.copyfile(downloaded, self.checkpoint)
        for name in FILES:
            if (downloaded.parent / name).is_file():
                shutil.copyfile(downloaded.parent / name, self.folder / name)
        return self.checkpoint

    def keep(self, version: str, tags: dict[str, str]) -> None:
        from registry.decision_record import RECORD_TAG, SIGNATURE_TAG

        meta = {
            "registered_model_name": self.store.settings.registered_model_name,
            "version": str(version),
            "tags": {RECORD_TAG: tags.get(RECORD_TAG), SIGNATURE_TAG: tags.get(SIGNATURE_TAG)},
            "saved_at": datetime.now(timezone.utc).isoformat(),
        }
        (self.folder / DECISION).write_text(json.dumps(meta, indent=2))
        from registry.ann_index import FILES

        index_files = [self.folder / name for name in FILES if (self.folder / name).is_file()]
        for path in (self.checkpoint, *index_files, self.folder / DECISION, self.folder):
            _fsync(path)
        self.store._link(self.folder)

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class LastGood:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.link = settings.last_good_dir
        self.folders = self.link.parent / f"{self.link.name}.versions"

    def stage(self) -> Staged:
        self.folders.mkdir(parents=True, exist_ok=True)
        return Staged(self, Path(tempfile.mkdtemp(prefix="v", dir=self.folders)))

    def _link(self, folder: Path) -> None:
        previous = self.link.resolve() if self.link.is_symlink() else None
        if self.link.exists() and not self.link.is_symlink():
            shutil.rmtree(self.link)  # a plain folder put there by hand: replaced by the link
        tmp = self.link.with_name(f".{self.link.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(folder.relative_to(self.link.parent))
        os.replace(tmp, self.link)  # the one step that switches copies
        _fsync(self.link.parent)
        if previous is not None and previous != folder.resolve():
            shutil.rmtree(previous, ignore_errors=True)
        self._sweep(keep=folder.resolve())

    def _sweep(self, keep: Path) -> None:
        now = time.time()
        for folder in self.folders.iterdir():
            try:
                if folder.resolve() != keep and now - folder.stat().st_mtime > STALE_AFTER_S:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:
                continue

    def saved(self) -> dict[str, Any] | None:
        """The kept copy's ``decision.json`` (unverified), or None when there is none."""
        try:
            return json.loads((self.link / DECISION).read_text())
        except (OSError, ValueError):
            return None

    def recorded_digest(self) -> str:
        """The checkpoint SHA-256 the kept copy's record names ("" when unreadable); after a
        successful :meth:`load`, the digest of the checkpoint loaded."""
        from registry.decision_record import RECORD_TAG

        try:
            return str(json.loads(self.saved()["tags"][RECORD_TAG])["artifact_sha256"])
        except (KeyError, TypeError, ValueError):
            return ""

    def holds(self, version: str, artifact_sha256: str) -> bool:
        """Whether the copy already is this version with this artifact (nothing to rewrite)."""
        meta = self.saved()
        if not meta or meta.get("version") != str(version):
            return False
        from registry.decision_record import RECORD_TAG

        try:
            record = json.loads(meta["tags"][RECORD_TAG])
        except (KeyError, TypeError, ValueError):
            return False
        return record.get("artifact_sha256") == artifact_sha256

    def load(self):
        """``(Recommender, version)`` from the copy, verified and smoke-tested; raises
        :class:`LastGoodUnusable`."""
        from registry.decision_record import DecisionRefused, verify_servable
        from registry.versions import load_recommender

        meta = self.saved()
        if meta is None:
            log.info("no last good copy at %s", self.link)
            raise LastGoodUnusable("no verified copy of an earlier version on local disk")
        version = str(meta.get("version"))
        checkpoint = self.link / CHECKPOINT
        try:
            registry = _StoredRegistry(str(meta.get("registered_model_name")), version, meta.get("tags") or {})
            verify_servable(self.settings, registry, version, checkpoint)
            model = load_recommender(checkpoint)
            model.smoke_test()
        except DecisionRefused as exc:
            raise LastGoodUnusable(f"the local copy of v{version} is refused: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - whatever broke, the copy cannot serve
            log.error("the local copy of v%s at %s cannot be loaded: %s: %s", version, self.link,
                      type(exc).__name__, exc)
            raise LastGoodUnusable(f"the local copy of v{version} cannot be loaded "
                                   f"({type(exc).__name__})") from exc
        return model, version
