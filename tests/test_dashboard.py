"""The Overview dashboard: health figures of configurations, and the views."""

from datetime import timedelta

from odoo import Command, fields
from odoo.exceptions import AccessError
from odoo.tests import tagged
from odoo.tools import SQL

from .common import BjApiSyncCase, UsersMixin


@tagged("post_install", "-at_install")
class TestDashboardStats(UsersMixin, BjApiSyncCase):
    """Figures computed from real log and delivery rows."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.make_users()
        cls.out = cls.make_config(name="Dash out", company_id=cls.env.company.id)
        cls.inbound = cls.Config.create(
            {
                "name": "Dash in",
                "request_type": "in",
                "endpoint": "dash-in",
                "model_id": cls.partner_model.id,
                "http_method_ids": [Command.set(cls.method_post.ids)],
                "auth_type": "bearer",
                "bearer_token": "dash-token-0123456789",
                "run_as_user_id": cls.internal.id,
                "line_ids": [
                    Command.create(
                        {"field_path": "ref", "api_key": "ref", "is_identifier": True}
                    )
                ],
            }
        )
        cls.idle = cls.make_config(name="Dash idle")

    # -- helpers ---------------------------------------------------------------

    def log(self, config, state="success", duration=10, age=None, **values):
        """A log row of ``config``, ``age`` old (default: now)."""
        log = self.Log.create(
            dict(
                config_id=config.id,
                direction=config.request_type,
                state=state,
                duration_ms=duration,
                request_method="POST",
                request_url="http://127.0.0.1/dash",
                **values,
            )
        )
        if age:
            self.set_column(log, "create_date", fields.Datetime.now() - age)
        return log

    def set_column(self, records, column, value):
        """Write a column in SQL (create_date, or a value rules read)."""
        records.flush_recordset()
        self.env.cr.execute(
            SQL(
                "UPDATE %s SET %s = %s WHERE id IN %s",
                SQL.identifier(records._table),
                SQL.identifier(column),
                value,
                tuple(records.ids),
            )
        )
        records.invalidate_recordset()

    def deliveries(self, config, *states):
        return self.env["bj.api.sync.delivery"].create(
            [
                {
                    "config_id": config.id,
                    "res_model": "res.partner",
                    "res_ids": "1",
                    "payload": "{}",
                    "state": state,
                    "idempotency_key": f"dash-{config.id}-{index}-{state}",
                }
                for index, state in enumerate(states)
            ]
        )

    def stats(self, config, user=None):
        config = config.with_user(user) if user else config
        config.invalidate_recordset()
        return config

    # -- tests -----------------------------------------------------------------

    def test_out_figures(self):
        for duration in (10, 20, 40, 1000):
            self.log(self.out, duration=duration)
        self.log(self.out, "error", duration=30, error_message="HTTP 503: boom\nbody")
        # Neither counted: a script row that sent nothing, and an old error.
        self.log(self.out, "skipped", duration=5000)
        self.log(
            self.out, "error", 9000, age=timedelta(hours=48), error_message="old one"
        )
        self.deliveries(self.out, "pending", "pending", "retrying", "done", "cancelled")

        config = self.stats(self.out)
        self.assertEqual(config.stats_request_count, 5)
        self.assertEqual(config.stats_error_count, 1)
        self.assertTrue(config.stats_has_rate)
        self.assertAlmostEqual(config.stats_success_rate, 80.0)
        self.assertEqual(config.stats_latency_ms, 30)
        self.assertEqual(config.stats_queue_depth, 3)
        self.assertEqual(config.stats_dead_count, 0)
        # The last error is the newest one; its first line only.
        self.assertEqual(config.stats_last_error, "HTTP 503: boom")
        self.assertTrue(config.stats_last_error_at)
        # 20 % errors is not above 20 %.
        self.assertEqual(config.health_state, "active")
        self.assertEqual(config.health_color, 10)

        self.log(self.out, "error", duration=50)
        config = self.stats(self.out)
        self.assertEqual(config.stats_request_count, 6)
        self.assertEqual(config.stats_latency_ms, 35)  # (30 + 40) / 2
        self.assertEqual(config.health_state, "failing")
        self.assertEqual(config.health_color, 1)
        # The newest error has no message: its status stands for it.
        self.assertEqual(config.stats_last_error, "HTTP ?")

    def test_dead_deliveries_fail_an_out_config(self):
        self.log(self.out)
        self.deliveries(self.out, "pending", "dead")
        config = self.stats(self.out)
        self.assertEqual(config.stats_queue_depth, 1)
        self.assertEqual(config.stats_dead_count, 1)
        self.assertEqual(config.health_state, "failing")

    def test_paused(self):
        self.deliveries(self.out, "dead")
        self.out.sync_state = "paused"
        config = self.stats(self.out)
        self.assertEqual(config.health_state, "paused")
        self.assertEqual(config.health_color, 2)

    def test_in_config(self):
        for state in ("success", "success", "error", "success", "success"):
            self.log(self.inbound, state, duration=7)
        config = self.stats(self.inbound)
        self.assertEqual(config.stats_success_rate, 80.0)
        self.assertEqual(config.stats_latency_ms, 7)
        self.assertEqual(config.stats_last_error, "HTTP ?")
        self.assertEqual(config.health_state, "active")
        self.log(self.inbound, "error", duration=7, status_code=422)
        config = self.stats(self.inbound)
        self.assertEqual(config.health_state, "failing")
        self.assertEqual(config.stats_last_error, "HTTP 422")
        # Logging errors only: no success rate to judge by.
        self.inbound.log_level = "errors"
        config = self.stats(self.inbound)
        self.assertFalse(config.stats_has_rate)
        self.assertEqual(config.stats_success_rate, 0.0)
        self.assertEqual(config.health_state, "active")
        self.assertEqual(config.stats_error_count, 2)

    def test_no_activity(self):
        config = self.stats(self.idle)
        self.assertEqual(config.health_state, "active")
        self.assertEqual(config.stats_request_count, 0)
        self.assertFalse(config.stats_has_rate)
        self.assertEqual(config.stats_latency_ms, 0)
        self.assertFalse(config.stats_last_error)
        self.assertFalse(config.stats_last_error_at)

    def test_search_health_state(self):
        self.log(self.out, "error")
        self.log(self.inbound)
        failing = self.Config.search([("health_state", "=", "failing")])
        self.assertIn(self.out, failing)
        self.assertNotIn(self.inbound, failing)
        healthy = self.Config.search([("health_state", "!=", "failing")])
        self.assertIn(self.inbound, healthy)
        self.assertNotIn(self.out, healthy)
        self.out.sync_state = "paused"
        self.assertEqual(
            self.Config.search(
                [("health_state", "=", "paused"), ("id", "=", self.out.id)]
            ),
            self.out,
        )

    def test_figures_in_bulk(self):
        self.log(self.out)
        self.log(self.inbound, "error", error_message="bad")
        configs = self.Config.browse((self.out | self.inbound | self.idle).ids)
        configs.read(["request_type", "sync_state", "log_level"])
        # Two log queries and one delivery query, whatever the number of cards.
        with self.assertQueryCount(3):
            configs.mapped("health_state")
        self.assertEqual(configs.mapped("stats_request_count"), [1, 1, 0])

    def test_other_company_rows_not_counted(self):
        shared = self.make_config(name="Dash shared")  # no company: seen by all
        mine = self.log(shared) | self.log(shared, "error", error_message="mine")
        theirs = self.log(shared, "error", error_message="main company only")
        self.set_column(theirs, "company_id", self.env.company.id)
        queued = self.deliveries(shared, "pending", "dead")
        self.set_column(queued[1], "company_id", self.env.company.id)
        self.assertTrue(mine)

        # A user of the main company reads every row...
        config = self.stats(shared, self.bj_user)
        self.assertEqual(config.stats_request_count, 3)
        self.assertEqual(config.stats_last_error, "main company only")
        self.assertEqual(config.stats_dead_count, 1)
        self.assertEqual(config.health_state, "failing")
        # ... a manager of company B only the rows its rules let it read.
        config = self.stats(shared, self.other_manager)
        self.assertEqual(config.stats_request_count, 2)
        self.assertEqual(config.stats_error_count, 1)
        self.assertEqual(config.stats_success_rate, 50.0)
        self.assertEqual(config.stats_last_error, "mine")
        self.assertEqual(config.stats_queue_depth, 1)
        self.assertEqual(config.stats_dead_count, 0)
        # ... and not the configurations of the main company at all.
        self.log(self.out, "error")
        visible = self.Config.with_user(self.other_manager).search(
            [("health_state", "=", "failing")]
        )
        self.assertNotIn(self.out.id, visible.ids)
        self.assertIn(shared.id, visible.ids)


@tagged("post_install", "-at_install")
class TestDashboardViews(UsersMixin, BjApiSyncCase):
    """The Overview, graph and pivot views load for BJ API users and managers;
    only managers change things from them."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.make_users()
        cls.config = cls.make_config(name="Dash views", company_id=cls.env.company.id)
        cls.Log.create(
            {"config_id": cls.config.id, "state": "error", "duration_ms": 12}
        )

    VIEWS = (
        ("bj.api.sync.config", "bj_api_sync.bj_api_sync_config_view_kanban", "kanban"),
        ("bj.api.sync.config", "bj_api_sync.bj_api_sync_config_view_form", "form"),
        ("bj.api.sync.config", "bj_api_sync.bj_api_sync_config_view_search", "search"),
        ("bj.api.log", "bj_api_sync.bj_api_log_view_graph", "graph"),
        ("bj.api.log", "bj_api_sync.bj_api_log_view_pivot", "pivot"),
        (
            "bj.api.sync.delivery",
            "bj_api_sync.bj_api_sync_delivery_view_graph",
            "graph",
        ),
        (
            "bj.api.sync.delivery",
            "bj_api_sync.bj_api_sync_delivery_view_pivot",
            "pivot",
        ),
    )

    def test_views_load(self):
        for user in (self.bj_user, self.bj_manager):
            for model, xml_id, view_type in self.VIEWS:
                with self.subTest(user=user.login, view=xml_id):
                    view = self.env.ref(xml_id)
                    result = (
                        self.env[model]
                        .with_user(user)
                        .get_views([(view.id, view_type)])
                    )
                    self.assertIn(view_type, result["views"])

    def test_kanban_reads_as_user(self):
        kanban = self.env.ref("bj_api_sync.bj_api_sync_config_view_kanban")
        for user in (self.bj_user, self.bj_manager):
            Config = self.Config.with_user(user)
            views = Config.get_views([(kanban.id, "kanban")])
            spec = {
                name: {}
                for name in views["models"]["bj.api.sync.config"]["fields"]
                if name in Config._fields
            }
            result = Config.web_search_read(
                [("id", "=", self.config.id)], specification=spec
            )
            record = result["records"][0]
            self.assertEqual(record["health_state"], "failing")
            self.assertEqual(record["stats_last_error"], "HTTP ?")

    def test_graph_and_pivot_groups_as_user(self):
        Log = self.env["bj.api.log"].with_user(self.bj_user)
        groups = Log.formatted_read_group(
            [("config_id", "=", self.config.id)],
            ["create_date:hour", "state"],
            ["__count"],
        )
        self.assertEqual([group["__count"] for group in groups], [1])
        groups = Log.formatted_read_group(
            [("config_id", "=", self.config.id)], ["config_id"], ["duration_ms:avg"]
        )
        self.assertEqual(groups[0]["duration_ms:avg"], 12)
        self.assertEqual(Log._fields["duration_ms"].aggregator, "avg")
        Delivery = self.env["bj.api.sync.delivery"].with_user(self.bj_user)
        Delivery.formatted_read_group([], ["state", "event"], ["__count"])

    def test_actions(self):
        for xml_id in ("bj_api_log_action", "bj_api_sync_delivery_action"):
            action = self.env.ref(f"bj_api_sync.{xml_id}")
            self.assertEqual(action.view_mode, "list,form,graph,pivot")
        overview = self.env.ref("bj_api_sync.bj_api_sync_config_action_overview")
        self.assertEqual(overview.view_mode.split(",")[0], "kanban")
        root = self.env.ref("bj_api_sync.bj_api_sync_menu_root")
        first = root.child_id.sorted(lambda menu: (menu.sequence, menu.id))[:1]
        self.assertEqual(first, self.env.ref("bj_api_sync.bj_api_sync_overview_menu"))
        # The card buttons: read-only ones for every BJ API user...
        config = self.config.with_user(self.bj_user)
        self.assertEqual(
            config.action_view_logs()["domain"], [("config_id", "=", self.config.id)]
        )
        self.assertEqual(
            config.action_view_deliveries()["domain"],
            [("config_id", "=", self.config.id)],
        )
        # ... Resume for managers only.
        self.config.sync_state = "paused"
        with self.assertRaises(AccessError):
            config.action_resume()
        self.config.with_user(self.bj_manager).action_resume()
        self.assertEqual(self.config.sync_state, "active")

    def test_field_path_selector(self):
        form = self.env.ref("bj_api_sync.bj_api_sync_config_view_form")
        arch = self.Config.get_views([(form.id, "form")])["views"]["form"]["arch"]
        self.assertIn('widget="field_selector"', arch)
