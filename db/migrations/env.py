"""Alembic environment: migrations run against DATABASE_URL (or the URL given by db.migrate)."""

from alembic import context

from db.models import Base
from db.session import get_engine

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = get_engine(config.get_main_option("sqlalchemy.url") or None)
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # A batch migration rebuilds a table by copying it and dropping the old one; with foreign keys
            # on, that DROP deletes every row that references it with ON DELETE CASCADE (upgrading past 0012
            # lost every evaluation). The pragma is a no-op inside a transaction, and SQLAlchemy would open
            # one first (db.session's BEGIN on begin), so it goes to the driver's connection directly.
            _driver_pragma(connection, "foreign_keys=OFF")
        if connection.in_transaction():  # alembic must begin, and so commit, its own transaction
            connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=sqlite,  # SQLite needs table rebuilds for ALTER
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
            if sqlite:  # what foreign keys being off let through would otherwise go unnoticed
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"the migration left rows with broken references: {broken[:5]}")
        finally:
            if connection.in_transaction():  # SQLite: alembic committed each migration; this is the check's
                connection.rollback()
            if sqlite:  # the connection goes back to the application's pool
                _driver_pragma(connection, "foreign_keys=ON")


def _driver_pragma(connection, pragma: str) -> None:
    """A PRAGMA outside any transaction (db.session sets the driver's autocommit: isolation_level None)."""
    connection.connection.driver_connection.execute(f"PRAGMA {pragma}")


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
