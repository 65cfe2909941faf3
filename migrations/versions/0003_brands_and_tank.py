"""station brands from OpenStreetMap, and the tank a user fills

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('station_brands',
    sa.Column('station_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('brand', sa.String(length=60), nullable=True),
    sa.Column('name', sa.String(length=120), nullable=True),
    sa.PrimaryKeyConstraint('station_id')
    )
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('tank_litres', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('users') as batch:
        batch.drop_column('tank_litres')
    op.drop_table('station_brands')
