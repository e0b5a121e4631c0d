"""ai routing rules

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 22:55:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ai_routing_rule",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(length=64), nullable=False),
        sa.Column("rule_json", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ai_routing_rule", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ai_routing_rule_model_name"), ["model_name"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ai_routing_rule", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ai_routing_rule_model_name"))
    op.drop_table("ai_routing_rule")
