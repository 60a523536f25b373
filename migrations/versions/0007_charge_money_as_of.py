"""Settlements read a charge's money from the charge: ``charges.money_as_of`` (every succeeded
payment and refund of the charge succeeded by then, so its paid and refunded sums hold from
then on), kept by the payments ledger and filled in here from the rows; on PostgreSQL a
covering index of what a settlement reads of the service charges.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 09:00:00
"""

from __future__ import annotations

import advanced_alchemy.types
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# Known only where the charge's sums are the sums of its succeeded rows and each of those rows
# has a time: then the latest of those times (or the charge's creation, if none).
_BACKFILL = """
UPDATE charges SET money_as_of = CASE
  WHEN EXISTS (SELECT 1 FROM payments p WHERE p.charge_id = charges.id AND p.status = 'succeeded' AND p.succeeded_at IS NULL)
    OR EXISTS (SELECT 1 FROM refunds r WHERE r.charge_id = charges.id AND r.status = 'succeeded' AND r.succeeded_at IS NULL)
    OR paid_fen <> (SELECT coalesce(sum(p.amount_received_fen), 0) FROM payments p WHERE p.charge_id = charges.id AND p.status = 'succeeded')
    OR refunded_fen <> (SELECT coalesce(sum(r.amount_fen), 0) FROM refunds r WHERE r.charge_id = charges.id AND r.status = 'succeeded')
  THEN NULL
  ELSE {latest}(created_at,
    coalesce((SELECT max(p.succeeded_at) FROM payments p WHERE p.charge_id = charges.id AND p.status = 'succeeded'), created_at),
    coalesce((SELECT max(r.succeeded_at) FROM refunds r WHERE r.charge_id = charges.id AND r.status = 'succeeded'), created_at))
END
"""


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    with op.batch_alter_table('charges', schema=None) as batch_op:
        batch_op.add_column(sa.Column('money_as_of', advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True))
    op.execute(_BACKFILL.format(latest="greatest" if dialect == "postgresql" else "max"))
    if dialect == "postgresql":
        op.create_index(
            "ix_charges_settlement", "charges", ["service_date"],
            postgresql_include=["enterprise_id", "resource_id", "id", "paid_fen", "refunded_fen", "money_as_of"],
            postgresql_where=sa.text("kind = 'service' AND status <> 'void'"),
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_charges_settlement", table_name="charges")
    with op.batch_alter_table('charges', schema=None) as batch_op:
        batch_op.drop_column('money_as_of')
