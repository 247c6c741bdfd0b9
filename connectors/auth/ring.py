"""Every process's view of the API keys: loaded from the key store, polled, swapped in whole.

Verifying a key costs a dict look-up and one sha256 (about a microsecond), never a ClickHouse query: the
ring polls the store's fingerprint every `reload_interval_s` (like the rule registry), so a key created or
revoked in any process takes effect in every process within that interval. A process that creates or
revokes a key refreshes at once.

Authentication is on when `auth.enabled` says so, or (unset) as soon as any key exists, revoked ones
included: revoking the last key must not open the service again.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from connectors.auth.keys import ApiKey, secret_matches, split_key
from dataflow import metrics
from dataflow.errors import TracejudgeError
from dataflow.polling import Poller

logger = logging.getLogger(__name__)


class KeySource(Protocol):
    def fingerprint(self) -> str: ...

    def load(self) -> list[ApiKey]: ...


class KeyRing:
    """The valid keys by id, and whether authentication is on."""

    def __init__(
        self, source: KeySource, enabled: bool | None = None, reload_interval_s: float = 2.0
    ) -> None:
        self._source = source
        self._configured = enabled
        self._fingerprint: str | None = None
        self._valid: dict[str, ApiKey] = {}
        self._any = False
        self._lock = threading.Lock()
        self._poller = Poller("key-reloader", reload_interval_s, self.refresh, self._reload_failed)

    @property
    def enabled(self) -> bool:
        return self._any if self._configured is None else self._configured

    @property
    def has_keys(self) -> bool:
        return self._any

    def refresh(self, force: bool = False) -> bool:
        """Reload when the store changed; return True when a new set was swapped in."""
        with self._lock:
            fingerprint = self._source.fingerprint()
            if fingerprint == self._fingerprint and not force:
                return False
            keys = self._source.load()
            self._valid = {k.key_id: k for k in keys if k.revoked_at is None}
            was = self._any
            self._any = bool(keys)
            self._fingerprint = fingerprint
        metrics.AUTH_KEYS.set(len(self._valid))
        if self._any and not was and self._configured is None:
            logger.info("authentication on: API keys exist")
        return True

    def verify(self, token: str) -> ApiKey | None:
        """The key `token` is, when it is a valid (known, unrevoked, matching) key; else None. Unknown,
        malformed and revoked keys are told apart nowhere (not in the answer, not in the time it takes)."""
        parts = split_key(token)
        if parts is None:
            return None
        key = self._valid.get(parts[0])
        if key is None:
            secret_matches(parts[1], "0" * 64)  # the same work as a known key: no timing hint
            return None
        return key if secret_matches(parts[1], key.hash) else None

    def by_id(self, key_id: str) -> ApiKey | None:
        """A valid key by its id (a UI session names its key by id, signed by this server)."""
        return self._valid.get(key_id)

    def start(self) -> None:
        self._poller.start()

    def stop(self) -> None:
        self._poller.stop()

    def _reload_failed(self, exc: TracejudgeError) -> None:
        logger.warning("reloading API keys failed: %s", exc)
