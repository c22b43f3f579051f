"""Transfer operator: rows of a SQL query to Octopods, one message per row, exactly once each."""

from __future__ import annotations

import re
import uuid
from contextlib import closing
from typing import TYPE_CHECKING, Any

from airflow_provider_octopods.exceptions import OctopodsError, OctopodsInputError
from airflow_provider_octopods.operators.octopods import OctopodsBulkSendOperator

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence

    import jinja2
    from airflow.providers.common.compat.sdk import Context
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    from airflow_provider_octopods.utils.bulk import Outcome, RecipientTable

__all__ = ["SqlToOctopodsOperator"]

#: Rows fetched from the cursor at a time, each checked into the recipient table before the next
#: (a server-side cursor on PostgreSQL: :func:`server_side_cursor`).
FETCH_SIZE = 1000
_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*){0,2}")
#: The columns of ``results_table``, one row per recipient.
RESULT_COLUMNS = ("run_id", "recipient_key", "destination_phone", "message_id", "status", "reason")


class SqlToOctopodsOperator(OctopodsBulkSendOperator):
    """
    Send one SMS or WhatsApp template per row of a SQL query, exactly once each; wait; report.

    The rows are read through the connection's ``DbApiHook`` (``common.sql``: PostgreSQL, MySQL,
    SQLite, Snowflake ...), :data:`FETCH_SIZE` at a time (on PostgreSQL through a server-side
    cursor, so the result never sits whole in the worker). For each row, ``body`` (SMS) or each
    text of ``message_variables`` (WhatsApp) is a Jinja template rendered with the task's context
    and ``row`` (the row as a dict by column name): ``"Hi {{ row.name }}, order {{ row.order_id }}
    has shipped."``. Everything else (checks before the first send, exactly once per recipient,
    the budget, one wait, the report, ``on_invalid``, ``min_delivered_ratio``) is
    :class:`~airflow_provider_octopods.operators.octopods.OctopodsBulkSendOperator`'s. With
    ``results_table`` one row per recipient is written back through the same hook (the table must
    exist, with the columns of :data:`RESULT_COLUMNS`; a retry replaces the rows of its run).

    .. seealso::
        :ref:`howto/operator:SqlToOctopodsOperator`

    :param sql: the query (templated).
    :param conn_id: the database connection.
    :param phone_column: the column of the recipient's number.
    :param key_column: the column of the recipient's idempotency key (default: a hash of the
        number and the content).
    :param body: SMS: the text, a Jinja template rendered per row.
    :param template_id: WhatsApp: the template (or a Jinja template of it, rendered per row).
    :param message_variables: WhatsApp: the variables, each text a Jinja template rendered per row.
    :param channel: ``sms`` or ``whatsapp`` (default: ``whatsapp`` when ``template_id`` is given).
    :param parameters: the query's parameters.
    :param results_table: a table to write one row per recipient to, through the same hook.
    :param kwargs: the arguments of ``OctopodsBulkSendOperator`` (``wait_for_delivery``, ``deferrable``,
        ``timeout``, ``poll_interval``, ``on_invalid``, ``min_delivered_ratio``, ``octopods_conn_id`` ...).
    """

    template_fields: Sequence[str] = ("sql", "parameters")
    template_fields_renderers = {"sql": "sql"}

    def __init__(
        self,
        *,
        sql: str,
        conn_id: str,
        phone_column: str = "phone",
        key_column: str | None = None,
        body: str | None = None,
        template_id: int | str | None = None,
        message_variables: Any = None,
        channel: str | None = None,
        parameters: Mapping[str, Any] | Sequence[Any] | None = None,
        results_table: str | None = None,
        **kwargs: Any,
    ) -> None:
        if (body is None) == (template_id is None):
            raise OctopodsInputError(
                "body", "pass body (an SMS) or template_id (a WhatsApp template), not both."
            )
        if results_table is not None and not _TABLE.fullmatch(results_table):
            raise OctopodsInputError(
                "results_table", f"{results_table!r:.60} is not a table name; give e.g. 'sms_results'."
            )
        super().__init__(channel=channel or ("sms" if body is not None else "whatsapp"), **kwargs)
        self.sql = sql
        self.conn_id = conn_id
        self.phone_column = phone_column
        self.key_column = key_column
        self.body = body
        self.template_id = template_id
        self.message_variables = message_variables
        self.parameters = parameters
        self.results_table = results_table

    def _db_hook(self) -> DbApiHook:
        from airflow.providers.common.compat.sdk import BaseHook
        from airflow.providers.common.sql.hooks.sql import DbApiHook

        hook = BaseHook.get_connection(self.conn_id).get_hook()
        if not isinstance(hook, DbApiHook):
            raise OctopodsInputError(
                "conn_id", f"connection '{self.conn_id}' has no SQL hook ({type(hook).__name__})."
            )
        return hook

    def _check(self, context: Context, recipients: RecipientTable) -> None:
        """Check that ``results_table`` takes the results, then every row: all before any send."""
        if self.results_table:
            probe = f"SELECT {', '.join(RESULT_COLUMNS)} FROM {self.results_table} WHERE 1 = 0"
            try:
                self._db_hook().get_first(probe)
            except Exception as err:  # each driver has its own; retried, in case the database was away
                raise OctopodsError(
                    f"Invalid results_table: {self.results_table} cannot take the results, so nothing was sent "
                    f"({type(err).__name__}: {str(err)[:200]}). Create it with the columns "
                    f"{list(RESULT_COLUMNS)}, or give another table."
                ) from None
        super()._check(context, recipients)

    def _rows(self, context: Context) -> Iterator[Any]:
        """Yield one message per row, rendered with ``row``, reading the cursor in chunks."""
        env = self.get_template_env()
        body = env.from_string(self.body) if self.body is not None else None
        template_id = env.from_string(str(self.template_id)) if self.template_id is not None else None
        variables = _compile(env, self.message_variables)
        hook = self._db_hook()
        with closing(hook.get_conn()) as conn, closing(server_side_cursor(conn)) as cursor:
            cursor.execute(self.sql, self.parameters) if self.parameters else cursor.execute(self.sql)
            rows = cursor.fetchmany(FETCH_SIZE)
            names = [column[0] for column in cursor.description or ()]  # psycopg2's named: after a fetch
            for field, column in (("phone_column", self.phone_column), ("key_column", self.key_column)):
                if column is not None and column not in names and (names or rows):
                    raise OctopodsInputError(
                        field, f"the query has no column {column!r}; its columns: {names}."
                    )
            while rows:
                for values in rows:
                    row = dict(zip(names, values, strict=False))
                    scope = {**context, "row": row}
                    message: dict[str, Any] = {"destination_phone": row[self.phone_column]}
                    if self.key_column:
                        message["key"] = row.get(self.key_column)
                    if body is not None:
                        message["body"] = body.render(scope)
                    if template_id is not None:
                        message["template_id"] = template_id.render(scope)
                        message["message_variables"] = _render(variables, scope)
                    yield message
                rows = cursor.fetchmany(FETCH_SIZE)

    def _write_results(self, context: Context, outcomes: Iterable[Outcome]) -> None:
        """Replace this run's rows of ``results_table`` with one row per recipient (streamed, never all in memory)."""
        if not self.results_table:
            return
        hook = self._db_hook()
        run_id = context["run_id"]
        written = 0

        def rows() -> Iterator[tuple[Any, ...]]:
            nonlocal written
            for o in outcomes:
                written += 1
                yield run_id, o.key, o.phone, o.message_id, o.status or o.state, (o.reason or "")[:1000]

        try:
            hook.run(
                f"DELETE FROM {self.results_table} WHERE run_id = {hook.placeholder}", parameters=(run_id,)
            )
            hook.insert_rows(
                self.results_table, rows(), target_fields=list(RESULT_COLUMNS), commit_every=1000
            )
        except Exception as err:  # each driver has its own errors
            raise OctopodsError(
                f"Every recipient was handled (the report is in the log), but writing {self.results_table} "
                f"failed: {type(err).__name__}: {str(err)[:200]}"
            ) from err
        self.log.info("Wrote %d rows to %s.", written, self.results_table)


def server_side_cursor(conn: Any) -> Any:
    """
    Return a cursor that leaves the result on the database server, where the driver has one.

    psycopg (2 and 3, PostgreSQL) keeps a whole result in the client unless the cursor is named
    (a server-side cursor, in the connection's transaction); drivers whose ``cursor()`` takes no
    name (sqlite3, MySQL's, most others) give their default cursor, which may hold the whole
    result (MySQL's does).

    :param conn: a DB-API connection, not in autocommit mode for a named cursor.
    """
    if getattr(conn, "autocommit", False) is not True:
        try:
            return conn.cursor(name=f"octopods_rows_{uuid.uuid4().hex[:12]}")
        except TypeError:  # no named cursors
            pass
    return conn.cursor()


def _compile(env: jinja2.Environment, value: Any) -> Any:
    """Compile every text of ``value`` (a text, a list or a dict of them) into a Jinja template."""
    if isinstance(value, str):
        return env.from_string(value)
    if isinstance(value, dict):
        return {k: _compile(env, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_compile(env, v) for v in value]
    return value


def _render(value: Any, scope: Mapping[str, Any]) -> Any:
    """Render what :func:`_compile` compiled."""
    if hasattr(value, "render"):
        return value.render(scope)
    if isinstance(value, dict):
        return {k: _render(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, scope) for v in value]
    return value
