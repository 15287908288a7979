"""Daemon threads that are reused, one per piece of work in progress.

Each run (a task or start task: download, process, upload) needs a thread of its
own for as long as it lasts, however many runs there are. Starting a thread cost
about 0.2 ms of CPU here, a tenth of what the service spends on a no-op task, so
a finished run's thread waits for the next run instead of ending.

Not ``concurrent.futures.ThreadPoolExecutor``: its workers are joined when the
interpreter exits, so a run still downloading when the service stops would hold
up the exit, and a bounded pool would queue runs that Batch says are running.
These threads are daemons, and a new one starts whenever none is idle.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import Any


class Workers:
    """Run each submitted call on an idle worker thread, or on a new one when none is idle."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._count = 0

    def submit(self, target: Callable[..., Any], *args: Any) -> None:
        """Call ``target(*args)`` on a worker thread; an exception it raises is printed, never lost silently."""
        with self._lock:
            worker = self._idle.pop() if self._idle else None
            if worker is None:
                self._count += 1
                worker = _Worker(self, f"{self._name}-{self._count}")
        worker.give(target, args)

    def _rest(self, worker: _Worker) -> None:
        with self._lock:
            self._idle.append(worker)


class _Worker:
    def __init__(self, owner: Workers, name: str) -> None:
        self._owner = owner
        self._ready = threading.Condition(threading.Lock())
        self._work: tuple[Callable[..., Any], tuple[Any, ...]] | None = None
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._started = False

    def give(self, target: Callable[..., Any], args: tuple[Any, ...]) -> None:
        with self._ready:
            self._work = (target, args)
            self._ready.notify()
        if not self._started:
            self._started = True
            self._thread.start()

    def _serve(self) -> None:
        while True:
            with self._ready:
                while self._work is None:
                    self._ready.wait()
                target, args = self._work
                self._work = None
            try:
                target(*args)
            except Exception:  # a worker must survive what it runs; say what happened
                traceback.print_exc()
            self._owner._rest(self)
