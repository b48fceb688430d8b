"""Connections and migrations. One pool per process, built by the process's factory."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool


def create_pool(url: str, *, max_size: int = 10, name: str = "understudy") -> ConnectionPool:
    """A pool of dict-row connections; each ``with pool.connection()`` block is one transaction."""
    return ConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        kwargs={"row_factory": dict_row},
        name=name,
        open=True,
    )


def _alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("shared") / "migrations"))
    # SQLAlchemy is used only by alembic, through the same psycopg 3 driver as everything else.
    config.set_main_option(
        "sqlalchemy.url", url.replace("postgresql://", "postgresql+psycopg://", 1)
    )
    return config


def migrate(url: str) -> None:
    """Bring the database schema up to the newest revision."""
    command.upgrade(_alembic_config(url), "head")


def current_revision(url: str) -> str | None:
    """The revision the database is at, or None before the first migration."""
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine, pool

    engine = create_engine(
        _alembic_config(url).get_main_option("sqlalchemy.url"), poolclass=pool.NullPool
    )
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
