"""The REST API's request and response models (``/api``): the contract that ``/openapi.json``
publishes and that the viewer's TypeScript types are generated from (``viewer/src/api/schema.d.ts``,
see ``radsight.api.openapi``).

The services build plain dicts (``worklist.query.item_dict``, ``ai.findings.finding_dict``,
``worklist.alerts.alert_dict``, ``worklist.turnaround.turnaround``, ``ai.jobs.JobView``); the
``TypedDict`` models here describe them field for field, in the same order, so validating a dict and
serialising it gives the same JSON. They are TypedDicts, not BaseModels, because a dict validates
into a dict without building model objects: the worklist answers with up to 1,000 items.
Times are the ISO 8601 strings the services format (:data:`IsoTime`), passed through unchanged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from typing_extensions import TypedDict

from radsight.ai.package import ModelMetadata
from radsight.ai.routing import RoutingRule

IsoTime = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
"""An ISO 8601 time as the service formatted it (kept a string: re-parsing would change its form)."""
Number = Annotated[int | float, WithJsonSchema({"type": "number"})]
"""A number that keeps its JSON form (``3``, not ``3.0``)."""

Priority = Literal["routine", "urgent", "critical"]
ReadStatus = Literal["unread", "in_progress", "read"]
OrderPriority = Literal["STAT", "URGENT", "ROUTINE"]
FindingStatus = Literal["pending", "accepted", "rejected"]
JobState = Literal["queued", "running", "done", "failed"]
JobTrigger = Literal["stable", "manual", "api"]
WebhookState = Literal["pending", "delivered", "failed"]

# --- authentication and administration -------------------------------------------------------


class TokenRequest(BaseModel):
    username: str
    password: str


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Seconds until the token expires")


class UserIn(BaseModel):
    username: str
    password: str
    role: str = Field(default="viewer", description="admin, radiologist, technologist or viewer")


class UserOut(BaseModel):
    username: str
    role: str


class RemoteAEIn(BaseModel):
    ae_title: str = Field(max_length=16)
    host: str
    port: int = Field(gt=0, lt=65536)
    description: str = ""


class RemoteAEOut(RemoteAEIn):
    pass


# --- AI models and routing rules --------------------------------------------------------------


class ModelOut(BaseModel):
    name: str
    version: str
    task: str
    sha256: str
    enabled: bool
    added_at: datetime
    metadata: ModelMetadata


class ModelDetail(ModelOut):
    model_card: str | None = Field(description="The package's model card (Markdown), if it has one")


MAX_RULES = 1000
"""Most stored routing rules (each is checked against every stable series)."""


class RulesIn(BaseModel):
    rules: list[RoutingRule] = Field(max_length=MAX_RULES)


class RulesOut(RulesIn):
    settings_rules: list[RoutingRule] = Field(
        description="Read-only here: from the settings (TOML ``[[ai_rules]]`` / ``RADSIGHT_AI_RULES``)"
    )


# --- AI jobs -----------------------------------------------------------------------------------


class RunRequest(BaseModel):
    model: str | None = Field(default=None, description="Run only this installed model (default: every matching one)")


class JobResult(TypedDict):
    """The result instances a done job stored (empty strings: none of that kind)."""

    seg_sop_instance_uid: str
    sr_sop_instance_uid: str
    pmap_sop_instance_uid: str
    result_series_uids: list[str]


class Job(TypedDict):
    """An AI job (``ai.jobs.JobView``)."""

    id: int
    study_instance_uid: str
    series_instance_uid: str | None
    model: str
    version: str
    trigger: JobTrigger
    state: JobState
    attempts: int
    max_attempts: int
    error: str
    worker: str
    created_at: IsoTime
    started_at: IsoTime | None
    finished_at: IsoTime | None
    next_run_at: Annotated[IsoTime | None, Field(description="When a queued job runs next; null otherwise")]
    result: JobResult | None


class RunResponse(TypedDict):
    job_ids: list[int]
    jobs: list[Job]


# --- AI findings -------------------------------------------------------------------------------


class Measurement(TypedDict):
    name: str
    value: Number
    unit: Annotated[str, Field(description="e.g. mL, HU, voxels, 1")]


class FindingLocation(TypedDict, total=False):
    """Where a finding is; each key only where the task gives it (a JSON column: other keys pass)."""

    __pydantic_config__ = ConfigDict(extra="allow")  # type: ignore[misc]

    series_instance_uid: str
    sop_instance_uid: str
    frame: int
    slice_index: int
    bbox: list[Number]
    point: list[Number]
    bbox3d: list[Number]
    centre_patient: list[Number]


class DecisionRequest(BaseModel):
    status: FindingStatus


class Finding(TypedDict):
    """An AI finding and the reader's decision on it (``ai.findings.finding_dict``)."""

    id: int
    job_id: int
    study_instance_uid: str
    series_instance_uid: str
    model: str
    model_version: str
    label: str
    probability: float | None
    positive: bool
    measurements: list[Measurement]
    location: FindingLocation
    status: FindingStatus
    decided_by: str | None
    decided_at: IsoTime | None
    created_at: IsoTime
    seg_sop_instance_uid: str | None
    seg_series_instance_uid: str | None
    sr_sop_instance_uid: str | None
    sr_series_instance_uid: str | None
    pmap_sop_instance_uid: str | None
    pmap_series_instance_uid: str | None


# --- worklist ----------------------------------------------------------------------------------


class Decision(BaseModel):
    finding_id: int
    status: Literal["accepted", "rejected"]


MAX_DECISIONS = 1000
"""Most decisions one sign-off carries (a study's AI findings are a few per model run)."""


class SignRequest(BaseModel):
    decisions: list[Decision] = Field(default=[], max_length=MAX_DECISIONS)


class OrderPriorityRequest(BaseModel):
    order_priority: OrderPriority | None


class AISummary(TypedDict):
    """The AI finding that decided the study's AI priority."""

    level: Priority
    model: str
    model_version: str
    label: str
    probability: float | None


class AlertSummary(TypedDict):
    """The study's oldest unacknowledged alert, else its newest acknowledged one."""

    id: int
    level: Priority
    raised_at: IsoTime
    acknowledged_at: IsoTime | None
    acknowledged_by: str | None


class WorklistItem(TypedDict):
    """One study as the worklist shows it (``worklist.query.item_dict``)."""

    StudyInstanceUID: str
    priority: Priority
    score: float
    reason: str
    status: ReadStatus
    claimed_by: str | None
    claimed_at: IsoTime | None
    claim_expires_at: IsoTime | None
    signed_by: str | None
    signed_at: IsoTime | None
    arrived_at: IsoTime
    order_priority: OrderPriority | None
    PatientName: str
    PatientID: str
    StudyDate: str
    ModalitiesInStudy: list[str]
    StudyDescription: str
    AccessionNumber: str
    NumberOfStudyRelatedSeries: int
    NumberOfStudyRelatedInstances: int
    ai: AISummary | None
    alert: AlertSummary | None


class WorklistPage(TypedDict):
    total: Annotated[int, Field(description="Items matching the filters, all pages")]
    items: list[WorklistItem]


class WebhookDelivery(TypedDict):
    state: WebhookState
    attempts: int
    next_attempt_at: IsoTime | None
    last_error: str | None
    delivered_at: IsoTime | None


class Alert(TypedDict):
    """A critical-finding alert and its webhook delivery (``worklist.alerts.alert_dict``)."""

    id: int
    StudyInstanceUID: str
    level: Priority
    reason: str
    model: str
    model_version: str
    label: str
    probability: float | None
    raised_at: IsoTime
    acknowledged_at: IsoTime | None
    acknowledged_by: str | None
    webhook: WebhookDelivery


# --- turnaround --------------------------------------------------------------------------------


class TurnaroundMinutes(TypedDict):
    arrival_to_ai: float | None
    arrival_to_alert: float | None
    arrival_to_open: float | None
    arrival_to_sign: float | None


class TurnaroundStudy(TypedDict):
    StudyInstanceUID: str
    priority: Priority
    order_priority: OrderPriority | None
    status: ReadStatus
    arrived_at: IsoTime
    ai_result_at: IsoTime | None
    alerted_at: IsoTime | None
    first_opened_at: IsoTime | None
    signed_at: IsoTime | None
    signed_by: str | None
    minutes: TurnaroundMinutes


class TurnaroundStat(TypedDict):
    n: int
    median: float | None
    p90: float | None


class TurnaroundLevel(TypedDict):
    studies: int
    arrival_to_sign: TurnaroundStat
    arrival_to_open: TurnaroundStat
    arrival_to_ai: TurnaroundStat


class TurnaroundSummary(TypedDict):
    critical: TurnaroundLevel
    urgent: TurnaroundLevel
    routine: TurnaroundLevel


class Turnaround(TypedDict):
    """Studies that arrived in [since, until), oldest first, and per priority n / median / p90."""

    since: IsoTime | None
    until: IsoTime | None
    unit: Literal["minutes"]
    summary: TurnaroundSummary
    studies: list[TurnaroundStudy]
