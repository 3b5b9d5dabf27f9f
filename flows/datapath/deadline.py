"""A time limit on a whole export: checked between chunks, and bounding every read."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from flows.control.errors import SourceTimeout


@dataclass(frozen=True)
class Deadline:
    """The monotonic time an export must end by, and what its user is told past it."""

    at: float
    message: str

    @classmethod
    def after(cls, seconds: float, message: str) -> Deadline:
        """A deadline `seconds` from now."""
        return cls(time.monotonic() + seconds, message)

    def remaining(self) -> float:
        """Seconds left; zero or less once it has passed."""
        return self.at - time.monotonic()

    def expired(self) -> bool:
        """Whether it has passed."""
        return self.remaining() <= 0

    def error(self) -> SourceTimeout:
        """The error an export past its deadline ends with."""
        return SourceTimeout(self.message)

    def check(self) -> None:
        """Raise the deadline's SourceTimeout once it has passed."""
        if self.expired():
            raise self.error()

    def read_ms(self, statement_timeout_seconds: float) -> int | None:
        """The time left in ms for a read starting now, if shorter than the usual timeout."""
        # Past the deadline no read starts at all.
        self.check()
        left = self.remaining()
        if left >= statement_timeout_seconds:
            return None
        # Rounded up: a read the server stops has run past the deadline, never short of it.
        return max(1, math.ceil(left * 1000))
