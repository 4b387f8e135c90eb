"""Bulk reads through the driver's own cursor, for the few paths that read hundreds of thousands of rows.

SQLAlchemy's Row objects and type processing cost more than the query itself at that scale. The
statement is still built with SQLAlchemy (portable), compiled with its literal values inlined:
only use this with values the code chose (ids, fixed names), never with text a user typed.
"""

from __future__ import annotations

from sqlalchemy.orm import Session
from sqlalchemy.sql import Select


def raw_rows(session: Session, statement: Select) -> list[tuple]:
    connection = session.connection()
    sql = str(statement.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
    cursor = connection.connection.dbapi_connection.cursor()
    try:
        cursor.execute(sql)
        return list(cursor.fetchall())
    finally:
        cursor.close()
