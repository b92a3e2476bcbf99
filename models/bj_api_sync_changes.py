"""Changed-fields payloads (SPEC §14): ``payload_scope`` and ``include_previous``.

``bj.api.sync.changes.mixin`` is inherited by ``bj.api.sync.config`` only. With
``payload_scope = changed`` an update event sends the identifier lines, the
Python lines and the lines whose source fields changed (``Mapping.change_scope``
in ``mapping.py``); with ``include_previous`` also ``"previous": {api_key: value
before}``. Creations, deletions, manual sends and scheduled syncs send whole
objects.

The values before come from base_automation, which reads them before each write
and gives them to the rule's actions as ``old_values`` in the context
(``{record id: {field name: value}}``), as its trigger fields use them:

* queued: they are noted per configuration and record when the event is
  queued, the first write of each field winning, in the transaction's
  post-commit data (kept through pre-commit flushes at savepoints, dropped with
  the transaction); the delivery, built at pre-commit from the final state,
  sends the fields whose final value differs from that first value before;
* immediate: the rule's own ``old_values`` are compared with the values just
  written, and the request goes at once.

Hooks it overrides: ``_enqueue`` (note the changes) and ``_trigger_records``
(immediate rules); it provides ``_payload_changes`` to the outbox's
``_create_deliveries``.
"""

from odoo import fields, models

from ..mapping import snapshot_value

#: Post-commit data: {(config id, record id): {field name: value before} or None}
#: (None: the values before are unknown, the whole object is sent).
CHANGES_KEY = "bj_api_sync.txn_changes"
UPDATE_EVENTS = ("write", "create_or_write")


class BjApiSyncChangesMixin(models.AbstractModel):
    _name = "bj.api.sync.changes.mixin"
    _description = "BJ API: changed-fields payloads of a configuration"

    payload_scope = fields.Selection(
        [("full", "Whole object"), ("changed", "Changed fields only")],
        required=True,
        default="full",
        help="Changed fields only: an update fired by an automation rule sends the "
        "Record Identifier lines, the Python lines and the lines whose fields "
        "changed in the transaction (an update that changes no mapped field sends "
        "nothing). Creations, deletions, Send Now and scheduled syncs send the "
        "whole object.",
    )
    include_previous = fields.Boolean(
        string="Include Previous Values",
        help='With changed fields only: add "previous": {key: value before the '
        "transaction} for the changed lines.",
    )

    def _enqueue(self, records, event="manual"):
        if self.payload_scope == "changed" and event in UPDATE_EVENTS:
            self._note_changes(records, event)
        return super()._enqueue(records, event)

    def _trigger_records(self, records, event="manual"):
        """Immediate rules of a configuration sending changes: compare the
        values just written with the rule's ``old_values`` and send now."""
        if (
            self.payload_scope == "changed"
            and self.delivery_mode == "immediate"
            and event in UPDATE_EVENTS
        ):
            changes = self._context_changes(records)
            if changes is not None:
                records = self._records_for_build(records, event)
                return self._send_records(records, changes=changes)
        return super()._trigger_records(records, event)

    def _context_changes(self, records):
        """``{record id: {field name: value before}}`` from base_automation's
        ``old_values`` (values kept as ``snapshot_value`` keeps them), or None
        without them (a creation, or not an automation rule): whole objects.
        A record they do not name is sent whole."""
        for context in (self.env.context, records.env.context):
            if "old_values" in context:
                old_values = context["old_values"]
                break
        else:
            return None
        if not isinstance(old_values, dict):
            return None
        fields_ = records._fields
        changes = {}
        for record_id in records.ids:
            before = old_values.get(record_id)
            if isinstance(before, dict):
                changes[record_id] = {
                    name: snapshot_value(fields_[name], value)
                    for name, value in before.items()
                    if name in fields_
                }
        return changes

    def _note_changes(self, records, event):
        """Note the values before of an update event being queued: the first
        value of each field in the transaction is kept."""
        self.ensure_one()
        changes = self._context_changes(records)
        if changes is None and event == "create_or_write":
            return  # a creation: sent whole
        noted = self.env.cr.postcommit.data.setdefault(CHANGES_KEY, {})
        for record_id in records.ids:
            key = (self.id, record_id)
            before = (changes or {}).get(record_id)
            if before is None:
                noted[key] = None  # unknown values before: the whole object
                continue
            fields_before = noted.setdefault(key, {})
            if fields_before is not None:
                for name, value in before.items():
                    fields_before.setdefault(name, value)

    def _payload_changes(self, records, event):
        """What ``records``' deliveries of ``event`` send: None for whole
        objects, else ``{record id: {field name: value before}}`` of the
        records sent by their changes (see ``_prepare_units``)."""
        self.ensure_one()
        if event != "write" or self.payload_scope != "changed":
            return None
        noted = self.env.cr.postcommit.data.get(CHANGES_KEY) or {}
        changes = {}
        for record_id in records.ids:
            before = noted.get((self.id, record_id))
            if before is not None:
                changes[record_id] = before
        return changes
