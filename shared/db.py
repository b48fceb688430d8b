"""Connections and migrations. One pool per process, built by the process's factory."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from alembic import command
from alembic.config import Config
from psycopg import Connection
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

# A pooled connection. Its rows are dicts (the pool's row factory); typed Any so that a row
# read right after an INSERT ... RETURNING can be indexed without ceremony.
Conn = Connection[Any]


class MissingRow(LookupError):
    """A statement that must return a row returned none."""


def fetch_one(conn: Conn, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
    """The row a statement must return: an INSERT ... RETURNING, or a row known to exist."""
    row = conn.execute(sql, params).fetchone()
    if row is None:
        raise MissingRow(sql.split(None, 3)[:3])
    return row


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


def _sqlalchemy_url(url: str) -> str:
    # SQLAlchemy is used only by alembic, through the same psycopg 3 driver as everything else.
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def _alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("shared") / "migrations"))
    config.set_main_option("sqlalchemy.url", _sqlalchemy_url(url))
    return config


def migrate(url: str) -> None:
    """Bring the database schema up to the newest revision."""
    command.upgrade(_alembic_config(url), "head")
