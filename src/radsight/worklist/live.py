"""The live worklist feed (Server-Sent Events) for many clients without a thread per client.

One ``EventFeed`` per application polls the event table (``events.py``) every
``poll_seconds`` on a worker thread while clients are connected, renders each event once
(the study's current item, or the alert) and hands it to every client's asyncio queue; each
client is an async generator. Because it reads the database, events from AI worker processes
and other servers arrive the same way. A client resumes with ``Last-Event-ID`` (or ``?since=``):
it first reads the events it missed from the table, then follows the shared feed.

Ids are allocated when a row is inserted but become visible at commit, so on PostgreSQL a
lower id can appear after a higher one; the feed stops at a gap and waits up to
``gap_seconds`` for it to fill (a rolled-back insert leaves a gap for good).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import anyio

from radsight.index.models import WorklistAlert
from radsight.worklist import events
from radsight.worklist.alerts import alert_dict
from radsight.worklist.priority import Rules
from radsight.worklist.query import items_for

log = logging.getLogger(__name__)

Rendered = tuple[int, str, str]  # (id, event type, JSON data)
_OVERFLOW: Rendered = (-1, "", "")


def render(session: Any, batch: list[events.Event], rules: Rules) -> list[Rendered]:
    """SSE data for each event: the study's current worklist item, or the alert (with the item)."""
    items = items_for(session, sorted({e.study_instance_uid for e in batch if e.study_instance_uid}), rules)
    out: list[Rendered] = []
    for e in batch:
        item = items.get(e.study_instance_uid)
        if e.type in (events.ALERT, events.ALERT_ACKNOWLEDGED):
            alert = session.get(WorklistAlert, int(e.payload.get("alert_id", 0)))
            data: dict[str, Any] = {"StudyInstanceUID": e.study_instance_uid}
            if alert is not None:
                data.update(alert_dict(alert))
            data["item"] = item
        else:
            data = dict(item) if item is not None else {"StudyInstanceUID": e.study_instance_uid}
            data["event"] = e.payload
        out.append((e.id, e.type, json.dumps(data)))
    return out


def format_sse(rendered: Rendered) -> str:
    event_id, type_, data = rendered
    return f"id: {event_id}\nevent: {type_}\ndata: {data}\n\n"


class EventFeed:
    def __init__(
        self,
        session_factory: Callable[[], Any],
        rules: Rules,
        *,
        poll_seconds: float = 0.5,
        keepalive_seconds: float = 15.0,
        gap_seconds: float = 2.0,
        queue_size: int = 2000,
    ) -> None:
        self._session = session_factory
        self.rules = rules
        self.poll_seconds = poll_seconds
        self.keepalive_seconds = keepalive_seconds
        self.gap_seconds = gap_seconds
        self.queue_size = queue_size
        self._clients: set[asyncio.Queue[Rendered]] = set()
        self._cursor: int | None = None
        self._gap_seen: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def clients(self) -> int:
        return len(self._clients)

    # -- the shared poller ------------------------------------------------------------------
    def _read(self, since: int, upto: int | None = None, *, gaps: bool = True) -> tuple[list[Rendered], int]:
        """Rendered events after ``since`` (at most ``upto``) and the new cursor; blocking."""
        with self._session() as s:
            batch = events.read_since(s, since, 500)
            if upto is not None:
                batch = [e for e in batch if e.id <= upto]
            if gaps:
                batch = self._until_gap(since, batch)
            rendered = render(s, batch, self.rules) if batch else []
        return rendered, (batch[-1].id if batch else since)

    def _until_gap(self, since: int, batch: list[events.Event]) -> list[events.Event]:
        expected = since + 1
        for i, e in enumerate(batch):
            if e.id != expected:
                now = time.monotonic()
                if self._gap_seen is None:
                    self._gap_seen = now
                if now - self._gap_seen < self.gap_seconds:
                    return batch[:i]
            self._gap_seen = None
            expected = e.id + 1
        return batch

    def _latest(self) -> int:
        with self._session() as s:
            return events.latest_id(s)

    async def _start(self) -> None:
        async with self._lock:
            if self._task is None or self._task.done():
                self._cursor = await anyio.to_thread.run_sync(self._latest)
                self._gap_seen = None
                self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while self._clients:
            await asyncio.sleep(self.poll_seconds)
            assert self._cursor is not None
            try:
                rendered, cursor = await anyio.to_thread.run_sync(self._read, self._cursor)
            except Exception:  # a database hiccup: try again at the next poll
                log.warning("worklist event feed: reading events failed; retrying", exc_info=True)
                await asyncio.sleep(self.poll_seconds)
                continue
            self._cursor = cursor
            for r in rendered:
                for q in list(self._clients):
                    try:
                        q.put_nowait(r)
                    except asyncio.QueueFull:
                        # A client this far behind reconnects and resumes from its last id.
                        self._clients.discard(q)
                        with contextlib.suppress(asyncio.QueueFull):
                            q.get_nowait()
                            q.put_nowait(_OVERFLOW)

    # -- one client ---------------------------------------------------------------------------
    async def stream(self, since: int | None = None, *, max_seconds: float | None = None) -> AsyncIterator[str]:
        """SSE text for one client; events after ``since`` first when given."""
        queue: asyncio.Queue[Rendered] = asyncio.Queue(self.queue_size)
        self._clients.add(queue)
        try:
            await self._start()
            assert self._cursor is not None
            yield f"retry: 2000\n: RadSight worklist events from {self._cursor if since is None else since}\n\n"
            last = self._cursor if since is None else since
            while since is not None:  # the backlog, up to what the shared feed has reached
                upto = self._cursor
                rendered, cursor = await anyio.to_thread.run_sync(partial(self._read, last, upto, gaps=False))
                for r in rendered:
                    yield format_sse(r)
                last = cursor
                if not rendered or cursor >= upto:
                    break
            started = time.monotonic()
            while max_seconds is None or time.monotonic() - started < max_seconds:
                try:
                    r = await asyncio.wait_for(queue.get(), self.keepalive_seconds)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if r is _OVERFLOW:
                    return
                if r[0] <= last:
                    continue
                last = r[0]
                yield format_sse(r)
        finally:
            self._clients.discard(queue)
