"""Progress lines for long stages: what was just done, how many of how many, and the time left."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Progress:
    """Counts units of one stage; `done` prints a line with an estimate from the units done in this process."""

    total: int
    what: str  # "sweep demo", "unlearn demo"
    show: bool = True
    finished: int = 0
    _timed: int = 0  # units done by this process (the rate is theirs; skipped ones took no time here)
    _t0: float = field(default_factory=time.time)

    def skip(self, n: int = 1) -> None:
        """`n` units were already done (in the store, or by another worker)."""
        self.finished += n

    def done(self, message: str) -> None:
        """One unit done here: print `message` with the count and the time left."""
        self.finished += 1
        self._timed += 1
        if not self.show:
            return
        left = (time.time() - self._t0) / self._timed * max(0, self.total - self.finished)
        eta = f"about {left / 60:.0f} min left" if left >= 60 else f"about {left:.0f} s left"
        print(f"[{time.strftime('%H:%M:%S')}] {self.what}: {message} ({self.finished}/{self.total}, {eta})",
              flush=True)
