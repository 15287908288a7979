"""Fault rules for tests: transient HTTP errors, low-priority preemption, slow node start.

All off by default. Every random choice comes from one ``random.Random``
seeded with ``seed``, so a run with the same requests in the same order
meets the same faults. Settings come from command-line options or the
``BATCHFLOW_FAULT_*`` environment variables (see the emulator README).
"""

from __future__ import annotations

import os
import random
import threading
from dataclasses import dataclass, field

#: Statuses a transient fault answers with, in the order the seed picks from.
TRANSIENT_STATUSES = (500, 503, 429)


@dataclass
class Faults:
    """The fault rules of one service instance.

    ``http_rate``: fraction (0-1) of authenticated requests answered with a
    transient 500, 503 or 429 before they are handled, so a retry is safe.
    ``preempt_rate``: chance that starting a task on a low-priority node
    preempts that node ``preempt_after`` seconds later (its running tasks
    are requeued); the node comes back ``preempt_downtime`` seconds later.
    ``node_start_delay``: seconds each node spends ``starting``.
    """

    seed: int = 0
    http_rate: float = 0.0
    preempt_rate: float = 0.0
    preempt_after: float = 0.5
    preempt_downtime: float = 2.0
    node_start_delay: float = 0.0
    _random: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        for name in ("http_rate", "preempt_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {value}")
        self._random = random.Random(self.seed)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Faults:
        """Read ``BATCHFLOW_FAULT_SEED``, ``_HTTP_RATE``, ``_PREEMPT_RATE``, ``_PREEMPT_AFTER``,
        ``_PREEMPT_DOWNTIME`` and ``_NODE_START_DELAY``."""
        env = os.environ if environ is None else environ

        def number(name: str, default: float) -> float:
            value = env.get(f"BATCHFLOW_FAULT_{name}")
            return float(value) if value else default

        return cls(
            seed=int(number("SEED", 0)),
            http_rate=number("HTTP_RATE", 0.0),
            preempt_rate=number("PREEMPT_RATE", 0.0),
            preempt_after=number("PREEMPT_AFTER", 0.5),
            preempt_downtime=number("PREEMPT_DOWNTIME", 2.0),
            node_start_delay=number("NODE_START_DELAY", 0.0),
        )

    @property
    def active(self) -> bool:
        return bool(self.http_rate or self.preempt_rate or self.node_start_delay)

    def transient_status(self) -> int | None:
        """The status to fail this request with, or None to handle it."""
        if not self.http_rate:
            return None
        with self._lock:
            if self._random.random() >= self.http_rate:
                return None
            return self._random.choice(TRANSIENT_STATUSES)

    def preempt_now(self) -> bool:
        """Whether the task just started on a low-priority node should see it preempted."""
        if not self.preempt_rate:
            return False
        with self._lock:
            return self._random.random() < self.preempt_rate
