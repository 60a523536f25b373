"""Tokens of private calendar feeds (user, enterprise, unit).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 04:38:40.524486
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
import advanced_alchemy.types


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('feed_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('owner_kind', sa.String(length=12), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
    sa.Column('revoked_at', advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True),
    sa.CheckConstraint("owner_kind IN ('user', 'enterprise', 'unit')", name=op.f('ck_feed_tokens_owner_kind_known')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_feed_tokens_created_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_feed_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_feed_tokens_token_hash'))
    )
    with op.batch_alter_table('feed_tokens', schema=None) as batch_op:
        batch_op.create_index('ix_feed_tokens_owner', ['owner_kind', 'owner_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('feed_tokens', schema=None) as batch_op:
        batch_op.drop_index('ix_feed_tokens_owner')

    op.drop_table('feed_tokens')
