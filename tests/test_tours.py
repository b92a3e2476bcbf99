"""Browser tours (static/tests/tours/): the form, the buttons, the logs and the
Overview as an administrator and as a read-only BJ API User see them.

Odoo's HttpCase drives a headless Chromium through websocket-client. Without
either, these tests are skipped with the reason (at INFO level: Odoo's own skip
would log a WARNING, which fails ``make test``).
"""

import importlib.util
import unittest

from odoo import Command
from odoo.tests import new_test_user, tagged
from odoo.tests.common import _find_executable

from .common import BjApiSyncHttpCase

# The tour reads the receiver's URL from this cookie (see the admin tour).
RECEIVER_COOKIE = "bj_api_sync_tour_receiver"


def browser_missing():
    """Why Odoo cannot drive a browser on this machine, or None."""
    if importlib.util.find_spec("websocket") is None:
        return "websocket-client is not installed (pip install websocket-client)"
    try:
        _find_executable()
    except unittest.SkipTest:
        return "no Chromium or Chrome executable found (apt-get install chromium)"
    return None


@tagged("post_install", "-at_install")
class TestTours(BjApiSyncHttpCase):
    def setUp(self):
        super().setUp()
        reason = browser_missing()
        if reason:
            self.skipTest(f"browser tours need a browser: {reason}")

    def test_admin_builds_and_sends(self):
        """Create a configuration in the form, preview, send, read the log and the
        Overview; the receiver got the mapped contacts."""
        self.start_tour(
            "/odoo?debug=1",
            "bj_api_sync_admin_tour",
            login="admin",
            cookies={RECEIVER_COOKIE: self.server.url("/tour")},
            timeout=180,
        )
        self.env.invalidate_all()
        config = self.Config.search([("name", "=", "Contacts to the tour receiver")])
        self.assertEqual(len(config), 1)
        self.assertEqual(config.model_name, "res.partner")
        self.assertEqual(config.http_method, "POST")
        self.assertEqual(
            config.line_ids.mapped("field_path"), ["name", "email", "country_id.code"]
        )
        self.assertEqual(
            config.line_ids.mapped("api_key"),
            ["full_name", "email_address", "address.country_code"],
        )
        logs = self.Log.search([("config_id", "=", config.id)])
        self.assertEqual(logs.mapped("state"), ["success"])

        # The preview sent nothing: the receiver got exactly the Send Now request.
        self.assertEqual(len(self.server.received), 1)
        received = self.server.received[0]
        self.assertEqual((received.method, received.path), ("POST", "/tour"))
        body = received.json()
        self.assertIsInstance(body, list)
        self.assertEqual(
            {frozenset(item) for item in body},
            {frozenset({"full_name", "email_address", "address"})},
        )
        self.assertIn(
            self.env.company.partner_id.name, [item["full_name"] for item in body]
        )

    def test_user_reads_only(self):
        """A BJ API User sees a configuration without its buttons or editable
        code, and reads its logs."""
        new_test_user(
            self.env,
            "bj_tour_user",
            groups="base.group_user,bj_api_sync.group_bj_api_user",
        )
        config = self.make_config(
            name="Tour read-only configuration",
            python_script="result = {'data': request_data}",
        )
        config.line_ids = [
            Command.create(
                {
                    "api_key": "source",
                    "value_type": "python",
                    "python_code": "result = 'odoo'",
                }
            )
        ]
        self.Log.create(
            {
                "config_id": config.id,
                "direction": "out",
                "state": "success",
                "status_code": 201,
                "request_method": "POST",
                "request_url": self.server.url("/tour"),
                "request_body": '{"ref": "tour-user"}',
                "response_body": '{"ok": true}',
            }
        )
        self.start_tour(
            "/odoo/action-bj_api_sync.bj_api_sync_config_action",
            "bj_api_sync_user_tour",
            login="bj_tour_user",
            timeout=120,
        )
        self.assertFalse(self.server.received, "a read-only user sent nothing")
