"""start line and high-water mark per folder; the attachment's sha256 on each submission

Revision ID: 0002_start_line
Revises: 0001
Create Date: 2026-12-01

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel  # noqa: F401


revision: str = '0002_start_line'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('start_line',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('office', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('folder', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('since', sa.DateTime(timezone=True), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('uidvalidity', sa.Integer(), nullable=False),
    sa.Column('high_water', sa.Integer(), nullable=False),
    sa.Column('floor', sa.DateTime(timezone=True), nullable=False),
    sa.Column('scanned', sa.Boolean(), nullable=False),
    sa.Column('caught_up_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('office', 'folder', name='uq_start_line_folder')
    )
    with op.batch_alter_table('submission', schema=None) as batch_op:
        batch_op.add_column(sa.Column('file_sha256', sqlmodel.sql.sqltypes.AutoString(), nullable=False,
                                      server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('submission', schema=None) as batch_op:
        batch_op.drop_column('file_sha256')
    op.drop_table('start_line')
