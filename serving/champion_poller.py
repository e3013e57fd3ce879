"""Following the registry's champion without a restart.

A daemon thread asks the registry every ``RECSYS_CHAMPION_POLL_SECONDS`` which version carries
the ``champion`` alias (one cheap metadata call). When it changed, or when the model served is
not the champion (``degraded``: the last good local copy after a start without the registry),
the service downloads the version, checks it against its signed decision record, loads and
smoke-tests it, and only then swaps it in (one atomic assignment; see :mod:`serving.champion`).
A version that fails is refused, logged and counted (``recsys_model_reloads_total{outcome=
"refused"}``, ``recsys_champion_refused{version}``) and the old one keeps serving. The poller
retries a refused version only when its decision record tags change (a rollback that forces
it); ``POST /admin/reload`` (called after a promotion or a rollback) checks at once and retries
it. A registry that cannot be reached is asked again on the next poll.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class ChampionFollower:
    def __init__(self, service, interval_s: float):
        self.service = service
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="champion-follower", daemon=True)

    def start(self) -> "ChampionFollower":
        if self.interval_s > 0:
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.service.reload_champion()
            except Exception:  # noqa: BLE001 - never let the poller die
                log.exception("champion poll failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
