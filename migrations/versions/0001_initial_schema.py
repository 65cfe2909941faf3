"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None

# Aware UTC times: timestamptz on PostgreSQL, sortable UTC text on SQLite (see models.UTCDateTime).
UTC_TIME = sa.DateTime(timezone=True).with_variant(sa.String(length=26), "sqlite")


def upgrade() -> None:
    op.create_table('etl_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('started_at', UTC_TIME, nullable=False),
    sa.Column('finished_at', UTC_TIME, nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('stations', sa.Integer(), nullable=False),
    sa.Column('prices', sa.Integer(), nullable=False),
    sa.Column('changes', sa.Integer(), nullable=False),
    sa.Column('rejected', sa.Integer(), nullable=False),
    sa.Column('duration_seconds', sa.Double(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('feed_size', sa.BigInteger(), nullable=True),
    sa.Column('feed_crc32', sa.BigInteger(), nullable=True),
    sa.CheckConstraint("status IN ('success', 'failed')", name='status_known'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_etl_runs_status_started', 'etl_runs', ['status', 'started_at'])

    op.create_table('gas_types',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('name', sa.String(length=16), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('stations',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('latitude', sa.Float(), nullable=True),
    sa.Column('longitude', sa.Float(), nullable=True),
    sa.Column('zip_code', sa.String(length=5), nullable=False),
    sa.Column('town', sa.String(length=120), nullable=False),
    sa.Column('address', sa.String(length=250), nullable=False),
    sa.Column('road_type', sa.String(length=1), nullable=False),
    sa.Column('automate_24_24', sa.Boolean(), nullable=False),
    sa.Column('opening_hours', sa.Text(), nullable=True),
    sa.Column('services', sa.Text(), nullable=False),
    sa.Column('search_text', sa.Text(), nullable=False),
    sa.Column('last_seen_at', UTC_TIME, nullable=False),
    sa.CheckConstraint("road_type IN ('R', 'A', 'N')", name='road_type_known'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_stations_lat_lon', 'stations', ['latitude', 'longitude'])
    op.create_index('ix_stations_zip_code', 'stations', ['zip_code'])

    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=32), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('role', sa.String(length=8), nullable=False),
    sa.Column('created_at', UTC_TIME, nullable=False),
    sa.Column('litres_per_year', sa.Float(), nullable=True),
    sa.Column('km_per_year', sa.Float(), nullable=True),
    sa.Column('litres_per_100km', sa.Float(), nullable=True),
    sa.CheckConstraint("role IN ('user', 'admin')", name='role_known'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('email'),
    sa.UniqueConstraint('username')
    )
    op.create_table('custom_stations',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('station_id', sa.Integer(), nullable=False),
    sa.Column('custom_name', sa.String(length=40), nullable=False),
    sa.ForeignKeyConstraint(['station_id'], ['stations.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'station_id')
    )
    op.create_table('price_history',
    sa.Column('station_id', sa.Integer(), nullable=False),
    sa.Column('gastype_id', sa.Integer(), nullable=False),
    sa.Column('updated_at', UTC_TIME, nullable=False),
    sa.Column('price', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['gastype_id'], ['gas_types.id'], ),
    sa.ForeignKeyConstraint(['station_id'], ['stations.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('station_id', 'gastype_id', 'updated_at'),
    sqlite_with_rowid=False,
    )
    op.create_table('prices',
    sa.Column('station_id', sa.Integer(), nullable=False),
    sa.Column('gastype_id', sa.Integer(), nullable=False),
    sa.Column('price', sa.Integer(), nullable=False),
    sa.Column('updated_at', UTC_TIME, nullable=False),
    sa.ForeignKeyConstraint(['gastype_id'], ['gas_types.id'], ),
    sa.ForeignKeyConstraint(['station_id'], ['stations.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('station_id', 'gastype_id'),
    sqlite_with_rowid=False,
    )

    op.create_table('ruptures',
    sa.Column('station_id', sa.Integer(), nullable=False),
    sa.Column('gastype_id', sa.Integer(), nullable=False),
    sa.Column('started_at', UTC_TIME, nullable=True),
    sa.Column('ended_at', UTC_TIME, nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=True),
    sa.CheckConstraint("kind IS NULL OR kind IN ('temporaire', 'definitive')", name='rupture_kind_known'),
    sa.ForeignKeyConstraint(['gastype_id'], ['gas_types.id'], ),
    sa.ForeignKeyConstraint(['station_id'], ['stations.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('station_id', 'gastype_id'),
    sqlite_with_rowid=False,
    )
    op.create_table('user_gastypes',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('gastype_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['gastype_id'], ['gas_types.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'gastype_id')
    )
    op.create_table('verification_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sa.String(length=128), nullable=False),
    sa.Column('purpose', sa.String(length=32), nullable=False),
    sa.Column('created_at', UTC_TIME, nullable=False),
    sa.Column('expires_at', UTC_TIME, nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('used_at', UTC_TIME, nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_verification_codes_user_id', 'verification_codes', ['user_id'])



def downgrade() -> None:
    op.drop_index('ix_verification_codes_user_id', table_name='verification_codes')

    op.drop_table('verification_codes')
    op.drop_table('user_gastypes')
    op.drop_table('ruptures')

    op.drop_table('prices')
    op.drop_table('price_history')
    op.drop_table('custom_stations')
    op.drop_table('users')
    op.drop_index('ix_stations_zip_code', table_name='stations')
    op.drop_index('ix_stations_lat_lon', table_name='stations')

    op.drop_table('stations')
    op.drop_table('gas_types')
    op.drop_index('ix_etl_runs_status_started', table_name='etl_runs')

    op.drop_table('etl_runs')
