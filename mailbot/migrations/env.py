"""Alembic environment: run with the engine mailbot opened, never from a separate ini file."""
from alembic import context
from sqlmodel import SQLModel

from mailbot import models  # noqa: F401  (registers the tables on SQLModel.metadata)

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite needs batch mode to alter tables
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
