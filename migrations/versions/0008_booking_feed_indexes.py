"""Indexes for the enterprise's and the user's calendar feeds: each reads the bookings of one
owner in a window of start times (and the feed's change stamp over them). Without them the
user feed scanned the whole bookings table.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 10:00:00
"""

from __future__ import annotations

from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_bookings_enterprise_start', 'bookings', ['enterprise_id', 'starts_at'])
    op.create_index('ix_bookings_user_start', 'bookings', ['user_id', 'starts_at'])


def downgrade() -> None:
    op.drop_index('ix_bookings_user_start', table_name='bookings')
    op.drop_index('ix_bookings_enterprise_start', table_name='bookings')
