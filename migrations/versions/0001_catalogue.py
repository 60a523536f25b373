"""Catalogue: managing units, categories, resources, opening hours, closures, fee items.

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 02:48:10.573820
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
import advanced_alchemy.types


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('categories',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=20), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('name_zh', sa.String(length=100), nullable=False),
    sa.Column('name_en', sa.String(length=100), nullable=False),
    sa.Column('level', sa.SmallInteger(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('retired_at', advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True),
    sa.Column('created_at', advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
    sa.Column('updated_at', advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['parent_id'], ['categories.id'], name=op.f('fk_categories_parent_id_categories')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_categories')),
    sa.UniqueConstraint('code', name=op.f('uq_categories_code'))
    )
    op.create_table('managing_units',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('name_zh', sa.String(length=200), nullable=False),
    sa.Column('name_en', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('uscc', sa.String(length=18), nullable=True),
    sa.Column('address_zh', sa.String(length=300), nullable=False),
    sa.Column('address_en', sa.String(length=300), nullable=False),
    sa.Column('contact_name', sa.String(length=100), nullable=False),
    sa.Column('contact_phone', sa.String(length=50), nullable=False),
    sa.Column('contact_email', sa.String(length=200), nullable=False),
    sa.Column('website', sa.String(length=300), nullable=False),
    sa.Column('description_zh', sa.Text(), nullable=False),
    sa.Column('description_en', sa.Text(), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('source_file', sa.String(length=300), nullable=False),
    sa.Column('source_digest', sa.String(length=64), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('retired_at', advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True),
    sa.Column('created_at', advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
    sa.Column('updated_at', advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_managing_units')),
    sa.UniqueConstraint('code', name=op.f('uq_managing_units_code'))
    )
    op.create_table('resources',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('unit_id', sa.Integer(), nullable=False),
    sa.Column('category_id', sa.Integer(), nullable=False),
    sa.Column('name_zh', sa.String(length=200), nullable=False),
    sa.Column('name_en', sa.String(length=200), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('maker', sa.String(length=200), nullable=False),
    sa.Column('country', sa.String(length=2), nullable=False),
    sa.Column('original_value_fen', sa.BigInteger(), nullable=False),
    sa.Column('commissioned_on', sa.Date(), nullable=True),
    sa.Column('location_zh', sa.String(length=300), nullable=False),
    sa.Column('location_en', sa.String(length=300), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('capacity', sa.Integer(), nullable=False),
    sa.Column('open_for_sharing', sa.Boolean(), nullable=False),
    sa.Column('rated_hours_per_year', sa.Integer(), nullable=False),
    sa.Column('specs_zh', sa.Text(), nullable=False),
    sa.Column('specs_en', sa.Text(), nullable=False),
    sa.Column('functions_zh', sa.Text(), nullable=False),
    sa.Column('functions_en', sa.Text(), nullable=False),
    sa.Column('capabilities', sa.JSON(), nullable=False),
    sa.Column('sharing_modes', sa.JSON(), nullable=False),
    sa.Column('contact_name', sa.String(length=100), nullable=False),
    sa.Column('contact_phone', sa.String(length=50), nullable=False),
    sa.Column('contact_email', sa.String(length=200), nullable=False),
    sa.Column('booking_unit', sa.String(length=10), nullable=False),
    sa.Column('slot_minutes', sa.Integer(), nullable=False),
    sa.Column('min_minutes', sa.Integer(), nullable=False),
    sa.Column('max_minutes', sa.Integer(), nullable=False),
    sa.Column('lead_minutes', sa.Integer(), nullable=False),
    sa.Column('horizon_days', sa.Integer(), nullable=False),
    sa.Column('approval_required', sa.Boolean(), nullable=False),
    sa.Column('self_operation_allowed', sa.Boolean(), nullable=False),
    sa.Column('qualification_required', sa.Boolean(), nullable=False),
    sa.Column('working_calendar', sa.Boolean(), nullable=False),
    sa.Column('cancellation_hours', sa.Integer(), nullable=False),
    sa.Column('billing_basis', sa.String(length=10), nullable=False),
    sa.Column('shifts', sa.JSON(), nullable=False),
    sa.Column('search_text', sa.Text(), nullable=False),
    sa.Column('min_price_fen', sa.BigInteger(), nullable=True),
    sa.Column('source_file', sa.String(length=300), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('retired_at', advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True),
    sa.Column('created_at', advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
    sa.Column('updated_at', advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('instrument', 'workshop', 'line')", name=op.f('ck_resources_kind_known')),
    sa.CheckConstraint('capacity >= 1', name=op.f('ck_resources_capacity_positive')),
    sa.CheckConstraint('original_value_fen >= 0', name=op.f('ck_resources_original_value_not_negative')),
    sa.ForeignKeyConstraint(['category_id'], ['categories.id'], name=op.f('fk_resources_category_id_categories')),
    sa.ForeignKeyConstraint(['parent_id'], ['resources.id'], name=op.f('fk_resources_parent_id_resources')),
    sa.ForeignKeyConstraint(['unit_id'], ['managing_units.id'], name=op.f('fk_resources_unit_id_managing_units')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_resources')),
    sa.UniqueConstraint('code', name=op.f('uq_resources_code'))
    )
    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.create_index('ix_resources_category', ['category_id'], unique=False)
        batch_op.create_index('ix_resources_unit_retired', ['unit_id', 'retired_at'], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        # Substring search (LIKE '%色谱%') is served by a trigram index on PostgreSQL.
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.create_index(
            "ix_resources_search_text_trgm",
            "resources",
            ["search_text"],
            postgresql_using="gin",
            postgresql_ops={"search_text": "gin_trgm_ops"},
        )

    op.create_table('closures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('resource_id', sa.Integer(), nullable=False),
    sa.Column('starts_at', advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
    sa.Column('ends_at', advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
    sa.Column('reason', sa.String(length=300), nullable=False),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('external_uid', sa.String(length=300), nullable=True),
    sa.CheckConstraint('ends_at > starts_at', name=op.f('ck_closures_ends_after_start')),
    sa.ForeignKeyConstraint(['resource_id'], ['resources.id'], name=op.f('fk_closures_resource_id_resources'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_closures'))
    )
    with op.batch_alter_table('closures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_closures_resource_id'), ['resource_id'], unique=False)

    op.create_table('fee_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('resource_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('basis', sa.String(length=10), nullable=False),
    sa.Column('label_zh', sa.String(length=200), nullable=False),
    sa.Column('label_en', sa.String(length=200), nullable=False),
    sa.Column('internal_fen', sa.BigInteger(), nullable=False),
    sa.Column('district_fen', sa.BigInteger(), nullable=False),
    sa.Column('external_fen', sa.BigInteger(), nullable=False),
    sa.Column('unit_minutes', sa.Integer(), nullable=False),
    sa.Column('minimum_units', sa.Integer(), nullable=False),
    sa.Column('note_zh', sa.String(length=300), nullable=False),
    sa.Column('note_en', sa.String(length=300), nullable=False),
    sa.CheckConstraint("basis IN ('hour', 'sample', 'shift', 'day', 'setup')", name=op.f('ck_fee_items_basis_known')),
    sa.CheckConstraint('internal_fen >= 0 AND district_fen >= 0 AND external_fen >= 0', name=op.f('ck_fee_items_rates_not_negative')),
    sa.ForeignKeyConstraint(['resource_id'], ['resources.id'], name=op.f('fk_fee_items_resource_id_resources'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fee_items'))
    )
    with op.batch_alter_table('fee_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fee_items_resource_id'), ['resource_id'], unique=False)

    op.create_table('opening_hours',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('resource_id', sa.Integer(), nullable=False),
    sa.Column('weekday', sa.SmallInteger(), nullable=False),
    sa.Column('opens', sa.Time(), nullable=False),
    sa.Column('closes', sa.Time(), nullable=False),
    sa.CheckConstraint('weekday BETWEEN 0 AND 6', name=op.f('ck_opening_hours_weekday_range')),
    sa.ForeignKeyConstraint(['resource_id'], ['resources.id'], name=op.f('fk_opening_hours_resource_id_resources'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_opening_hours'))
    )
    with op.batch_alter_table('opening_hours', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_opening_hours_resource_id'), ['resource_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('opening_hours', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_opening_hours_resource_id'))

    op.drop_table('opening_hours')
    with op.batch_alter_table('fee_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fee_items_resource_id'))

    op.drop_table('fee_items')
    with op.batch_alter_table('closures', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_closures_resource_id'))

    op.drop_table('closures')
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_resources_search_text_trgm", table_name="resources")
    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.drop_index('ix_resources_unit_retired')
        batch_op.drop_index('ix_resources_category')

    op.drop_table('resources')
    op.drop_table('managing_units')
    op.drop_table('categories')
