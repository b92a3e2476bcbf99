"""Pulling data in, and writing responses back (SPEC §12).

``bj.api.sync.import.mixin`` is inherited by ``bj.api.sync.config`` only.

* Import: an Out GET configuration with ``import_response`` walks the pages of
  its URL (``tools/pull.py`` says which page comes next) and upserts each
  object of each page into its model with the in lines (``mapping.py``),
  matched by the Record Identifier line. A page is one ``bj.api.log`` row with
  created / updated / failed counts; an object that cannot be written fails
  alone; the scheduled run commits after each page.
* Write-back: after a 2xx answer to a POST / PUT / PATCH / DELETE, the in lines
  of the configuration read the response into the record(s) sent, with the
  rights of whoever sent them; a failure is noted on the log row, never turns
  the delivery into a failure, and the write never triggers this addon's own
  automation rules again (context key :data:`WRITE_BACK_KEY`).

Records are found and written with the rights of the environment the import
or the send runs in: the user who clicks, or the scheduled action's user.
"""

import json
import logging
import uuid

import psycopg2

from odoo import api, fields, models
from odoo.exceptions import AccessError, MissingError, UserError, ValidationError
from odoo.fields import Domain

from ..exceptions import SyncError
from ..mapping import IN_DIRECTIONS, Mapping, MappingError, has_nested
from ..tools import jsonenc, pull, transport
from ..tools.redact import redact_url

_logger = logging.getLogger(__name__)

#: Context key of the writes of a write-back: this addon's automation rules do
#: not run for them.
WRITE_BACK_KEY = "bj_api_sync_write_back"
#: What a bad object may raise while it is written: it fails alone.
IMPORT_ERRORS = (MappingError, UserError, AccessError, ValidationError, psycopg2.Error)
#: Failed objects listed by name in a page's log row.
MAX_LISTED_FAILURES = 20
#: The events automation rules trigger (``ir_actions_server.AUTOMATION_EVENTS``).
AUTOMATION_EVENTS = ("create", "write", "create_or_write", "unlink")

PULL_FIELDS = (
    "pull_pagination",
    "pull_page_param",
    "pull_page_start",
    "pull_size_param",
    "pull_offset_param",
    "pull_next_path",
    "pull_cursor_path",
    "pull_cursor_param",
    "pull_max_pages",
    "page_size",
)


class ImportOutcome:
    """Counts of one import run (all pages)."""

    def __init__(self):
        self.pages = 0
        self.created = 0
        self.updated = 0
        self.failed = 0
        self.errors = []  # walk-level failures (not objects)
        self.warning = None
        self.logs = []

    @property
    def ok(self):
        return not self.failed and not self.errors

    def summary(self, env):
        return env._(
            "%(pages)s page(s) read: %(created)s created, %(updated)s updated, "
            "%(failed)s failed.",
            pages=self.pages,
            created=self.created,
            updated=self.updated,
            failed=self.failed,
        )


class BjApiSyncImportMixin(models.AbstractModel):
    _name = "bj.api.sync.import.mixin"
    _description = "BJ API import and write-back"

    import_response = fields.Boolean(
        help="GET only: upsert the objects of the response into the model with "
        "the inbound mapping lines, matched by the Record Identifier line.",
    )
    response_data_path = fields.Char(
        help="Dotted path of the object or list of objects in the response "
        "(e.g. data.items); empty: the body itself. Also used by write-back.",
    )
    pull_pagination = fields.Selection(
        [
            ("none", "None"),
            ("page", "Page number"),
            ("offset", "Offset"),
            ("next_link", "Next link"),
            ("cursor", "Cursor"),
        ],
        string="Import Pagination",
        default="none",
        required=True,
    )
    pull_page_param = fields.Char(string="Page Parameter", default="page")
    pull_page_start = fields.Integer(string="First Page", default=1)
    pull_size_param = fields.Char(
        string="Page Size Parameter",
        default="per_page",
        help="Query parameter carrying the page size (the Page Size field); "
        "empty: none is sent.",
    )
    pull_offset_param = fields.Char(string="Offset Parameter", default="offset")
    pull_next_path = fields.Char(
        string="Next Link Path",
        help="Dotted path of the next page's URL in the body; empty: the "
        'Link header (rel="next").',
    )
    pull_cursor_path = fields.Char(
        string="Cursor Path", help="Dotted path of the next cursor in the body."
    )
    pull_cursor_param = fields.Char(string="Cursor Parameter", default="cursor")
    pull_max_pages = fields.Integer(
        string="Max Pages",
        default=pull.DEFAULT_MAX_PAGES,
        help="An import stops after this many pages, with a warning in the log.",
    )
    pull_since_param = fields.Char(
        string="Since Parameter",
        help="Scheduled imports in 'Changed since last sync' mode send the time "
        "of the last successful import (ISO 8601, UTC) in this query parameter.",
    )

    # ------------------------------------------------------------------
    # Checks at save time
    # ------------------------------------------------------------------

    @api.constrains("import_response", "request_type", "http_method_ids")
    def _check_import_response(self):
        for config in self.filtered("import_response"):
            methods = config.http_method_ids.mapped("name")
            if config.request_type != "out" or methods != ["GET"]:
                raise ValidationError(
                    self.env._(
                        "Configuration %(name)r: Import Response needs an Out "
                        "configuration whose only method is GET.",
                        name=config.name,
                    )
                )

    @api.constrains(*PULL_FIELDS)
    def _check_pull_settings(self):
        for config in self.filtered("import_response"):
            try:
                config._pull_plan()
            except pull.PullError as error:
                raise ValidationError(
                    self.env._(
                        "Configuration %(name)r: %(error)s",
                        name=config.name,
                        error=error,
                    )
                ) from None

    def _reads_inbound(self):
        return super()._reads_inbound() or bool(self.import_response)

    def _pull_plan(self):
        self.ensure_one()
        return pull.PagePlan(
            strategy=self.pull_pagination or "none",
            page_param=(self.pull_page_param or "").strip(),
            page_start=self.pull_page_start,
            size_param=(self.pull_size_param or "").strip(),
            page_size=self.page_size,
            offset_param=(self.pull_offset_param or "").strip(),
            next_path=(self.pull_next_path or "").strip(),
            cursor_path=(self.pull_cursor_path or "").strip(),
            cursor_param=(self.pull_cursor_param or "").strip(),
            max_pages=self.pull_max_pages,
        )

    # ------------------------------------------------------------------
    # Actions
    # ------------------------------------------------------------------

    def action_import_now(self):
        """Import every page now, with the rights of the user who clicks."""
        self.ensure_one()
        self._check_manager_access()
        self._check_importable()
        outcome = self.sudo()._import_run(self.env)
        failed = outcome.failed or outcome.errors
        message = outcome.summary(self.env)
        if outcome.errors:
            message += " " + " ".join(outcome.errors)
        if outcome.warning:
            message += " " + outcome.warning
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "title": self.name,
                "message": message,
                "type": "warning" if failed or outcome.warning else "success",
                "sticky": bool(failed),
                "next": {"type": "ir.actions.act_window_close"},
            },
        }

    def _check_importable(self):
        self.ensure_one()
        if not self.import_response:
            raise UserError(
                self.env._(
                    "Configuration %(name)r does not import its response.",
                    name=self.name,
                )
            )
        self._check_sendable()

    # ------------------------------------------------------------------
    # Import
    # ------------------------------------------------------------------

    def _import_run(self, env, commit=None, event="manual"):
        """Walk every page and import its objects.

        :param env: the environment whose rights find and write the records
            (the configuration's Run As user instead for scheduled runs)
        :param commit: called after each page (the scheduled run commits
            there); when it returns a number of seconds left (as
            ``ir.cron._commit_progress`` does), 0 ends the walk
        :return: an :class:`ImportOutcome`
        """
        self.ensure_one()
        started = fields.Datetime.now()
        outcome = ImportOutcome()
        config = self.sudo()
        # Never the superuser flag; scheduled runs use Run As when set, like
        # scheduled syncs.
        if event == "cron" and config.run_as_user_id:
            env = env(user=config.run_as_user_id.id, su=False)
        else:
            env = env(su=False)
        params = [(p.key, p.value or "") for p in config.param_ids]
        if (
            event == "cron"
            and config.sync_mode == "changed"
            and config.last_sync_at
            and (config.pull_since_param or "").strip()
        ):
            since = config.last_sync_at.strftime("%Y-%m-%dT%H:%M:%SZ")
            params.append((config.pull_since_param.strip(), since))
        walker = pull.Walker(
            config._pull_plan(),
            config.request_url,
            host_allowed=config._next_link_host_allowed,
        )
        page = walker.first()
        while page is not None:
            if page.number == 1 or page.params:
                page_params = params + list(page.params.items())
            else:
                page_params = []  # a next link carries its own query
            body, headers, log_values = config._import_fetch(page.url, page_params)
            outcome.pages += 1
            objects = None
            if body is not pull.MISSING:
                try:
                    objects = pull.extract_objects(body, config.response_data_path)
                except pull.PullError as error:
                    log_values.update(state="error", error_message=str(error))
                    outcome.errors.append(str(error))
            if objects is not None:
                counts = config._import_objects(env, objects)
                outcome.created += counts["created"]
                outcome.updated += counts["updated"]
                outcome.failed += counts["failed"]
                log_values.update(
                    import_created=counts["created"],
                    import_updated=counts["updated"],
                    import_failed=counts["failed"],
                )
                if counts["failed"]:
                    log_values.update(
                        state="error", error_message="\n".join(counts["errors"])
                    )
                try:
                    page = walker.next(body, headers, len(objects))
                except pull.PullError as error:
                    outcome.errors.append(str(error))
                    log_values.update(
                        state="error",
                        error_message="\n".join(
                            filter(None, [log_values.get("error_message"), str(error)])
                        ),
                    )
                    page = None
                if walker.warning:
                    # Pages were left unread: shown as an error row.
                    outcome.warning = walker.warning
                    log_values["state"] = "error"
                    log_values["error_message"] = "\n".join(
                        filter(None, [log_values.get("error_message"), walker.warning])
                    )
                    # Recorded on the page's log row (an error row); a line
                    # here for whoever reads the server log.
                    _logger.info(
                        "bj_api_sync: import of config %s: %s",
                        config.id,
                        walker.warning,
                    )
            else:
                if log_values.get("state") != "error":
                    log_values["state"] = "error"
                if log_values.get("error_message"):
                    outcome.errors.append(log_values["error_message"])
                page = None
            log = config._import_log(log_values)
            outcome.logs.append(log.id)
            left = commit() if commit else None
            if left is not None and left <= 0 and page is not None:
                # The scheduled action's time is up: the next run starts over
                # (what was imported stays; upserts make it harmless).
                outcome.warning = self.env._(
                    "Stopped after %s page(s): the scheduled action's time is up.",
                    outcome.pages,
                )
                break
        # A walk cut short (pull_max_pages, a repeated cursor or link) left
        # pages unread: the next run must ask for them again.
        if outcome.ok and not outcome.warning and event == "cron":
            config.last_sync_at = started
            if commit:
                commit()
        return outcome

    def _next_link_host_allowed(self, host):
        """Whether a next link may lead to ``host`` (another host than the
        configured URL's): only when the allow-list names it."""
        patterns = self._allowed_host_patterns()
        return bool(patterns) and transport.host_allowed(host, patterns)

    def _import_fetch(self, url, params):
        """GET one page.

        :return: ``(body, headers, log values)``; ``body`` is
            :data:`pull.MISSING` when the page cannot be imported (the log
            values then say why)
        """
        self.ensure_one()
        unit = _PageUnit(self.env[self.model_name], url)
        try:
            request = self._prepare_request(unit)
        except SyncError as error:
            unit.error = str(error)
            return pull.MISSING, {}, self._prepare_log_values(unit, None, None)
        request.params = params or None
        [result] = self._send_prepared([(self, unit, request)])
        values = self._prepare_log_values(unit, request, result)
        if result.outcome != "success":
            return pull.MISSING, {}, values
        if result.response_truncated:
            values.update(
                state="error",
                error_message=self.env._(
                    "The response is larger than %(size)s bytes and cannot be "
                    "imported: ask for smaller pages (Page Size).",
                    size=transport.RESPONSE_READ_LIMIT,
                ),
            )
            return pull.MISSING, {}, values
        try:
            body = json.loads(result.response_text or "")
        except ValueError as error:
            values.update(
                state="error",
                error_message=self.env._(
                    "The response is not JSON (%(error)s); nothing imported from "
                    "%(url)s.",
                    error=error,
                    url=redact_url(result.url or url),
                ),
            )
            return pull.MISSING, {}, values
        return body, result.response_headers or {}, values

    def _import_log(self, values):
        Log = self.env["bj.api.log"].sudo()
        return Log._insert_batch([Log._scrub_values(values, self._get_secrets())])

    def _import_objects(self, env, objects):
        """Upsert ``objects`` (one page) with the rights of ``env``.

        The identifiers of the page are looked up with one search. New records
        are created together by one ``create()`` in a savepoint; should it
        fail, each is created again in a savepoint of its own, so that a bad
        object fails alone. Each update runs in its own savepoint.

        :return: ``{"created", "updated", "failed", "errors"}``
        """
        self.ensure_one()
        model = env[self.model_name].with_context(active_test=False)
        mapping = Mapping(self, env)
        counts = {"created": 0, "updated": 0, "failed": 0, "errors": []}
        line = mapping.identifier_line()

        def fail(position, obj, error):
            counts["failed"] += 1
            if len(counts["errors"]) < MAX_LISTED_FAILURES:
                ident = obj.get(line.api_key) if isinstance(obj, dict) else None
                counts["errors"].append(
                    self.env._(
                        "Object %(position)s%(ident)s: %(error)s",
                        position=position + 1,
                        ident=f" ({line.api_key}={jsonenc.short_repr(ident)})"
                        if ident is not None
                        else "",
                        error=error,
                    )
                )

        # 1. identifiers, one search for the page
        searched, keys = {}, []
        for position, obj in enumerate(objects):
            key = None
            if not isinstance(obj, dict):
                fail(position, obj, self.env._("not a JSON object"))
            else:
                try:
                    present = has_nested(obj, line.api_key)
                    value = mapping.identifier_value(obj) if present else None
                    if value is None or value == "":
                        raise MappingError(
                            self.env._(
                                "the identifier key %r is missing or empty",
                                line.api_key,
                            ),
                            key=line.api_key,
                        )
                    [(_path, _op, search_value)] = mapping.identifier_domain(value)
                    key = repr(search_value)
                    searched[key] = search_value
                except MappingError as error:
                    fail(position, obj, error)
                    key = False
            keys.append(key)
        seen = set()
        try:
            found = self._inbound_search_identifiers(
                model, line.field_path, Domain.TRUE, searched, seen=seen
            )
        except AccessError as error:
            for position, obj in enumerate(objects):
                if keys[position]:
                    fail(position, obj, error)
            return counts
        # In the table, yet not found: hidden from this user by record rules
        # (creating it again would make a duplicate the user cannot see).
        hidden = {
            key for key, value in searched.items() if not found[key] and value in seen
        }
        # The records of the page read their fields together.
        page_ids = tuple(dict.fromkeys(i for rs in found.values() for i in rs._ids))
        found = {key: records.with_prefetch(page_ids) for key, records in found.items()}
        # 2. values, then updates and creates (each group together; one by one
        # when the group fails, so that a bad object fails alone)
        creates, updates = [], []
        for position, (obj, key) in enumerate(zip(objects, keys, strict=True)):
            if not key:
                continue
            records = found.get(key) or model.browse()
            if key in hidden:
                fail(
                    position,
                    obj,
                    self.env._(
                        "a record with this identifier exists but the user running "
                        "the import may not see it (record rules): not created again"
                    ),
                )
                continue
            if len(records) > 1:
                fail(
                    position,
                    obj,
                    self.env._("several records have this identifier"),
                )
                continue
            try:
                values, _unknown = mapping.to_values(obj, record=records)
            except (MappingError, UserError, AccessError) as error:
                fail(position, obj, error)
                continue
            if records:
                updates.append((position, obj, records, values))
            elif any(key == other for _p, _o, other, _v in creates):
                # The same identifier twice in a page: the later one updates
                # the record the earlier one creates.
                self._import_create_batch(model, creates, counts, fail, found)
                creates = []
                if found.get(key):
                    updates.append((position, obj, found[key], values))
            else:
                creates.append((position, obj, key, values))
        self._import_create_batch(model, creates, counts, fail, found)
        self._import_update_batch(updates, counts, fail)
        return counts

    def _import_update_batch(self, updates, counts, fail):
        """Write ``updates`` (``(position, object, record, values)``) in one
        savepoint, flushed once; should it fail, each again in a savepoint of
        its own."""
        if not updates:
            return
        try:
            with self.env.cr.savepoint():
                for _position, _obj, record, values in updates:
                    if values:
                        record.write(values)
                self.env.flush_all()
            counts["updated"] += len(updates)
            return
        except IMPORT_ERRORS as error:
            _logger.debug("bj_api_sync: import updates one by one after: %s", error)
        for position, obj, record, values in updates:
            if self._import_write(record, values, position, obj, fail):
                counts["updated"] += 1

    def _import_write(self, record, values, position, obj, fail):
        try:
            with self.env.cr.savepoint():
                if values:
                    record.write(values)
                    record.flush_recordset()
            return True
        except IMPORT_ERRORS as error:
            fail(position, obj, error)
            return False

    def _import_create_batch(self, model, creates, counts, fail, found):
        """Create the records of ``creates`` (``(position, object, identifier
        key, values)``): together, else one by one."""
        if not creates:
            return
        try:
            with self.env.cr.savepoint():
                records = model.create([values for _p, _o, _k, values in creates])
                model.env.flush_all()
        except (UserError, AccessError, ValidationError, psycopg2.Error):
            records = None
        if records is not None:
            for (_p, _o, key, _v), record in zip(creates, records, strict=True):
                found[key] = record
            counts["created"] += len(records)
            return
        for position, obj, key, values in creates:
            try:
                with self.env.cr.savepoint():
                    record = model.create(values)
                    model.env.flush_all()
            except (
                UserError,
                AccessError,
                ValidationError,
                psycopg2.Error,
            ) as error:
                fail(position, obj, error)
                continue
            found[key] = record
            counts["created"] += 1

    # ------------------------------------------------------------------
    # Preview
    # ------------------------------------------------------------------

    def _prepare_import_preview_values(self, env):
        """GET the first page and show the values its first object would
        write (nothing is written)."""
        self.ensure_one()
        config = self.sudo()
        walker = pull.Walker(config._pull_plan(), config.request_url)
        page = walker.first()
        params = [(p.key, p.value or "") for p in config.param_ids]
        params += list(page.params.items())
        body, _headers, log_values = config._import_fetch(page.url, params)
        config._import_log(log_values)  # a request was sent: it is logged
        values = {
            "config_id": self.id,
            "request_method": "GET",
            "request_url": log_values.get("request_url"),
            "request_headers": log_values.get("request_headers"),
        }
        if body is pull.MISSING:
            values["error_message"] = log_values.get("error_message") or self.env._(
                "The request failed with status %s.", log_values.get("status_code")
            )
            return values
        try:
            objects = pull.extract_objects(body, config.response_data_path)
        except pull.PullError as error:
            values["error_message"] = str(error)
            return values
        values["record_count"] = len(objects)
        if not objects:
            values["error_message"] = self.env._("The first page holds no object.")
            return values
        obj = objects[0]
        model = env[config.model_name].with_context(active_test=False)
        mapping = Mapping(config, env)
        try:
            if not isinstance(obj, dict):
                raise MappingError(self.env._("The first item is not a JSON object."))
            record = mapping.find(model, obj)
            written, unknown = mapping.to_values(obj, record=record)
        except (MappingError, UserError, AccessError) as error:
            values["error_message"] = str(error)
            return values
        shown = {
            "action": "update" if record else "create",
            "record": record.display_name if record else None,
            "values": {k: _plain(v) for k, v in written.items()},
        }
        if unknown:
            shown["ignored_keys"] = sorted(unknown)
        values["request_body"] = jsonenc.dumps_pretty(shown)
        return values

    # ------------------------------------------------------------------
    # Write-back
    # ------------------------------------------------------------------

    def _trigger_records(self, records, event="manual"):
        """Ignore the automation events of a write-back's own write: the
        values came from the receiver, sending them again would loop. (The
        server action checks this too; automation rules whose only actions
        sync hand their records over directly, see ``base_automation.py``.)"""
        if event in AUTOMATION_EVENTS and (
            records.env.context.get(WRITE_BACK_KEY)
            or self.env.context.get(WRITE_BACK_KEY)
        ):
            if self.delivery_mode == "immediate":
                return self.env["bj.api.log"]
            return self.env["bj.api.sync.delivery"]
        return super()._trigger_records(records, event)

    def _write_back_keys(self):
        """The top-level keys the in lines read."""
        return {
            line.api_key.split(".", 1)[0]
            for line in self._get_line_plans()
            if line.direction in IN_DIRECTIONS
        }

    def _write_back_objects(self, response_text):
        """The objects of a 2xx answer worth writing back: None when it holds
        none of the in lines' keys (nothing to do, nothing read), the reason
        when it cannot be read, else the list of objects."""
        try:
            return answer_objects(
                response_text,
                self.sudo().response_data_path,
                self._write_back_keys(),
            )
        except ValueError as error:  # JSON or path (PullError is a ValueError)
            return self.env._("Write-back skipped: %s", error)

    def _write_back_filter(self):
        """``(data path, keys)`` that tell, with :func:`answer_objects` and
        without reading this configuration again, whether a 2xx answer has
        anything to write back; None when this configuration never writes
        back (the delivery cron checks many answers between two commits)."""
        self.ensure_one()
        if not self._writes_back():
            return None
        return (self.sudo().response_data_path, frozenset(self._write_back_keys()))

    def _writes_back(self):
        """Whether 2xx answers are read back into the records sent."""
        self.ensure_one()
        config = self.sudo()
        if config.import_response or config.request_type != "out":
            return False
        if config.http_method_ids[:1].name == "GET":
            return False
        return any(line.direction in IN_DIRECTIONS for line in config._get_line_plans())

    def _write_back(self, records, response_text):
        """Apply the in lines to ``records`` (the records of one request, or
        a function giving them, called only when the answer has something to
        write back) from the response body. Single record: the object;
        several: a list of the same length, by position.

        :return: None, or the reason nothing (or not everything) was written
        """
        self.ensure_one()
        if not records or not self._writes_back():
            return None
        objects = self._write_back_objects(response_text)
        if not objects:
            return None
        if isinstance(objects, str):
            return objects
        if callable(records):
            records = records()
        if len(objects) != len(records):
            return self.env._(
                "Write-back skipped: %(objects)s object(s) answered for "
                "%(records)s record(s) sent.",
                objects=len(objects),
                records=len(records),
            )
        mapping = Mapping(self, records.env)
        keys = self._write_back_keys()
        problems = []
        for record, obj in zip(records, objects, strict=True):
            if isinstance(obj, dict) and keys.isdisjoint(obj):
                continue  # an answer that carries nothing to write back
            record = record.with_context(**{WRITE_BACK_KEY: True})
            try:
                if not isinstance(obj, dict):
                    raise MappingError(self.env._("not a JSON object"))
                values, _unknown = mapping.to_values(obj, record=record)
                if values:
                    with self.env.cr.savepoint():
                        record.write(values)
                        record.flush_recordset()
            except IMPORT_ERRORS as error:
                problems.append(
                    self.env._(
                        "%(record)s: %(error)s",
                        record=_record_label(record),
                        error=error,
                    )
                )
        if problems:
            return self.env._("Write-back failed: %s", "; ".join(problems))
        return None


def answer_objects(response_text, data_path, keys):
    """The objects of a 2xx answer worth writing back: None when it holds none
    of ``keys`` (the top-level keys the in lines read) or nothing at all.

    :raises ValueError: when the answer is no JSON, or ``data_path`` leads
        nowhere in it
    """
    text = (response_text or "").strip()
    if not text:
        return None
    objects = pull.extract_objects(json.loads(text), data_path)
    if all(isinstance(obj, dict) and keys.isdisjoint(obj) for obj in objects):
        return None
    return objects


def _record_label(record):
    """The display name of ``record``, or its model and id when it cannot be
    read (deleted since it was queued)."""
    try:
        return record.display_name
    except (MissingError, AccessError):
        return f"{record._name}({record.id})"


class _PageUnit:
    """What ``_prepare_request`` / ``_prepare_log_values`` need of one page
    request of an import (see ``Unit`` of the request mixin)."""

    def __init__(self, model, url):
        self.records = model
        self.url = url
        self.body = None
        self.body_text = ""
        self.error = None
        self.idempotency_key = str(uuid.uuid4())


def _plain(value):
    """An ORM value as JSON can show it (commands as lists, dates as text)."""
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
