"""The index of what is stored: Patient / Study / Series / Instance (SQLAlchemy + Alembic)."""

from radsight.index.db import Database
from radsight.index.models import Instance, Patient, RemoteAE, Series, Study, User

__all__ = ["Database", "Instance", "Patient", "RemoteAE", "Series", "Study", "User"]
