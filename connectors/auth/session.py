"""The web UI's login session: a cookie naming the key that logged in, signed with this data directory's
secret, never the key itself.

The cookie reads `<key_id>.<expires unix s>.<hmac-sha256>`. A session lasts `auth.session_max_age_s`; it ends
at once when its key is revoked (the key ring no longer knows the id). The secret is made once per data
directory (`session_secret`, mode 0600): every process serving the same directory accepts the same cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

COOKIE = "tracejudge_session"


def load_secret(data_dir: Path) -> bytes:
    """This data directory's session secret, created on first use."""
    path = data_dir / "session_secret"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


class SessionSigner:
    """Issues and checks session cookie values."""

    def __init__(self, secret: bytes, max_age_s: int) -> None:
        self._secret = secret
        self.max_age_s = max_age_s

    def _mac(self, payload: str) -> str:
        return hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()

    def issue(self, key_id: str) -> str:
        payload = f"{key_id}.{int(time.time()) + self.max_age_s}"
        return f"{payload}.{self._mac(payload)}"

    def key_id(self, value: str) -> str | None:
        """The key id of a valid, unexpired cookie value; else None."""
        payload, _, mac = value.rpartition(".")
        key_id, _, expires = payload.partition(".")
        if not mac or not expires.isdigit() or not hmac.compare_digest(mac, self._mac(payload)):
            return None
        return key_id if int(expires) > time.time() else None
