"""A webhook delivery and the builds it queues, written by one PostgreSQL statement.

This is the write of every push that builds. Through the ORM the same rows take
BEGIN, an INSERT per row, a look-up of older queued builds and COMMIT: a round trip
each, and each hands daphne's GIL to another thread and back, on top of the ORM
compiling every statement anew. One statement is atomic by itself and costs one
round trip (docs/benchmarks.md has the figures). The column lists come from the
models' fields and each value is prepared by its own field, as Model.save() does, so
the rows are the ones the ORM would write; only the statement is written here.
SQLite cannot INSERT inside WITH, so there webhooks.record uses the ORM."""

import contextlib
import json

from django.db import connection, models, transaction

from builds.models import Build, BuildStatus, WebhookDelivery

DELIVERY_ID = "(SELECT id FROM delivery)"
OLDER_QUEUED = (
    "ARRAY(SELECT id FROM builds_build WHERE trigger_id = %s AND branch = %s AND status = %s AND created_on < %s)"
)


def usable() -> bool:
    return connection.vendor == "postgresql"


def record(delivery: WebhookDelivery, builds: list[Build]) -> list[list[int]]:
    """Inserts the delivery and its builds (each build's `delivery` is this one) and
    sets their primary keys. Returns, for each build, the ids of its trigger's older
    builds of the same branch still queued when the statement ran: the caller
    supersedes them. A duplicate delivery id raises IntegrityError and writes nothing."""
    # Only names from the models and fixed text go into the SQL; every value is a
    # parameter.
    params: list = []
    parts = [f"delivery AS ({insert(delivery, params)} RETURNING id)"]
    for n, build in enumerate(builds):
        parts.append(f"build_{n} AS ({insert(build, params, delivery=DELIVERY_ID)} RETURNING id)")
    new_ids = ", ".join(f"(SELECT id FROM build_{n})" for n in range(len(builds)))  # noqa: S608
    # Older by creation time, as in triggers.queue_build: a concurrent delivery's newer
    # build that this statement can see must survive.
    older = ", ".join([OLDER_QUEUED] * len(builds))
    for build in builds:
        params += [build.trigger_id, build.branch, BuildStatus.QUEUED, build.created_on]
    sql = f"WITH {', '.join(parts)} SELECT (SELECT id FROM delivery), ARRAY[{new_ids}], {older}"  # noqa: S608
    # A statement needs no transaction of its own; inside a caller's transaction, a
    # savepoint keeps a duplicate's IntegrityError from aborting the caller's.
    in_transaction = transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()
    with in_transaction, connection.cursor() as cursor:
        cursor.execute(sql, params)
        delivery_id, build_ids, *older_ids = cursor.fetchone()
    saved(delivery, delivery_id)
    for build, build_id in zip(builds, build_ids, strict=True):
        build.delivery = delivery
        saved(build, build_id)
    return older_ids


def insert(instance: models.Model, params: list, **sql_values: str) -> str:
    """An INSERT of the instance's row, every column but the primary key, with the
    values (as each field prepares them: defaults, auto_now_add) in one JSON parameter
    that PostgreSQL turns into a row of the table. One parameter rather than one per
    column: psycopg re-parses, every time, a statement of more than 50 placeholders.
    The fields named in `sql_values` take that SQL expression instead."""
    meta = instance._meta
    fields = [field for field in meta.concrete_fields if not field.primary_key]
    row = {f.column: f.get_prep_value(f.pre_save(instance, True)) for f in fields if f.name not in sql_values}
    params.append(json.dumps(row, default=str))
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    values = ", ".join(sql_values.get(f.name, f"r.{connection.ops.quote_name(f.column)}") for f in fields)
    table = meta.db_table
    return f"INSERT INTO {table} ({columns}) SELECT {values} FROM jsonb_populate_record(NULL::{table}, %s) r"  # noqa: S608


def saved(instance: models.Model, pk: int) -> None:
    """The instance as Model.save() leaves it."""
    instance.pk = pk
    instance._state.adding = False
    instance._state.db = connection.alias
