"""Group commit: the instances that arrive together (concurrent STOW-RS requests, C-STORE
associations, import threads) share one index transaction, so one commit and one fsync of
the database log; each caller returns only after the commit that holds its item.

Written here because neither SQLAlchemy nor the database drivers batch commits from several
threads; PostgreSQL's ``commit_delay`` groups only the WAL flushes of separate transactions
and SQLite has nothing like it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["GroupCommit", "Pending"]


@dataclass(slots=True, eq=False)  # compared by identity: the queue looks items up
class Pending:
    """One caller's item in the queue; the commit function sets ``result`` or ``error``."""

    result: object = None
    error: BaseException | None = None
    # Held from queueing until the caller may go on (committed, or handed the lead); released
    # by the leader. Only a caller that waits gets one (a plain lock, the cheapest to wait on).
    done: Any = None
    lead: bool = False


_P = TypeVar("_P", bound=Pending)


class GroupCommit(Generic[_P]):
    """Group commit without a thread of its own: the first caller to find no commit in
    progress leads; it takes everything queued meanwhile (up to ``max_batch``) and commits it
    as one batch with ``commit``. Then, if more arrived, it hands the lead to the oldest
    waiting caller and returns; the others wake when the batch holding their item is committed.

    ``commit(batch)`` records each item's outcome in its ``result`` or ``error``; an exception
    it raises becomes the error of every item of the batch that has neither.
    """

    def __init__(self, commit: Callable[[list[_P]], None], max_batch: int = 64) -> None:
        self._commit = commit
        self._max = max_batch
        self._lock = threading.Lock()
        self._queue: list[_P] = []
        self._leading = False

    def submit(self, item: _P) -> object:
        """Queue ``item``, return its ``result`` once committed (or raise its ``error``)."""
        with self._lock:
            self._queue.append(item)
            lead = not self._leading
            self._leading = True
            if not lead:
                item.done = threading.Lock()
                item.done.acquire()
        if not lead:
            item.done.acquire()
            if item.lead:  # handed the lead: our own item is still queued
                self._drain(item)
        else:
            self._drain(item)
        if item.error is not None:
            raise item.error
        return item.result

    def _drain(self, own: _P) -> None:
        """Commit batches until ``own`` is committed, then pass the lead on (or give it up)."""
        while True:
            with self._lock:
                batch, self._queue = self._queue[: self._max], self._queue[self._max :]
            try:
                self._commit(batch)
            except BaseException as exc:  # commit records per-item errors; this is a last resort
                for b in batch:
                    if b.error is None and b.result is None:
                        b.error = exc
            for b in batch:
                if b is not own:
                    b.done.release()
            if own in batch:
                break
        with self._lock:
            if self._queue:
                nxt = self._queue[0]
                nxt.lead = True
                nxt.done.release()
            else:
                self._leading = False
