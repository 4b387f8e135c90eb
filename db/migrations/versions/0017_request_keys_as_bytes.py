"""response-cache keys as 16 raw bytes (issue #13)

A key was SHA-256 in 64 hex characters: 65 bytes in each llm_requests row and as much again in its
unique index, the biggest single item of the table. Now it is the first 128 bits of the same hash as
raw bytes (db.models.HexKey; core.llm.types.request_key): existing keys are cut to their first 32 hex
digits, so every cached answer is still found.

The downgrade writes the 32 digits back as text; the old code's 64-digit keys do not match them, so
after a downgrade the cache starts cold (the answers stay, readable through their examples).

Revision ID: 0017
Revises: 0016
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import db.models  # noqa: F401


revision: str = '0017'
down_revision: Union[str, None] = '0016'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

CHUNK = 5000


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE llm_requests ALTER COLUMN key TYPE bytea USING decode(left(key, 32), 'hex')")
        return
    # SQLite: the bytes first (a TEXT column keeps a BLOB as it is), then the declared type, in a rebuild
    # that env.py runs with foreign keys off (the rows that reference a request keep their links).
    _rewrite_keys(lambda key: bytes.fromhex(key[:32]))
    with op.batch_alter_table('llm_requests') as batch:
        batch.alter_column('key', type_=sa.LargeBinary(16), existing_type=sa.String(64), existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE llm_requests ALTER COLUMN key TYPE varchar(64) USING encode(key, 'hex')")
        return
    _rewrite_keys(lambda key: bytes(key).hex())
    with op.batch_alter_table('llm_requests') as batch:
        batch.alter_column('key', type_=sa.String(64), existing_type=sa.LargeBinary(16), existing_nullable=False)


def _rewrite_keys(convert) -> None:
    connection = op.get_bind()
    last = 0
    while True:
        rows = connection.execute(sa.text("SELECT id, key FROM llm_requests WHERE id > :last ORDER BY id LIMIT :n"),
                                  {"last": last, "n": CHUNK}).all()
        if not rows:
            return
        connection.execute(sa.text("UPDATE llm_requests SET key = :key WHERE id = :id"),
                           [{"id": row.id, "key": convert(row.key)} for row in rows])
        last = rows[-1].id
