"""daily aggregates: each day's median, mean, lowest and highest price per fuel, in France and per department;
backfill progress: how far a backfill went, for the admin page and for resuming it

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# Aware UTC times: timestamptz on PostgreSQL, sortable UTC text on SQLite (see models.UTCDateTime).
UTC_TIME = sa.DateTime(timezone=True).with_variant(sa.String(length=26), "sqlite")


def upgrade() -> None:
    op.create_table('daily_aggregates',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('scope', sa.String(length=3), nullable=False),
    sa.Column('gastype_id', sa.Integer(), nullable=False),
    sa.Column('median', sa.Float(), nullable=False),
    sa.Column('mean', sa.Float(), nullable=False),
    sa.Column('lowest', sa.Integer(), nullable=False),
    sa.Column('highest', sa.Integer(), nullable=False),
    sa.Column('stations', sa.Integer(), nullable=False),
    sa.Column('through', UTC_TIME, nullable=False),
    sa.ForeignKeyConstraint(['gastype_id'], ['gas_types.id'], ),
    sa.PrimaryKeyConstraint('scope', 'gastype_id', 'day')
    )
    # The key serves the charts (one scope and fuel over a range of days); this index, the refresh of whole days.
    op.create_index('ix_daily_aggregates_day', 'daily_aggregates', ['day'])
    op.create_table('backfill_progress',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('feed_size', sa.BigInteger(), nullable=False),
    sa.Column('feed_crc32', sa.BigInteger(), nullable=False),
    sa.Column('started_at', UTC_TIME, nullable=False),
    sa.Column('updated_at', UTC_TIME, nullable=False),
    sa.Column('phase', sa.String(length=16), nullable=False),
    sa.Column('done', sa.BigInteger(), nullable=False),
    sa.Column('total', sa.BigInteger(), nullable=False),
    sa.Column('stations_done', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('backfill_progress')
    op.drop_index('ix_daily_aggregates_day', 'daily_aggregates')
    op.drop_table('daily_aggregates')
