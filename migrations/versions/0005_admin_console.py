"""the admin console: price updates asked of the scheduler, and the audit trail of admin actions

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from alembic import op
import sqlalchemy as sa



revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True).with_variant(sa.String(length=26), "sqlite")


def upgrade() -> None:
    op.create_table('pass_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('requested_at', UTC_TIME, nullable=False),
    sa.Column('requested_by', sa.Integer(), nullable=True),
    sa.Column('started_at', UTC_TIME, nullable=True),
    sa.Column('finished_at', UTC_TIME, nullable=True),
    sa.Column('outcome', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_pass_requests_started_at', 'pass_requests', ['started_at'])
    op.create_table('admin_actions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', UTC_TIME, nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=40), nullable=False),
    sa.Column('target_id', sa.Integer(), nullable=True),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_admin_actions_at', 'admin_actions', ['at'])


def downgrade() -> None:
    op.drop_index('ix_admin_actions_at', 'admin_actions')
    op.drop_table('admin_actions')
    op.drop_index('ix_pass_requests_started_at', 'pass_requests')
    op.drop_table('pass_requests')
