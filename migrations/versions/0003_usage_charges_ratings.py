"""Usage logs (append-only), agent keys, charges and ratings; peak hours, rounding and no-show fees.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 03:40:25.135076
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
import advanced_alchemy.types


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('agent_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('resource_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
    sa.Column('last_used_at', advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True),
    sa.Column('revoked_at', advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_agent_keys_created_by_id_users')),
    sa.ForeignKeyConstraint(['resource_id'], ['resources.id'], name=op.f('fk_agent_keys_resource_id_resources'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_agent_keys')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_agent_keys_key_hash'))
    )
    with op.batch_alter_table('agent_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_agent_keys_resource_id'), ['resource_id'], unique=False)

    op.create_table('ratings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('booking_id', sa.Integer(), nullable=True),
    sa.Column('usage_session_id', sa.Integer(), nullable=True),
    sa.Column('resource_id', sa.Integer(), nullable=False),
    sa.Column('enterprise_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('stars', sa.SmallInteger(), nullable=False),
    sa.Column('comment', sa.String(length=2000), nullable=False),
    sa.Column('created_at', advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
    sa.CheckConstraint('stars BETWEEN 1 AND 5', name=op.f('ck_ratings_stars_range')),
    sa.ForeignKeyConstraint(['booking_id'], ['bookings.id'], name=op.f('fk_ratings_booking_id_bookings')),
    sa.ForeignKeyConstraint(['enterprise_id'], ['enterprises.id'], name=op.f('fk_ratings_enterprise_id_enterprises')),
    sa.ForeignKeyConstraint(['resource_id'], ['resources.id'], name=op.f('fk_ratings_resource_id_resources')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_ratings_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ratings')),
    sa.UniqueConstraint('booking_id', name='uq_ratings_booking_id'),
    sa.UniqueConstraint('usage_session_id', name='uq_ratings_usage_session_id')
    )
    with op.batch_alter_table('ratings', schema=None) as batch_op:
        batch_op.create_index('ix_ratings_resource', ['resource_id'], unique=False)

    op.create_table('usage_logs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('resource_id', sa.Integer(), nullable=False),
    sa.Column('booking_id', sa.Integer(), nullable=True),
    sa.Column('enterprise_id', sa.Integer(), nullable=True),
    sa.Column('started_at', advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
    sa.Column('ended_at', advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True),
    sa.Column('samples', sa.Integer(), nullable=False),
    sa.Column('operator', sa.String(length=100), nullable=False),
    sa.Column('mode', sa.String(length=20), nullable=False),
    sa.Column('source', sa.String(length=10), nullable=False),
    sa.Column('supersedes_id', sa.Integer(), nullable=True),
    sa.Column('session_id', sa.Integer(), nullable=True),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('note', sa.String(length=500), nullable=False),
    sa.Column('idempotency_key', sa.String(length=100), nullable=True),
    sa.Column('agent_key_id', sa.Integer(), nullable=True),
    sa.Column('recorded_by_id', sa.Integer(), nullable=True),
    sa.Column('recorded_at', advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
    sa.CheckConstraint("mode IN ('self_operated', 'staff_operated')", name=op.f('ck_usage_logs_mode_known')),
    sa.CheckConstraint("source IN ('manager', 'self', 'agent', 'walk_in')", name=op.f('ck_usage_logs_source_known')),
    sa.CheckConstraint('ended_at IS NULL OR ended_at > started_at', name=op.f('ck_usage_logs_ends_after_start')),
    sa.CheckConstraint('samples >= 0', name=op.f('ck_usage_logs_samples_not_negative')),
    sa.ForeignKeyConstraint(['agent_key_id'], ['agent_keys.id'], name=op.f('fk_usage_logs_agent_key_id_agent_keys')),
    sa.ForeignKeyConstraint(['booking_id'], ['bookings.id'], name=op.f('fk_usage_logs_booking_id_bookings')),
    sa.ForeignKeyConstraint(['enterprise_id'], ['enterprises.id'], name=op.f('fk_usage_logs_enterprise_id_enterprises')),
    sa.ForeignKeyConstraint(['recorded_by_id'], ['users.id'], name=op.f('fk_usage_logs_recorded_by_id_users')),
    sa.ForeignKeyConstraint(['resource_id'], ['resources.id'], name=op.f('fk_usage_logs_resource_id_resources')),
    sa.ForeignKeyConstraint(['supersedes_id'], ['usage_logs.id'], name=op.f('fk_usage_logs_supersedes_id_usage_logs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_usage_logs')),
    sa.UniqueConstraint('resource_id', 'idempotency_key', name='uq_usage_logs_resource_idempotency'),
    sa.UniqueConstraint('supersedes_id', name='uq_usage_logs_supersedes_id')
    )
    with op.batch_alter_table('usage_logs', schema=None) as batch_op:
        batch_op.create_index('ix_usage_logs_booking', ['booking_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_usage_logs_enterprise_id'), ['enterprise_id'], unique=False)
        batch_op.create_index('ix_usage_logs_resource_started', ['resource_id', 'started_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_usage_logs_session_id'), ['session_id'], unique=False)

    op.create_table('charges',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('usage_log_id', sa.Integer(), nullable=True),
    sa.Column('booking_id', sa.Integer(), nullable=True),
    sa.Column('resource_id', sa.Integer(), nullable=False),
    sa.Column('enterprise_id', sa.Integer(), nullable=False),
    sa.Column('service_date', advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
    sa.Column('customer_class', sa.String(length=20), nullable=False),
    sa.Column('lines', sa.JSON(), nullable=False),
    sa.Column('total_fen', sa.BigInteger(), nullable=False),
    sa.Column('explanation_zh', sa.Text(), nullable=False),
    sa.Column('explanation_en', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('paid_at', advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True),
    sa.Column('payment_method', sa.String(length=20), nullable=False),
    sa.Column('payment_reference', sa.String(length=100), nullable=False),
    sa.Column('void_reason', sa.String(length=500), nullable=False),
    sa.Column('created_at', advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
    sa.Column('updated_at', advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('service', 'no_show')", name=op.f('ck_charges_kind_known')),
    sa.CheckConstraint("status IN ('unpaid', 'paid', 'void')", name=op.f('ck_charges_status_known')),
    sa.CheckConstraint('total_fen >= 0', name=op.f('ck_charges_total_not_negative')),
    sa.ForeignKeyConstraint(['booking_id'], ['bookings.id'], name=op.f('fk_charges_booking_id_bookings')),
    sa.ForeignKeyConstraint(['enterprise_id'], ['enterprises.id'], name=op.f('fk_charges_enterprise_id_enterprises')),
    sa.ForeignKeyConstraint(['resource_id'], ['resources.id'], name=op.f('fk_charges_resource_id_resources')),
    sa.ForeignKeyConstraint(['usage_log_id'], ['usage_logs.id'], name=op.f('fk_charges_usage_log_id_usage_logs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_charges'))
    )
    with op.batch_alter_table('charges', schema=None) as batch_op:
        batch_op.create_index('ix_charges_enterprise_status', ['enterprise_id', 'status'], unique=False)
        batch_op.create_index('ix_charges_resource', ['resource_id'], unique=False)

    with op.batch_alter_table('fee_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('period', sa.String(length=10), server_default='all', nullable=False))
        batch_op.add_column(sa.Column('rounding', sa.String(length=10), server_default='up', nullable=False))

    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.add_column(sa.Column('peak_hours', sa.JSON(), server_default='[]', nullable=False))
        batch_op.add_column(sa.Column('no_show_fee_fen', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('checkin_grace_minutes', sa.Integer(), server_default='15', nullable=False))
        batch_op.add_column(sa.Column('no_show_grace_minutes', sa.Integer(), server_default='30', nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.drop_column('no_show_grace_minutes')
        batch_op.drop_column('checkin_grace_minutes')
        batch_op.drop_column('no_show_fee_fen')
        batch_op.drop_column('peak_hours')

    with op.batch_alter_table('fee_items', schema=None) as batch_op:
        batch_op.drop_column('rounding')
        batch_op.drop_column('period')

    with op.batch_alter_table('charges', schema=None) as batch_op:
        batch_op.drop_index('ix_charges_resource')
        batch_op.drop_index('ix_charges_enterprise_status')

    op.drop_table('charges')
    with op.batch_alter_table('usage_logs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_usage_logs_session_id'))
        batch_op.drop_index('ix_usage_logs_resource_started')
        batch_op.drop_index(batch_op.f('ix_usage_logs_enterprise_id'))
        batch_op.drop_index('ix_usage_logs_booking')

    op.drop_table('usage_logs')
    with op.batch_alter_table('ratings', schema=None) as batch_op:
        batch_op.drop_index('ix_ratings_resource')

    op.drop_table('ratings')
    with op.batch_alter_table('agent_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_agent_keys_resource_id'))

    op.drop_table('agent_keys')
