"""Queued delivery, circuit breaker and triggers (SPEC §6, §7).

``bj.api.sync.outbox.mixin`` is inherited by ``bj.api.sync.config`` only: this
file is about *when* and *how reliably* things are sent. Hooks it overrides
from the request mixin: ``_concurrency_limit`` (``max_concurrency`` for queued
configurations). Its entry point for every trigger is ``_trigger_records``.
"""

import gc
import logging
import uuid
from datetime import timedelta

import psycopg2.errors

from odoo import SUPERUSER_ID, Command, api, fields, models
from odoo.fields import Domain
from odoo.tools import SQL

from .bj_api_sync_delivery import OPEN_STATES, Sender

_logger = logging.getLogger(__name__)

PROBE_FIRST_SECONDS = 60
PROBE_MAX_SECONDS = 30 * 60
BUFFER_KEY = "bj_api_sync.enqueue"
TXN_KEY = "bj_api_sync.txn_deliveries"
TRIGGERED_KEY = "bj_api_sync.cron_triggered"


#: Immediate sends made for these events go once per transaction.
AUTOMATED_EVENTS = ("create", "write", "create_or_write")
#: Context key: skip requests already sent, the same, in this transaction.
SEND_ONCE_KEY = "bj_api_sync_send_once"


class BjApiSyncOutboxMixin(models.AbstractModel):
    _name = "bj.api.sync.outbox.mixin"
    _description = "BJ API: queued delivery and triggers of a configuration"

    delivery_mode = fields.Selection(
        [("queued", "Queued (outbox)"), ("immediate", "Immediate")],
        required=True,
        default="queued",
        help="Queued: triggers write deliveries in the same transaction and the "
        "delivery cron sends them after commit, with durable retries. Immediate: "
        "the trigger sends synchronously.",
    )
    max_attempts = fields.Integer(
        default=12, help="Attempts of a queued delivery before it goes Dead."
    )
    max_concurrency = fields.Integer(
        default=4,
        help="Deliveries of this configuration sent at the same time (different "
        "records only: one record's deliveries always go in order).",
    )
    rate_limit_per_second = fields.Float(
        string="Rate Limit (requests/s)",
        default=0.0,
        help="Most requests this configuration starts per second, counted across "
        "every worker and server sharing the database (immediate sends, queued "
        "deliveries, imports, quick retries); 0: no limit. Requests wait for "
        "their turn instead of failing.",
    )
    circuit_threshold = fields.Integer(
        string="Pause After Failures",
        default=20,
        help="Consecutive failed delivery attempts that pause the configuration.",
    )
    coalesce_backlog = fields.Boolean(
        string="Compact Backlog",
        default=True,
        help="When an update of a record is queued while an older update of the "
        "same record still waits, the older one is superseded (kept for the "
        "record, never sent): the receiver gets the latest state once instead "
        "of every state in between. Creations and deletions are always sent, "
        "nothing is compacted across a deletion, and updates that send changed "
        "fields only are never compacted.",
    )
    sync_state = fields.Selection(
        [("active", "Active"), ("paused", "Paused")],
        required=True,
        default="active",
        tracking=True,
        copy=False,
    )
    paused_at = fields.Datetime(readonly=True, copy=False)
    resumed_at = fields.Datetime(readonly=True, copy=False)
    next_probe_at = fields.Datetime(readonly=True, copy=False)
    probe_interval = fields.Integer(default=PROBE_FIRST_SECONDS, copy=False)
    delivery_ids = fields.One2many("bj.api.sync.delivery", "config_id")
    delivery_count = fields.Integer(compute="_compute_delivery_stats")
    delivery_stats = fields.Char(compute="_compute_delivery_stats")

    # Triggers
    action_server_ids = fields.One2many(
        "ir.actions.server", "bj_api_sync_config_id", string="Server Actions"
    )
    # Automation rules are Settings-admin records: BJ users see how many drive
    # a configuration (computed as superuser), not the rules themselves.
    automation_ids = fields.Many2many(
        "base.automation",
        compute="_compute_automation_ids",
        compute_sudo=True,
        string="Automations",
    )
    automation_count = fields.Integer(
        compute="_compute_automation_ids", compute_sudo=True
    )
    binding_model = fields.Boolean(
        string="Show in Action Menu",
        help="Adds 'Send to <configuration>' to the Action menu of the model.",
    )
    binding_action_id = fields.Many2one(
        "ir.actions.server", readonly=True, copy=False, ondelete="set null"
    )
    sync_interval_number = fields.Integer(
        string="Sync Every", help="Leave 0 for no scheduled sync."
    )
    sync_interval_type = fields.Selection(
        [
            ("minutes", "Minutes"),
            ("hours", "Hours"),
            ("days", "Days"),
            ("weeks", "Weeks"),
            ("months", "Months"),
        ],
        default="hours",
    )
    sync_mode = fields.Selection(
        [("all", "All matching records"), ("changed", "Changed since last sync")],
        default="changed",
        required=True,
    )
    cron_id = fields.Many2one(
        "ir.cron",
        string="Scheduled Action",
        readonly=True,
        copy=False,
        ondelete="set null",
    )
    last_sync_at = fields.Datetime(
        string="Last Successful Sync",
        copy=False,
        help="Watermark of the scheduled sync: records written after it are "
        "'changed'. Advanced only after a fully successful run.",
    )

    @api.depends("delivery_ids.state")
    def _compute_delivery_stats(self):
        groups = self.env["bj.api.sync.delivery"]._read_group(
            [("config_id", "in", self.ids)], ["config_id", "state"], ["__count"]
        )
        stats = {}
        for config, state, count in groups:
            stats.setdefault(config.id, {})[state] = count
        labels = dict(self.env["bj.api.sync.delivery"]._fields["state"].selection)
        for config in self:
            counts = stats.get(config.id, {})
            config.delivery_count = sum(counts.values())
            config.delivery_stats = " · ".join(
                f"{counts[state]} {labels[state].lower()}"
                for state in (*OPEN_STATES, "dead")
                if counts.get(state)
            )

    def _compute_automation_ids(self):
        for config in self:
            automations = self.env["base.automation"]
            if config._origin.id:
                automations = automations.search(
                    [
                        (
                            "action_server_ids.bj_api_sync_config_id",
                            "=",
                            config._origin.id,
                        )
                    ]
                )
            config.automation_ids = automations
            config.automation_count = len(automations)

    # ------------------------------------------------------------------
    # CRUD: keep the scheduled action and the Action-menu entry in step
    # ------------------------------------------------------------------

    @api.model_create_multi
    def create(self, vals_list):
        configs = super().create(vals_list)
        configs._sync_cron()
        configs._sync_binding()
        return configs

    def write(self, vals):
        result = super().write(vals)
        if {
            "sync_interval_number",
            "sync_interval_type",
            "model_id",
            "active",
            "name",
            "run_as_user_id",
        } & set(vals):
            self._sync_cron()
        if {"binding_model", "model_id", "name", "active"} & set(vals):
            self._sync_binding()
        return result

    def unlink(self):
        crons = self.cron_id
        actions = self.binding_action_id
        result = super().unlink()
        crons.unlink()
        actions.exists().unlink()
        return result

    def _prepare_trigger_action_values(self, name):
        return {
            "name": name,
            "model_id": self.model_id.id,
            "state": "bj_api_sync",
            "bj_api_sync_config_id": self.id,
        }

    def _sync_cron(self):
        for config in self.sudo():
            wanted = config.active and config.sync_interval_number > 0
            if not wanted:
                if config.cron_id:
                    config.cron_id.active = False
                continue
            name = self.env._("BJ API: scheduled sync of %s", config.name)
            values = dict(
                config._prepare_trigger_action_values(name),
                interval_number=config.sync_interval_number,
                interval_type=config.sync_interval_type or "hours",
                active=True,
            )
            # The scheduled sync reads records with the rights of the Run As
            # user, else of the user who set the schedule: never the superuser.
            user = config.run_as_user_id or self.env.user
            if user.id == SUPERUSER_ID:
                user = self.env.ref("base.user_admin", raise_if_not_found=False)
            values["user_id"] = user.id
            if config.cron_id:
                config.cron_id.write(values)
            else:
                config.cron_id = self.env["ir.cron"].create(values)

    def _sync_binding(self):
        for config in self.sudo():
            wanted = config.binding_model and config.active
            if not wanted:
                if config.binding_action_id:
                    config.binding_action_id.unlink_action()
                continue
            name = self.env._("Send to %s", config.name)
            values = dict(
                config._prepare_trigger_action_values(name),
                binding_model_id=config.model_id.id,
                binding_type="action",
                group_ids=[
                    Command.set(self.env.ref("bj_api_sync.group_bj_api_user").ids)
                ],
            )
            if config.binding_action_id:
                config.binding_action_id.write(values)
            else:
                config.binding_action_id = self.env["ir.actions.server"].create(values)

    # ------------------------------------------------------------------
    # Actions
    # ------------------------------------------------------------------

    def action_view_deliveries(self):
        """Open the outbox rows of this configuration."""
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "bj_api_sync.bj_api_sync_delivery_action"
        )
        action["domain"] = [("config_id", "=", self.id)]
        action["context"] = {"search_default_filter_open": 1}
        return action

    def action_view_automations(self):
        """Open the automation rules that drive this configuration."""
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Automations"),
            "res_model": "base.automation",
            "view_mode": "list,form",
            "domain": [("id", "in", self.automation_ids.ids)],
        }

    def action_open_automate(self):
        """Open the wizard creating automation rules for this configuration."""
        self.ensure_one()
        self._check_manager_access()
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Automate %s", self.name),
            "res_model": "bj.api.sync.automate",
            "view_mode": "form",
            "target": "new",
            "context": {"default_config_id": self.id},
        }

    def action_resume(self):
        """Resume a paused configuration now; its backlog goes out in order."""
        self._check_manager_access()
        for config in self.filtered(lambda c: c.sync_state == "paused"):
            config._resume(self.env._("Resumed by %s.", self.env.user.name))
        return True

    def action_pause(self):
        """Hold every delivery of this configuration until resumed."""
        self._check_manager_access()
        for config in self.filtered(lambda c: c.sync_state == "active"):
            config._pause(self.env._("Paused by %s.", self.env.user.name))
        return True

    def _action_send_now_queued(self):
        records = self._get_matching_records()
        deliveries = self._enqueue(records, "manual")
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "title": self.name,
                "message": self.env._(
                    "%(count)s deliveries queued for %(records)s record(s); they "
                    "are sent right after this transaction commits.",
                    count=len(deliveries),
                    records=len(records),
                ),
                "type": "success",
                "next": {"type": "ir.actions.act_window_close"},
            },
        }

    # ------------------------------------------------------------------
    # Triggers
    # ------------------------------------------------------------------

    def _concurrency_limit(self):
        return self.max_concurrency if self.delivery_mode == "queued" else 1

    def _trigger_records(self, records, event="manual"):
        """Entry point of every trigger: queue or send ``records`` per the mode.

        ``records`` are first moved to the environment whose rights build their
        payloads (see ``_records_for_build``), which must be able to read them.
        """
        self.ensure_one()
        records = self._records_for_build(records, event)
        if self.delivery_mode == "immediate":
            if event in AUTOMATED_EVENTS:
                # An automation rule may fire again in the same transaction
                # (Odoo runs on-update rules again when stored computed fields
                # are recomputed at flush): the same request is sent once.
                self = self.with_context(**{SEND_ONCE_KEY: True})  # noqa: PLW0642
            return self._make_outbound_http_request(records)
        return self._enqueue(records, event)

    def _sync_all(self, event="cron", env=None):
        """Send every record matching the domain (scheduled sync, no records).

        Records are read in pages, with the cache cleared between pages, so the
        memory used does not grow with the number of records.

        :param env: the environment whose user reads the records (the cron's);
            default: this configuration's
        """
        self.ensure_one()
        started = fields.Datetime.now()
        domain = self._get_records_domain()
        if self.sync_mode == "changed" and self.last_sync_at and event == "cron":
            domain &= Domain("write_date", ">", self.last_sync_at)
        model = (env or self.env)[self.model_name]
        size = max(self.page_size, 100) if self.is_paginated else 200
        ok = True
        last_id = 0
        pages = 0
        while True:
            # Keyset pagination: never hold the full id list of a large model.
            chunk = model.search(
                domain & Domain("id", ">", last_id), order="id", limit=size
            )
            if not chunk:
                break
            last_id = chunk.ids[-1]
            result = self._trigger_records(chunk, event)
            if result._name == "bj.api.log":
                ok &= all(state == "success" for state in result.mapped("state"))
            else:
                ok &= all(d.state != "dead" for d in result)
            self.env.flush_all()
            self.env.invalidate_all()
            pages += 1
            if pages % 50 == 0:
                # The ORM leaves small reference cycles per write; collect them
                # now and then so a 100,000-record sync stays flat in memory.
                gc.collect()
        if ok and event == "cron":
            self.sudo().last_sync_at = started
        return ok

    # ------------------------------------------------------------------
    # Outbox
    # ------------------------------------------------------------------

    def _enqueue(self, records, event="manual"):
        """Queue ``records`` for delivery inside the current transaction.

        Create/update events are only noted here: their bodies are built once,
        at pre-commit, from the records' final state, so several writes in one
        transaction give one delivery. Other events (delete, manual, cron) are
        built now. A rollback leaves nothing behind; a commit wakes the delivery
        cron.

        :return: the deliveries created now (empty for create/update events)
        """
        self.ensure_one()
        self._check_sendable(records)
        records = self._records_for_build(records, event)
        if event in ("create", "write", "create_or_write"):
            self._buffer_event(records, event)
            return self.env["bj.api.sync.delivery"]
        if event == "unlink":
            self._forget_buffered(records)
        return self._create_deliveries(self._filter_records(records), event)

    def _buffer_event(self, records, event):
        cr = self.env.cr
        buffer = cr.precommit.data.get(BUFFER_KEY)
        if buffer is None:
            buffer = cr.precommit.data[BUFFER_KEY] = {}
            env = self.env

            @cr.precommit.add
            def _flush_buffer():
                pending = cr.precommit.data.pop(BUFFER_KEY, {})
                env["bj.api.sync.config"].sudo()._flush_enqueued(pending)

        # Bodies are built later with the rights of the user that queued them.
        per_config = buffer.setdefault((self.id, records.env.uid), {})
        for record_id in records.ids:
            # The first event wins: created then written is still a creation.
            per_config.setdefault(record_id, event)

    def _forget_buffered(self, records):
        buffer = self.env.cr.precommit.data.get(BUFFER_KEY) or {}
        for (config_id, _uid), per_config in buffer.items():
            if config_id == self.id:
                for record_id in records.ids:
                    per_config.pop(record_id, None)

    @api.model
    def _flush_enqueued(self, pending):
        """Pre-commit: build the buffered create/update events, one per record.

        Never fails the transaction that queued them: whatever goes wrong while
        building becomes dead deliveries carrying the error (and a log line).
        """
        for (config_id, uid), events in pending.items():
            config = self.browse(config_id).exists()
            if not config or not events:
                continue
            try:
                with self.env.cr.savepoint():
                    config._flush_enqueued_events(uid, events)
            except Exception as error:  # noqa: BLE001 - the user's commit goes on
                _logger.exception(
                    "bj_api_sync: building queued deliveries of configuration %s "
                    "failed",
                    config.id,
                )
                config._create_failed_deliveries(events, str(error))

    def _flush_enqueued_events(self, uid, events):
        """Build the buffered events of this configuration queued by ``uid``,
        with that user's rights."""
        now = self.env.cr.now()
        model = self.env(user=uid, su=False)[self.model_name]
        records = self._filter_records(model.browse(list(events)).exists())
        by_event = {}
        for record in records:
            event = events[record.id]
            if event == "create_or_write":
                event = "create" if record.create_date == now else "write"
            by_event.setdefault(event, []).append(record.id)
        for event, ids in by_event.items():
            self._create_deliveries(model.browse(ids), event)

    def _create_deliveries(self, records, event):
        """Build the bodies of ``records`` now and write them to the outbox.

        Update events of a configuration sending changes only get the changes
        noted in this transaction (``_payload_changes``, see
        ``bj_api_sync_changes.py``): a record none of whose mapped fields
        changed gets no delivery. Update events of a configuration compacting
        its backlog supersede the older updates of their records still waiting
        (``coalesce_backlog``, see ``bj.api.sync.delivery._supersede_older``).
        """
        self.ensure_one()
        Delivery = self.env["bj.api.sync.delivery"].sudo()
        if not records:
            return Delivery
        config = self.sudo()
        txn = self.env.cr.postcommit.data.setdefault(TXN_KEY, {})
        vals_list = []
        updated = Delivery
        changes = self._payload_changes(records, event)
        built = set()
        for unit in config._prepare_units(records, changes=changes):
            unit_records = unit.records
            built.update(unit_records.ids)
            single = unit_records.id if len(unit_records) == 1 else False
            values = {
                "config_id": self.id,
                "res_model": unit_records._name,
                "res_ids": ",".join(str(i) for i in unit_records.ids),
                "res_id": single,
                "event": event,
                "request_url": unit.url or self.request_url,
            }
            if unit.error:
                values.update(
                    state="dead",
                    payload=False,
                    last_error=unit.error,
                    next_attempt_at=False,
                )
            else:
                values["payload"] = unit.body_text
            # Coalesce with a row this same transaction already wrote (a flush at
            # a savepoint ran the pre-commit hook earlier): update, do not add.
            previous = single and txn.get((self.id, single))
            if previous and event in ("create", "write"):
                row = Delivery.browse(previous).exists()
                if row and row.state == "pending" and row.event in ("create", "write"):
                    row.write({k: v for k, v in values.items() if k != "event"})
                    updated |= row
                    continue
            values["idempotency_key"] = str(uuid.uuid4())
            vals_list.append(values)
        for record_id in set(changes or ()) - built:
            # Changes queued earlier in this transaction (at a savepoint) that
            # its end undid: the row would send values that are no longer true.
            previous = txn.get((self.id, record_id))
            row = Delivery.browse(previous).exists() if previous else Delivery
            if row and row.state == "pending" and row.event == "write":
                row.write(
                    {
                        "state": "cancelled",
                        "next_attempt_at": False,
                        "last_error": self.env._(
                            "No mapped field differs any more from its value "
                            "before the transaction: nothing to send."
                        ),
                    }
                )
        created = Delivery.create(vals_list)
        if event == "write" and self._compacts_backlog():
            created._supersede_older()
        for row in created:
            if row.res_id:
                txn[(self.id, row.res_id)] = row.id
        if created and not self.env.cr.postcommit.data.get(TRIGGERED_KEY):
            self.env.cr.postcommit.data[TRIGGERED_KEY] = True
            Delivery._trigger_cron()
        return created | updated

    def _compacts_backlog(self):
        """Whether a new update delivery supersedes the older ones of its
        record: full snapshots only (``payload_scope = changed`` sends what
        changed in each transaction, and every change must arrive)."""
        self.ensure_one()
        return self.coalesce_backlog and self.payload_scope != "changed"

    def _prepare_sender(self):
        """What the delivery cron's requests of this configuration share
        (see ``bj_api_sync_delivery.Sender``)."""
        self.ensure_one()
        config = self.sudo()
        return Sender(
            key=config._session_key(),
            limit=config._concurrency_limit(),
            secrets=config._get_secrets(),
            write_back=config._write_back_filter(),
            company_id=config.company_id.id or None,
            max_attempts=config.max_attempts,
        )

    def _create_failed_deliveries(self, events, error):
        """Dead deliveries recording why the events could not be built."""
        self.ensure_one()
        self.env["bj.api.sync.delivery"].sudo().create(
            [
                {
                    "config_id": self.id,
                    "res_model": self.model_name,
                    "res_ids": str(record_id),
                    "res_id": record_id,
                    "event": event if event != "create_or_write" else "write",
                    "request_url": self.request_url,
                    "state": "dead",
                    "payload": False,
                    "last_error": self.env._(
                        "The payload could not be built: %s", error
                    ),
                    "next_attempt_at": False,
                    "idempotency_key": str(uuid.uuid4()),
                }
                for record_id, event in events.items()
            ]
        )

    # ------------------------------------------------------------------
    # Circuit breaker
    # ------------------------------------------------------------------

    def _lock_for_update(self):
        """Lock this configuration's row without waiting; False if taken."""
        try:
            with self.env.cr.savepoint(flush=False):
                self.env.execute_query(
                    SQL(
                        "SELECT id FROM bj_api_sync_config WHERE id = %s "
                        "FOR NO KEY UPDATE NOWAIT",
                        self.id,
                    )
                )
        except (psycopg2.errors.LockNotAvailable, psycopg2.errors.SerializationFailure):
            return False
        return True

    def _check_circuit_breaker(self):
        """Pause when the last ``circuit_threshold`` attempts all failed."""
        self.ensure_one()
        if self.sync_state != "active":
            return
        domain = Domain("config_id", "=", self.id) & Domain("delivery_id", "!=", False)
        if self.resumed_at:
            domain &= Domain("create_date", ">=", self.resumed_at)
        recent = (
            self.env["bj.api.log"]
            .sudo()
            .search_fetch(
                domain, ["outcome"], order="id desc", limit=self.circuit_threshold
            )
        )
        if len(recent) >= self.circuit_threshold and all(
            log.outcome == "retryable" for log in recent
        ):
            self._pause(
                self.env._(
                    "%(count)s consecutive delivery attempts failed (last error: "
                    "%(error)s).",
                    count=len(recent),
                    error=recent[:1].sudo().error_message or "",
                )
            )

    def _pause(self, reason):
        self.ensure_one()
        if not self._lock_for_update():
            return False
        now = fields.Datetime.now()
        self.sudo().write(
            {
                "sync_state": "paused",
                "paused_at": now,
                "probe_interval": PROBE_FIRST_SECONDS,
                "next_probe_at": now + timedelta(seconds=PROBE_FIRST_SECONDS),
            }
        )
        self._notify_admins(
            self.env._("Deliveries of %s are paused", self.name),
            self.env._(
                "%(reason)s Deliveries wait instead of hammering the receiver; one "
                "probe is sent every few minutes and a successful probe resumes "
                "sending by itself.",
                reason=reason,
            ),
        )
        _logger.warning("bj_api_sync: configuration %s paused: %s", self.id, reason)
        return True

    def _schedule_next_probe(self):
        """Book the next probe slot; False when another worker is probing."""
        self.ensure_one()
        if not self._lock_for_update():
            return False
        interval = max(self.probe_interval, PROBE_FIRST_SECONDS)
        self.sudo().write(
            {
                "next_probe_at": fields.Datetime.now() + timedelta(seconds=interval),
                "probe_interval": min(interval * 2, PROBE_MAX_SECONDS),
            }
        )
        return True

    def _resume(self, reason):
        self.ensure_one()
        now = fields.Datetime.now()
        self.sudo().write(
            {
                "sync_state": "active",
                "resumed_at": now,
                "next_probe_at": False,
                "probe_interval": PROBE_FIRST_SECONDS,
            }
        )
        # The backlog goes out now, oldest first.
        waiting = (
            self.env["bj.api.sync.delivery"]
            .sudo()
            .search([("config_id", "=", self.id), ("state", "in", OPEN_STATES)])
        )
        waiting.write({"next_attempt_at": now})
        self.env["bj.api.sync.delivery"]._trigger_cron()
        self._notify_admins(
            self.env._("Deliveries of %s resumed", self.name),
            self.env._(
                "%(reason)s %(count)s waiting deliveries are being sent in order.",
                reason=reason,
                count=len(waiting),
            ),
        )
        return True

    def _notify_admins(self, subject, body):
        """Post on the configuration, notifying followers (else BJ API managers)."""
        self.ensure_one()
        partners = self.message_partner_ids
        if not partners:
            group = self.env.ref("bj_api_sync.group_bj_api_manager")
            partners = (
                group.sudo()
                .all_user_ids.filtered(lambda u: u.active and not u.share)
                .partner_id
            )
        self.sudo().message_post(
            subject=subject,
            body=body,
            partner_ids=partners.ids,
            message_type="notification",
            subtype_xmlid="mail.mt_comment",
        )
