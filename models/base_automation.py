from odoo import models

from odoo.addons.base.models.ir_actions import ServerActionWithWarningsError

from .ir_actions_server import AUTOMATION_EVENTS


class BaseAutomation(models.Model):
    _inherit = "base.automation"

    def _process(self, records, domain_post=None):
        """Hand all records to the sync configuration at once.

        Odoo runs an automation's server actions once per record, each run
        building a fresh context and evaluation context: for a rule whose only
        actions are "Sync to External API", that per-record ceremony costs more
        than queueing the records themselves. Such rules queue (or send) the
        whole batch in one call; every other rule runs as usual.
        """
        actions = self.sudo().action_server_ids
        if not actions or any(action.state != "bj_api_sync" for action in actions):
            return super()._process(records, domain_post=domain_post)
        # Same bookkeeping as the standard runner: an automation handles a record
        # once per transaction, even when its own effects trigger it again.
        done = self.env.context.get("__action_done", {})
        already = done.get(self, records.browse())
        records -= already
        if not records:
            return None
        if self.env.context.get("__action_feedback"):
            done[self] = already + records
        else:
            done = {**done, self: already + records}
            self = self.with_context(__action_done=done)
            records = records.with_context(__action_done=done)
        records = records.filtered(self._check_trigger_fields)
        done[self] = already + records
        if not records:
            return None
        if "date_automation_last" in records._fields:
            records.date_automation_last = self.env.cr.now()
        event = AUTOMATION_EVENTS.get(self.trigger, "manual")
        for action in actions:
            # The checks Odoo's own runner makes before running an action.
            action._can_execute_action_on_records(records)
            if action.warning:
                raise ServerActionWithWarningsError(
                    self.env._(
                        "Server action %(action_name)s has one or more warnings, "
                        "address them first.",
                        action_name=action.name,
                    )
                )
            config = action.bj_api_sync_config_id
            if not config.active:
                continue
            try:
                # Built with the rights of the user whose change fired the rule
                # (or of the configuration's Run As user), never as superuser.
                config._trigger_records(records, event)
            except Exception as error:
                self._add_postmortem(error)
                raise
        return None
