"""Each user's permissions as their last valid token carried them.

Tokens are JWTs the service cannot look up later, so a scheduled export, which runs with no
token, runs with what its owner held when last seen. The API records them on every
authenticated request; a write happens only when they changed, or to refresh `seen_at`
after REFRESH_SECONDS."""

from __future__ import annotations

import threading
import time

from flows.control.connections import pooled

REFRESH_SECONDS = 60.0
# Users remembered per process; past it the memory starts again (a write per user, once).
MAX_REMEMBERED = 10_000


class PermissionStore:
    """Reads and writes of user_permissions, with a per-process memory of the last write."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._written: dict[str, tuple[frozenset[str], float]] = {}
        self._lock = threading.Lock()

    def seen(self, user_id: str, permissions: frozenset[str]) -> None:
        """Record that `user_id` holds exactly `permissions` now."""
        now = time.monotonic()
        with self._lock:
            last = self._written.get(user_id)
        # Another replica may have written since: the refresh bounds how long that lasts.
        if last is not None and last[0] == permissions and now - last[1] < REFRESH_SECONDS:
            return
        with pooled(self.url) as conn:
            conn.execute(
                "INSERT INTO user_permissions (user_id, permissions) VALUES (%s, %s)"
                " ON CONFLICT (user_id) DO UPDATE SET permissions = EXCLUDED.permissions,"
                " seen_at = now()",
                (user_id, sorted(permissions)),
            )
        with self._lock:
            if len(self._written) >= MAX_REMEMBERED:
                self._written.clear()
            self._written[user_id] = (permissions, now)

    def last_seen(self, user_id: str) -> frozenset[str]:
        """What `user_id` held when last seen; nothing for a user never seen."""
        with pooled(self.url) as conn:
            row = conn.execute(
                "SELECT permissions FROM user_permissions WHERE user_id = %s", (user_id,)
            ).fetchone()
        return frozenset(row[0]) if row else frozenset()
