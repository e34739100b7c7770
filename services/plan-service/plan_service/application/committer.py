"""Group commit: concurrent writes gathered into one atomic ``Application.save``.

The library's recorders take a table lock per write so the notification log becomes
visible in commit order (PERFORMANCE.md). One lock and one fsync per *batch* instead of per
request is the way up. Each request still gets its own answer:

- two writes to the same aggregate never share a batch (the later one waits for the next);
- if a batch fails (a version conflict, anything), its items are saved one by one, so only
  the item that really conflicts sees the error and the others are stored;
- per-aggregate order is the order of submission.

The batching thread starts on first use, in the process that uses it (safe after a fork).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from prometheus_client import Histogram

log = logging.getLogger("careplan.committer")

# -- metrics (issue 13; exposed at /metrics by careplan_shared.metrics): made at import, which
# in a gunicorn worker is after the fork, with prometheus-client's multiprocess mode set up.
BATCH_SIZE = Histogram("plan_service_group_commit_batch_size", "Writes (requests) committed together in one batch",
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128))
COMMIT_SECONDS = Histogram("plan_service_group_commit_duration_seconds",
                           "Time to store one group-commit batch (with its one-by-one retry if it failed)",
                           buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))

SaveFunction = Callable[..., Any]


class _Item:
    __slots__ = ("objs", "ids", "future", "pending")

    def __init__(self, objs: Sequence[Any]):
        self.objs = objs
        self.ids = frozenset(o.id for o in objs)
        self.future: Future[Any] = Future()
        # Saving pops the pending events; keep them to retry this item alone.
        self.pending = [list(o.pending_events) for o in objs]

    def restore_pending(self) -> None:
        for obj, events in zip(self.objs, self.pending, strict=False):
            obj.pending_events[:] = events


class GroupCommitter:
    def __init__(self, save: SaveFunction, max_batch: int = 64):
        self._save = save
        self._max_batch = max(1, max_batch)
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self.batches = 0
        self.items = 0
        self.on_saved: list[Callable[[], None]] = []  # e.g. wake the relay

    def save(self, *objs: Any, timeout: float = 60.0) -> Any:
        """Save these aggregates atomically (with whatever else shares the batch)."""
        item = _Item(objs)
        with self._cond:
            self._ensure_thread()
            self._queue.append(item)
            self._cond.notify()
        return item.future.result(timeout=timeout)

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
            self._thread.start()

    def _next_batch(self) -> list[_Item]:
        with self._cond:
            while not self._queue:
                self._cond.wait()
            batch: list[_Item] = []
            taken: set[Any] = set()
            deferred: list[_Item] = []
            while self._queue and len(batch) < self._max_batch:
                item = self._queue.popleft()
                if item.ids & taken:
                    deferred.append(item)  # same aggregate: keep order, next batch
                    continue
                batch.append(item)
                taken |= item.ids
            self._queue.extendleft(reversed(deferred))
            return batch

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            self.batches += 1
            self.items += len(batch)
            started = time.perf_counter()  # metrics
            self._save_batch(batch)
            COMMIT_SECONDS.observe(time.perf_counter() - started)  # metrics
            BATCH_SIZE.observe(len(batch))  # metrics
            self._saved()

    def _saved(self) -> None:
        """After a batch committed: tell whoever waits for commits (the relay's wake-up). A
        callback's failure is logged and costs only that wake-up: never this thread."""
        for callback in self.on_saved:
            try:
                callback()
            except Exception as e:  # noqa: BLE001 - see above; the relay polls as a fallback
                log.warning("a commit callback failed", extra={"error_type": type(e).__name__})

    def _save_batch(self, batch: list[_Item]) -> None:
        if len(batch) == 1:
            self._save_one(batch[0])
            return
        try:
            result = self._save(*(o for item in batch for o in item.objs))
        except Exception:  # noqa: BLE001 - not swallowed: each item is saved alone, its own error to its request
            # All-or-nothing failed: find out who really fails by saving one by one.
            log.info("batch failed, retrying items one by one", extra={"batch_size": len(batch)})
            for item in batch:
                item.restore_pending()
                self._save_one(item)
        else:
            for item in batch:
                item.future.set_result(result)

    def _save_one(self, item: _Item) -> None:
        try:
            item.future.set_result(self._save(*item.objs))
        except BaseException as e:  # noqa: BLE001 - handed to the waiting request
            item.future.set_exception(e)
