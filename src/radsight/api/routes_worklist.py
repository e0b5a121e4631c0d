"""REST API of the reading worklist: the prioritised list, claims and sign-off, the live
event stream (Server-Sent Events), critical-finding alerts and turnaround metrics."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse

from radsight.ai.findings import FindingNotFound
from radsight.api.deps import ArchiveDep, CurrentUser, SessionDep, get_current_user
from radsight.api.schemas import Alert, OrderPriorityRequest, SignRequest, Turnaround, WorklistItem, WorklistPage
from radsight.archive import Archive
from radsight.worklist import alerts, query, service
from radsight.worklist.live import EventFeed
from radsight.worklist.turnaround import turnaround as turnaround_report

router = APIRouter(prefix="/api", dependencies=[Depends(get_current_user)], tags=["worklist"])


def _item(archive: Archive, study_instance_uid: str) -> dict[str, Any]:
    with archive.db.session() as s:
        items = query.items_for(s, [study_instance_uid], service.rules_for_archive(archive))
    if study_instance_uid not in items:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"study {study_instance_uid} is not in the worklist")
    return items[study_instance_uid]


@router.get("/worklist", response_model=WorklistPage)
def get_worklist(
    archive: ArchiveDep,
    session: SessionDep,
    status_: Annotated[list[str] | None, Query(alias="status")] = None,
    modality: Annotated[list[str] | None, Query()] = None,
    priority: Annotated[list[str] | None, Query()] = None,
    reader: str | None = None,
    q: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Studies by priority (critical first), then arrival; filters take comma-separated values."""
    try:
        filters = query.parse_filters(status=status_, modality=modality, priority=priority, reader=reader, q=q)
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    total, items = query.worklist(session, filters, service.rules_for_archive(archive), limit=limit, offset=offset)
    return {"total": total, "items": items}


def _feed(request: Request, archive: Archive) -> EventFeed:
    feed: EventFeed | None = getattr(request.app.state, "worklist_feed", None)
    if feed is None:
        feed = EventFeed(archive.db.session, service.rules_for_archive(archive))
        request.app.state.worklist_feed = feed
    return feed


@router.get(
    "/worklist/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}, "description": "Event stream"}},
)
async def worklist_events(
    request: Request,
    archive: ArchiveDep,
    since: Annotated[int | None, Query(ge=0)] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Server-Sent Events: study-added, study-updated, ai-result, status-changed, alert,
    alert-acknowledged. ``id`` is the event id: reconnect with ``Last-Event-ID`` (or ``?since=``)."""
    start = since
    if last_event_id is not None and last_event_id.strip().isdigit():
        start = int(last_event_id.strip())
    return StreamingResponse(
        _feed(request, archive).stream(start, max_seconds=3600),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/worklist/{study_instance_uid}", response_model=WorklistItem)
def get_worklist_item(study_instance_uid: str, archive: ArchiveDep) -> dict[str, Any]:
    return _item(archive, study_instance_uid)


def _run(archive: Archive, study_instance_uid: str, action: Any) -> dict[str, Any]:
    """Run a service call and map its exceptions to HTTP answers; returns the item after it."""
    try:
        action()
    except service.StudyNotInWorklist as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except service.ClaimConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except service.PendingFindings as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except service.NotClaimHolder as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    except FindingNotFound as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    return _item(archive, study_instance_uid)


@router.post("/worklist/{study_instance_uid}/claim", response_model=WorklistItem)
def claim(study_instance_uid: str, archive: ArchiveDep, user: CurrentUser) -> dict[str, Any]:
    """Take the study for reading (409 naming the holder if another reader has it)."""
    return _run(archive, study_instance_uid, lambda: service.claim(archive, study_instance_uid, user.username))


@router.post("/worklist/{study_instance_uid}/heartbeat", response_model=WorklistItem)
def heartbeat(study_instance_uid: str, archive: ArchiveDep, user: CurrentUser) -> dict[str, Any]:
    """Extend the caller's claim by ``claim_timeout_minutes``."""
    return _run(archive, study_instance_uid, lambda: service.heartbeat(archive, study_instance_uid, user.username))


@router.post("/worklist/{study_instance_uid}/release", response_model=WorklistItem)
def release(study_instance_uid: str, archive: ArchiveDep, user: CurrentUser) -> dict[str, Any]:
    """Give the study back to the list (its holder, or an admin)."""
    return _run(
        archive,
        study_instance_uid,
        lambda: service.release(archive, study_instance_uid, user.username, admin=user.role == "admin"),
    )


@router.post("/worklist/{study_instance_uid}/sign", response_model=WorklistItem)
def sign(study_instance_uid: str, body: SignRequest, archive: ArchiveDep, user: CurrentUser) -> dict[str, Any]:
    """Store the decisions on AI findings and sign off; 409 naming the findings still pending."""
    decisions = [service.DecisionInput(d.finding_id, d.status) for d in body.decisions]
    return _run(
        archive, study_instance_uid, lambda: service.sign(archive, study_instance_uid, user.username, decisions)
    )


@router.put("/worklist/{study_instance_uid}/order-priority", response_model=WorklistItem)
def set_order_priority(study_instance_uid: str, body: OrderPriorityRequest, archive: ArchiveDep) -> dict[str, Any]:
    return _run(
        archive,
        study_instance_uid,
        lambda: service.set_order_priority(archive, study_instance_uid, body.order_priority),
    )


@router.get("/alerts", response_model=list[Alert])
def list_alerts(session: SessionDep, unacknowledged: bool = False) -> list[dict[str, Any]]:
    """Critical-finding alerts, newest first, with their webhook delivery state."""
    return [alerts.alert_dict(a) for a in alerts.list_alerts(session, unacknowledged=unacknowledged)]


@router.post("/alerts/{alert_id}/ack", response_model=Alert)
def acknowledge_alert(alert_id: int, session: SessionDep, user: CurrentUser) -> dict[str, Any]:
    try:
        return alerts.alert_dict(alerts.acknowledge(session, alert_id, user.username))
    except alerts.AlertNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


@router.get("/turnaround", response_model=Turnaround)
def get_turnaround(session: SessionDep, since: datetime | None = None, until: datetime | None = None) -> dict[str, Any]:
    """Per-study turnaround times and, per priority, n / median / p90 minutes (arrival to sign, open, AI)."""
    return turnaround_report(session, since, until)
