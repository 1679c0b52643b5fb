"""Alembic environment: the URL comes from the caller (akson db upgrade), never from a file."""

from alembic import context
from sqlalchemy import create_engine, pool

from akson.store.schema import metadata

config = context.config
url = config.get_main_option("sqlalchemy.url") or ""
connectable = config.attributes.get("connection")

if connectable is None:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connectable, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
