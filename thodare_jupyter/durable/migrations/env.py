"""Alembic environment: runs on the connection the store hands over."""

from alembic import context

from thodare_jupyter.durable.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table="thodare_alembic_version",
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
