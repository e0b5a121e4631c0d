"""Statements compiled once by SQLAlchemy and executed on the DBAPI cursor, for the writes of
the ingest transaction (the index rows of each instance, and the worklist's rows for a new
study, which join that transaction through ``IngestService.on_new_study``).

Every other path uses SQLAlchemy (ORM or Core) as usual. These few run once per received
instance, where SQLAlchemy's per-execution machinery (execution context, result object,
events) cost several times the driver's own work; the measurements are in
docs/benchmarks.md ("STOW-RS: fewer layers per instance").
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

from sqlalchemy import Dialect, Table, bindparam
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement
from sqlalchemy.sql.schema import ScalarElementColumnDefault

__all__ = ["CompiledStatement", "compiled_for"]


class CompiledStatement:
    """One statement compiled by SQLAlchemy for one dialect, executed on the DBAPI cursor.

    SQLAlchemy writes the SQL (one string per dialect, made here once) and converts the
    values with each column type's bind processor, so the rows are exactly what its own
    execution would write and read back. SQLAlchemy's Python-side column defaults are not
    applied at execution: :meth:`insert` takes them (scalar ones) as the values of columns a
    row leaves out.
    """

    __slots__ = ("_fixed", "_names", "_positional", "_processors", "text")

    def __init__(self, statement: ClauseElement, dialect: Dialect, defaults: dict[str, Any] | None = None) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        self.text = compiled.string
        self._positional = bool(compiled.positional)
        names = list(compiled.positiontup or ()) if self._positional else list(compiled.binds)
        binds = compiled.binds
        self._names = names
        self._processors = [binds[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names]
        # Values written into the statement itself (the 1 of "n + 1"), not given per execution,
        # and values a row may leave out.
        self._fixed = {**(defaults or {}), **{n: binds[n].value for n in names if not binds[n].required}}

    @classmethod
    def insert(cls, table: Table, dialect: Dialect, *, returning: bool = False) -> CompiledStatement:
        """INSERT of one row naming every column but the key; a row may leave out the columns
        with a scalar default (its value) and the nullable ones (NULL). ``returning``: RETURNING
        the new key (SQLite >= 3.35, PostgreSQL), so both drivers give it the same way."""
        columns = [c for c in table.c if c.name != "id"]
        defaults: dict[str, Any] = {}
        for c in columns:
            if c.default is not None and c.default.is_scalar:
                defaults[c.name] = cast(ScalarElementColumnDefault, c.default).arg
            elif c.nullable:
                defaults[c.name] = None
        statement = table.insert().values({c.name: bindparam(c.name) for c in columns})
        return cls(statement.returning(table.c.id) if returning else statement, dialect, defaults)

    def _params(self, values: dict[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        if self._fixed:
            values = {**self._fixed, **values}
        converted = [
            proc(values[n]) if proc is not None else values[n]
            for n, proc in zip(self._names, self._processors, strict=True)
        ]
        return tuple(converted) if self._positional else dict(zip(self._names, converted, strict=True))

    def run(self, cur: Any, values: dict[str, Any]) -> None:
        cur.execute(self.text, self._params(values))

    def first(self, cur: Any, values: dict[str, Any]) -> Any:
        cur.execute(self.text, self._params(values))
        # fetchall, not fetchone: SQLite keeps an INSERT ... RETURNING running (and refuses
        # to commit) until its rows are read to the end.
        rows = cur.fetchall()
        return rows[0] if rows else None


_S = TypeVar("_S")
_BY_DIALECT: dict[tuple[Callable[[Dialect], Any], str], Any] = {}
_BY_DIALECT_LOCK = threading.Lock()


def compiled_for(dialect: Dialect, factory: Callable[[Dialect], _S]) -> _S:
    """``factory(dialect)`` (a set of CompiledStatements), made once per dialect and driver."""
    key = (factory, f"{dialect.name}+{dialect.driver}:{dialect.paramstyle}")
    with _BY_DIALECT_LOCK:
        found = _BY_DIALECT.get(key)
        if found is None:
            found = _BY_DIALECT[key] = factory(dialect)
    return cast(_S, found)
