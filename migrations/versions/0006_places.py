"""places: La Poste's communes and postcodes, for finding villages and postcodes that have no station

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('places',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('insee', sa.String(length=5), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('key', sa.String(length=80), nullable=False),
    sa.Column('department', sa.String(length=3), nullable=False),
    sa.Column('postcode', sa.String(length=5), nullable=False),
    sa.Column('locality', sa.String(length=80), nullable=True),
    sa.Column('locality_key', sa.String(length=80), nullable=True),
    sa.Column('latitude', sa.Float(), nullable=False),
    sa.Column('longitude', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_places_key', 'places', ['key'], postgresql_ops={'key': 'text_pattern_ops'})
    op.create_index(
        'ix_places_locality_key', 'places', ['locality_key'], postgresql_ops={'locality_key': 'text_pattern_ops'}
    )
    op.create_index('ix_places_postcode', 'places', ['postcode'])


def downgrade() -> None:
    op.drop_index('ix_places_postcode', 'places')
    op.drop_index('ix_places_locality_key', 'places')
    op.drop_index('ix_places_key', 'places')
    op.drop_table('places')
