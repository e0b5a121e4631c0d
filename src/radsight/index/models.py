"""The index: Patient / Study / Series / Instance, plus users and remote AEs.

Study rows carry the patient attributes too (denormalised) because nearly every
QIDO-RS and C-FIND query is at study level and must not join.
Counters (series and instance counts, ModalitiesInStudy) are kept up to date by
the ingest service so that queries never aggregate.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from radsight.index.types import UTCDateTime


class Base(DeclarativeBase):
    pass


UID = String(64)


class Patient(Base):
    __tablename__ = "patient"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64), default="")
    issuer_of_patient_id: Mapped[str] = mapped_column(String(64), default="")
    patient_name: Mapped[str] = mapped_column(String(324), default="")
    patient_birth_date: Mapped[str] = mapped_column(String(8), default="")
    patient_sex: Mapped[str] = mapped_column(String(16), default="")

    studies: Mapped[list[Study]] = relationship(back_populates="patient")

    __table_args__ = (UniqueConstraint("patient_id", "issuer_of_patient_id", name="uq_patient_id"),)


class Study(Base):
    __tablename__ = "study"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_pk: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    study_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    study_date: Mapped[str] = mapped_column(String(8), default="", index=True)
    study_time: Mapped[str] = mapped_column(String(16), default="")
    accession_number: Mapped[str] = mapped_column(String(16), default="", index=True)
    study_id: Mapped[str] = mapped_column(String(16), default="")
    study_description: Mapped[str] = mapped_column(String(64), default="")
    referring_physician_name: Mapped[str] = mapped_column(String(324), default="")
    # Denormalised patient attributes (see module docstring).
    patient_id: Mapped[str] = mapped_column(String(64), default="", index=True)
    patient_name: Mapped[str] = mapped_column(String(324), default="", index=True)
    patient_birth_date: Mapped[str] = mapped_column(String(8), default="")
    patient_sex: Mapped[str] = mapped_column(String(16), default="")
    specific_character_set: Mapped[str] = mapped_column(String(128), default="")
    modalities_in_study: Mapped[str] = mapped_column(String(128), default="")
    number_of_series: Mapped[int] = mapped_column(Integer, default=0)
    number_of_instances: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)

    patient: Mapped[Patient] = relationship(back_populates="studies")
    series: Mapped[list[Series]] = relationship(back_populates="study")


class Series(Base):
    __tablename__ = "series"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_pk: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    series_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    modality: Mapped[str] = mapped_column(String(16), default="", index=True)
    series_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    series_description: Mapped[str] = mapped_column(String(64), default="")
    series_date: Mapped[str] = mapped_column(String(8), default="")
    series_time: Mapped[str] = mapped_column(String(16), default="")
    body_part_examined: Mapped[str] = mapped_column(String(16), default="")
    performed_procedure_step_start_date: Mapped[str] = mapped_column(String(8), default="")
    performed_procedure_step_start_time: Mapped[str] = mapped_column(String(16), default="")
    number_of_instances: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    study: Mapped[Study] = relationship(back_populates="series")
    instances: Mapped[list[Instance]] = relationship(back_populates="series")


class Instance(Base):
    __tablename__ = "instance"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_pk: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    sop_class_uid: Mapped[str] = mapped_column(UID, default="")
    instance_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    transfer_syntax_uid: Mapped[str] = mapped_column(UID, default="")
    rows: Mapped[int | None] = mapped_column(Integer, nullable=True)
    columns: Mapped[int | None] = mapped_column(Integer, nullable=True)
    bits_allocated: Mapped[int | None] = mapped_column(Integer, nullable=True)
    number_of_frames: Mapped[int | None] = mapped_column(Integer, nullable=True)
    storage_key: Mapped[str] = mapped_column(String(255))
    file_size: Mapped[int] = mapped_column(BigInteger)
    # Byte offset of the Pixel Data element in the stored file (for fast frame access), or None.
    pixel_data_offset: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # DICOM JSON (PS3.18 F.2) of everything but bulk data, filled lazily by WADO-RS metadata.
    metadata_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    received_via: Mapped[str] = mapped_column(String(16), default="")
    calling_ae_title: Mapped[str] = mapped_column(String(16), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    series: Mapped[Series] = relationship(back_populates="instances")


Index("ix_study_date_uid", Study.study_date, Study.study_instance_uid)


class User(Base):
    __tablename__ = "user_account"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32), default="admin")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ApiToken(Base):
    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # SHA-256 of the token: a leaked database does not leak usable tokens.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_pk: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())

    user: Mapped[User] = relationship()


class RemoteAE(Base):
    """A DICOM peer: allowed to associate with us, and a C-MOVE / send destination."""

    __tablename__ = "remote_ae"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ae_title: Mapped[str] = mapped_column(String(16), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(255), default="")


# --- AI engine -------------------------------------------------------------------------


class AIModel(Base):
    """An installed model package (one active version per name)."""

    __tablename__ = "ai_model"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    version: Mapped[str] = mapped_column(String(16))
    task: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64))
    package_dir: Mapped[str] = mapped_column(String(1024))
    metadata_json: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(default=True)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AIJob(Base):
    """One model run on one series (or study): a durable queue entry.

    States: queued -> running -> done | failed (retried with back-off while attempts remain).
    A running job whose lease expired (its worker died) is taken again; results carry UIDs
    derived from the job id, so a retry can never store a second result set.
    """

    __tablename__ = "ai_job"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(UID, index=True)
    series_instance_uid: Mapped[str | None] = mapped_column(UID, nullable=True)
    model_name: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(16))
    model_sha256: Mapped[str] = mapped_column(String(64), default="")
    trigger: Mapped[str] = mapped_column(String(16), default="stable")  # stable | manual | api
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    next_run_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    worker: Mapped[str] = mapped_column(String(128), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    result_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class AIFinding(Base):
    """One finding of one job: what the viewer's findings panel and the worklist show."""

    __tablename__ = "ai_finding"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_pk: Mapped[int] = mapped_column(ForeignKey("ai_job.id"), index=True)
    study_instance_uid: Mapped[str] = mapped_column(UID, index=True)
    series_instance_uid: Mapped[str] = mapped_column(UID, default="")
    model_name: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(64))
    probability: Mapped[float | None] = mapped_column(nullable=True)
    positive: Mapped[bool] = mapped_column(default=False)
    measurements_json: Mapped[str] = mapped_column(Text, default="[]")  # [{name, value, unit}]
    location_json: Mapped[str] = mapped_column(Text, default="{}")  # slice, bbox, point...
    seg_sop_instance_uid: Mapped[str] = mapped_column(UID, default="")
    sr_sop_instance_uid: Mapped[str] = mapped_column(UID, default="")
    pmap_sop_instance_uid: Mapped[str] = mapped_column(UID, default="")
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | accepted | rejected
    decided_by: Mapped[str] = mapped_column(String(64), default="")
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AIRoutingRule(Base):
    """An admin's routing rule (REST ``PUT /api/ai/rules``): which series a model runs on.

    ``rule_json`` holds the declarative rule (``radsight.ai.routing.RoutingRule``); rules
    from the settings file are not stored here.
    """

    __tablename__ = "ai_routing_rule"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    model_name: Mapped[str] = mapped_column(String(64), index=True)
    rule_json: Mapped[str] = mapped_column(Text)


# --- Worklist (radsight.worklist) ------------------------------------------------------


class WorklistStudy(Base):
    """A study's reading workflow: priority, status and the turnaround timestamps.

    ``priority_level`` (0 routine, 1 urgent, 2 critical) is denormalised from the order
    priority, the AI findings and waiting time (``radsight.worklist.priority``) so the
    worklist sorts on an index. ``priority_score`` is the score at the last refresh.
    """

    __tablename__ = "worklist_study"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    order_priority: Mapped[str | None] = mapped_column(String(8), nullable=True)  # STAT | URGENT | ROUTINE
    order_priority_source: Mapped[str] = mapped_column(String(8), default="")  # dicom | user
    ai_level: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ai_score: Mapped[float | None] = mapped_column(nullable=True)  # the deciding finding's probability
    ai_reason: Mapped[str] = mapped_column(String(255), default="")
    ai_model: Mapped[str] = mapped_column(String(64), default="")
    ai_model_version: Mapped[str] = mapped_column(String(16), default="")
    ai_label: Mapped[str] = mapped_column(String(64), default="")
    priority_level: Mapped[int] = mapped_column(Integer, default=0)
    priority_score: Mapped[float] = mapped_column(default=0.0)
    priority_reason: Mapped[str] = mapped_column(String(255), default="")
    status: Mapped[str] = mapped_column(String(16), default="unread")  # unread | in_progress | read
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    claim_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    signed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    signed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    arrived_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ai_result_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    alerted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    first_opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


Index(
    "ix_worklist_order",
    WorklistStudy.status,
    WorklistStudy.priority_level.desc(),
    WorklistStudy.arrived_at,
)
Index("ix_worklist_claim_expiry", WorklistStudy.status, WorklistStudy.claim_expires_at)
Index("ix_worklist_signed_at", WorklistStudy.signed_at)


class WorklistAlert(Base):
    """A critical-finding alert: raised once per study and model label, acknowledged by a user,
    and delivered to the webhook (state in the database, so delivery survives restarts)."""

    __tablename__ = "worklist_alert"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(UID, index=True)
    level: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(255), default="")
    model_name: Mapped[str] = mapped_column(String(64), default="")
    model_version: Mapped[str] = mapped_column(String(16), default="")
    label: Mapped[str] = mapped_column(String(64), default="")
    probability: Mapped[float | None] = mapped_column(nullable=True)
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    webhook_state: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        UniqueConstraint("study_instance_uid", "model_name", "label", name="uq_worklist_alert_finding"),
    )


Index("ix_worklist_alert_webhook", WorklistAlert.webhook_state, WorklistAlert.next_attempt_at)


class WorklistEvent(Base):
    """Append-only log of worklist changes; the live feed (SSE) reads it by id, so it works
    across processes and machines and resumes from ``Last-Event-ID``. Holds no patient data:
    the feed renders the current item when it sends an event."""

    __tablename__ = "worklist_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    type: Mapped[str] = mapped_column(String(32))
    study_instance_uid: Mapped[str] = mapped_column(UID, default="")
    payload_json: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
