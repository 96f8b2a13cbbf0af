"""when a mail's send was last attempted (the outbox's sending and uncertain states)

A send left `sending` whose outcome was never recorded is `uncertain`, never sent again by itself.

Revision ID: 0003_send_attempt
Revises: 0002_start_line
Create Date: 2026-12-10

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0003_send_attempt'
down_revision: Union[str, Sequence[str], None] = '0002_start_line'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempted_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('attempted_at')
