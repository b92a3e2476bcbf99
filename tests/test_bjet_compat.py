"""SPEC §13: scripts and calls written for BJET's module keep working — its
call form, its result dictionary, its log rows, the names its scripts use —
and BJET's Evaluate / Execute modes of Python code in both directions."""

from datetime import timedelta

from odoo import fields
from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.tests import new_test_user, tagged

from ..mapping import Mapping, MappingError
from ..tools import sandbox
from .common import BjApiSyncCase, Reply

#: BJET's documented call, as a server action runs it (``config_index`` is
#: put in front of it by each test).
BJET_SNIPPET = """\
result = env['bj.api.sync.config']._make_outbound_http_request(
    record_ids=records, config_id_ref=config_index)
if not result.get('success'):
    raise UserError(result.get('error'))
action = {'status': result.get('status_code'), 'data': result.get('data')}
"""

#: A Python line using every name SPEC §13 adds.
NAMES_LINE = """\
import re
encoded = b64encode(record.name.encode()).decode()
result = {
    'b64': encoded,
    'back': b64decode(encoded).decode(),
    'digits': re.sub(r'\\D', '', record.phone or ''),
    'utc': datetime(2024, 1, 2, 3, 4, tzinfo=timezone.utc).isoformat(),
    'year': dateutil.parser.isoparse('2031-05-06T07:08:09Z').year,
    'clock': isinstance(time.time(), float),
    'command': Command.set([7])[0] == 6,
    'error_class': UserError('x').args[0],
    're': repr(re),
}
"""
NAMES_EXPECTED = {
    "b64": "Qm9i",
    "back": "Bob",
    "digits": "15550100",
    "utc": "2024-01-02T03:04:00+00:00",
    "year": 2031,
    "clock": True,
    "command": True,
    "error_class": "x",
    "re": "<sandboxed module 're'>",
}


@tagged("post_install", "-at_install")
class TestBjetCompat(BjApiSyncCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.partner = cls.env["res.partner"].create(
            {"name": "Bob", "ref": "B-1", "phone": "+1 555-0100"}
        )
        cls.other = cls.env["res.partner"].create({"name": "Carol", "ref": "B-2"})
        cls.partners = cls.partner | cls.other
        cls.config = cls.make_config(
            filter_domain="[('ref', '=like', 'B-%')]",
            lines=[("name", "name", "plain")],
        )
        cls.give_xml_id(cls.config, "bjet_compat.partner_config")

    def bjet_send(self, **kwargs):
        return self.Config._make_outbound_http_request(**kwargs)

    # -- the call forms -------------------------------------------------------

    def test_bjet_form_recordset_and_config_id(self):
        logs = self.bjet_send(record_ids=self.partner, config_id_ref=self.config.id)
        self.assertEqual(logs._name, "bj.api.log")
        self.assertEqual(len(logs), 1)
        self.assertEqual(logs.res_ids, str(self.partner.id))
        self.assertEqual([r.json() for r in self.server.received], [{"name": "Bob"}])

    def test_bjet_form_list_of_ids_and_xml_id(self):
        logs = self.bjet_send(
            record_ids=[self.partner.id, self.other.id],
            config_id_ref="bjet_compat.partner_config",
        )
        self.assertEqual(len(logs), 2)
        self.assertEqual(logs.mapped("config_id"), self.config)
        self.assertEqual(
            sorted(r.json()["name"] for r in self.server.received), ["Bob", "Carol"]
        )

    def test_bjet_form_single_id_and_id_as_text(self):
        logs = self.bjet_send(
            record_ids=self.other.id, config_id_ref=str(self.config.id)
        )
        self.assertEqual(len(logs), 1)
        self.assertEqual(self.server.received[0].json(), {"name": "Carol"})

    def test_bjet_form_keeps_the_filter_domain(self):
        outside = self.env["res.partner"].create({"name": "Out", "ref": "Z-1"})
        logs = self.bjet_send(
            record_ids=[outside.id, self.partner.id], config_id_ref=self.config.id
        )
        self.assertEqual(len(logs), 1)
        self.assertEqual(self.server.received[0].json(), {"name": "Bob"})

    def test_bjet_form_from_a_server_action(self):
        self.server.script(Reply(200, body=b'{"id": 41}'))
        action = self.env["ir.actions.server"].create(
            {
                "name": "BJET snippet",
                "model_id": self.partner_model.id,
                "state": "code",
                "code": "config_index = 'bjet_compat.partner_config'\n" + BJET_SNIPPET,
            }
        )
        answer = action.with_context(
            active_model="res.partner", active_ids=self.partners.ids
        ).run()
        self.assertEqual(answer, {"status": 200, "data": {"ok": True}})
        self.assertEqual(len(self.server.received), 2)
        # A failure reaches the script through result.get('error').
        self.server.script(Reply(422, body=b'{"error": "bad name"}'))
        with self.assertRaises(UserError) as caught:
            action.with_context(
                active_model="res.partner", active_ids=self.partner.ids
            ).run()
        self.assertIn("HTTP 422", str(caught.exception))

    def test_seed_forms_still_work(self):
        logs = self.config._make_outbound_http_request(
            self.partner, self.config.id, timeout=60
        )
        self.assertEqual(logs.state, "success")
        logs = self.config._make_outbound_http_request(records=self.other)
        self.assertEqual(logs.state, "success")
        self.assertEqual(
            [r.json()["name"] for r in self.server.received], ["Bob", "Carol"]
        )
        # timeout, still third and positional, still overrides the read timeout
        self.server.script(Reply(delay=1.0))
        [log] = self.config._make_outbound_http_request(
            self.partner, self.config.id, 0.2
        )
        self.assertEqual(log.state, "error")
        self.assertIn("timed out", log.error_message.lower())

    def test_ids_are_read_with_the_callers_rights(self):
        manager = new_test_user(
            self.env,
            "bjet_manager",
            groups="base.group_user,bj_api_sync.group_bj_api_manager",
        )
        hidden = self.env["res.partner"].create({"name": "Hidden", "ref": "B-9"})
        self.env["ir.rule"].create(
            {
                "name": "hide one partner",
                "model_id": self.partner_model.id,
                "domain_force": f"[('id', '!=', {hidden.id})]",
            }
        )
        # Ids are browsed as the caller; a recordset is read as its own user,
        # as in the seed's form.
        Config = self.Config.with_user(manager)
        with self.assertRaises(AccessError):
            Config._make_outbound_http_request(
                record_ids=[hidden.id], config_id_ref=self.config.id
            )
        with self.assertRaises(AccessError):
            Config._make_outbound_http_request(
                record_ids=hidden.with_user(manager),
                config_id_ref="bjet_compat.partner_config",
            )
        self.assertFalse(self.server.received)
        logs = Config._make_outbound_http_request(
            record_ids=[self.partner.id], config_id_ref=self.config.id
        )
        self.assertEqual(logs.env.uid, manager.id)
        self.assertEqual(logs.get("success"), True)

    # -- bad input ------------------------------------------------------------

    def assertSendRefused(self, message, **kwargs):
        with self.assertRaises(UserError) as caught:
            self.bjet_send(**kwargs)
        self.assertIn(message, str(caught.exception))
        self.assertFalse(self.server.received)

    def test_unknown_config_refs(self):
        for ref, shown in (
            (987654321, "987654321"),
            ("987654321", "987654321"),
            ("bjet_compat.no_such_config", "bjet_compat.no_such_config"),
            ("no_dot_at_all", "no_dot_at_all"),
            ("base.main_partner", "base.main_partner"),  # not a configuration
            (self.partner, "res.partner"),
        ):
            with self.subTest(ref=ref):
                with self.assertRaises(UserError) as caught:
                    self.bjet_send(record_ids=self.partner, config_id_ref=ref)
                message = str(caught.exception)
                self.assertTrue(
                    message.startswith("Unknown API configuration: "), message
                )
                self.assertIn(shown, message)
                self.assertFalse(self.server.received)

    def test_records_of_another_model(self):
        self.assertSendRefused(
            "maps res.partner records, not res.users",
            record_ids=self.env.user,
            config_id_ref=self.config.id,
        )

    def test_bad_record_ids(self):
        self.assertSendRefused(
            "No res.partner record has the id(s) 987654321.",
            record_ids=[self.partner.id, 987654321],
            config_id_ref=self.config.id,
        )
        self.assertSendRefused(
            "not 'B-1'", record_ids=["B-1"], config_id_ref=self.config.id
        )

    def test_missing_or_doubled_arguments(self):
        self.assertSendRefused("No API configuration", record_ids=self.partner)
        self.assertSendRefused("No records to send", config_id_ref=self.config.id)
        self.assertSendRefused(
            "either records or record_ids",
            records=self.partner,
            record_ids=self.partner,
            config_id_ref=self.config.id,
        )
        with self.assertRaises(UserError) as caught:
            self.config._make_outbound_http_request(
                self.partner, config_id=self.config.id, config_id_ref=self.config.id
            )
        self.assertIn("either config_id or config_id_ref", str(caught.exception))

    # -- the result dictionary ------------------------------------------------

    def test_get_on_success_with_json(self):
        self.server.script(Reply(201, body=b'{"id": 7, "tags": ["a"]}'))
        result = self.bjet_send(record_ids=self.partner, config_id_ref=self.config.id)
        self.assertIs(result.get("success"), True)
        self.assertEqual(result.get("status_code"), 201)
        self.assertEqual(result.status_code, 201)
        self.assertEqual(result.get("data"), {"id": 7, "tags": ["a"]})
        self.assertIsNone(result.get("error"))
        self.assertIsNone(result.get("nope"))
        self.assertEqual(result.get("nope", "dflt"), "dflt")

    def test_get_data_not_json_is_text(self):
        self.server.script(Reply(200, body=b"OK, stored"))
        result = self.bjet_send(record_ids=self.partner, config_id_ref=self.config.id)
        self.assertEqual(result.get("data"), "OK, stored")
        self.server.script(Reply(204))
        result = self.bjet_send(record_ids=self.partner, config_id_ref=self.config.id)
        self.assertIs(result.get("success"), True)
        self.assertIsNone(result.get("data"))

    def test_get_on_failure(self):
        self.server.script(Reply(422, body=b'{"error": "bad name"}'))
        result = self.bjet_send(record_ids=self.partner, config_id_ref=self.config.id)
        self.assertIs(result.get("success"), False)
        self.assertEqual(result.get("status_code"), 422)
        self.assertEqual(result.get("data"), {"error": "bad name"})
        self.assertEqual(result.get("error"), result.error_message)
        self.assertIn("HTTP 422", result.get("error"))

    def test_get_on_several_rows(self):
        # one failure among several: not a success; the error is the failure's,
        # status and data those of the last request
        self.server.script(
            Reply(422, body=b'{"error": "first"}'), Reply(200, body=b'{"id": 2}')
        )
        result = self.bjet_send(
            record_ids=self.partners.ids, config_id_ref=self.config.id
        )
        self.assertEqual(len(result), 2)
        self.assertIs(result.get("success"), False)
        self.assertEqual(result.get("status_code"), 200)
        self.assertEqual(result.get("data"), {"id": 2})
        self.assertIn("HTTP 422", result.get("error"))
        with self.assertRaises(ValueError):
            result.status_code  # noqa: B018 - one row only, as a record field
        self.server.script(200, 200)
        result = self.bjet_send(
            record_ids=self.partners.ids, config_id_ref=self.config.id
        )
        self.assertIs(result.get("success"), True)

    def test_get_when_nothing_was_sent(self):
        outside = self.env["res.partner"].create({"name": "Out", "ref": "Z-1"})
        result = self.bjet_send(record_ids=outside, config_id_ref=self.config.id)
        self.assertFalse(result)
        self.assertIs(result.get("success"), False)
        self.assertIsNone(result.get("status_code"))
        self.assertIsNone(result.get("data"))
        self.assertEqual(result.get("error"), "No request was sent.")

    def test_get_on_a_connection_error(self):
        config = self.make_config(request_url="http://127.0.0.1:9/closed")
        result = config._make_outbound_http_request(self.partner)
        self.assertIs(result.get("success"), False)
        self.assertIsNone(result.get("status_code"))
        self.assertTrue(result.get("error"))

    # -- log rows written by scripts -----------------------------------------

    def test_log_create_with_name_and_status(self):
        log = self.Log.create(
            {"config_id": self.config.id, "name": "Synced X", "status": "success"}
        )
        self.assertEqual(log.name, "Synced X")
        self.assertEqual(log.state, "success")
        self.assertEqual(log.status, "success")
        self.assertEqual(log.display_name, "Synced X")
        log = self.Log.create({"config_id": self.config.id, "status": "error"})
        self.assertEqual(log.state, "error")
        log = self.Log.create({"config_id": self.config.id, "status": "skipped"})
        self.assertEqual((log.state, log.status), ("skipped", "skipped"))
        self.assertFalse(log.name)
        self.assertIn(log, self.Log.search([("status", "=", "skipped")]))
        with self.assertRaises(ValueError):
            self.Log.create({"config_id": self.config.id, "status": "great"})

    def test_status_and_state_both_ways(self):
        log = self.Log.create({"config_id": self.config.id, "state": "error"})
        self.assertEqual(log.status, "error")
        log.status = "skipped"
        self.assertEqual(log.state, "skipped")
        log.state = "success"
        self.assertEqual(log.status, "success")

    def test_name_computed_from_method_and_url(self):
        log = self.Log.create(
            {
                "config_id": self.config.id,
                "request_method": "PUT",
                "request_url": "https://api.example.com/x/1",
            }
        )
        self.assertEqual(log.name, "PUT https://api.example.com/x/1")
        log.request_url = "https://api.example.com/x/2"
        self.assertEqual(log.name, "PUT https://api.example.com/x/2")
        [sent] = self.config._make_outbound_http_request(self.partner)
        self.assertEqual(sent.name, f"POST {self.server.url()}")
        [fast] = self.Log.sudo()._insert_batch(
            [
                {
                    "config_id": self.config.id,
                    "request_method": "GET",
                    "request_url": "http://h/p",
                    "state": "success",
                },
            ]
        )
        self.assertEqual(fast.name, "GET http://h/p")
        [given] = self.Log.sudo()._insert_batch(
            [{"request_method": "GET", "name": "Mine", "state": "skipped"}]
        )
        self.assertEqual((given.name, given.status), ("Mine", "skipped"))

    def test_skipped_logs_follow_the_success_retention(self):
        log = self.Log.create({"config_id": self.config.id, "status": "skipped"})
        self.env.cr.execute(
            "UPDATE bj_api_log SET create_date = %s WHERE id = %s",
            (fields.Datetime.now() - timedelta(days=31), log.id),
        )
        self.env.invalidate_all()
        self.Log._gc_logs()
        self.assertFalse(log.exists())

    # -- the names scripts see ------------------------------------------------

    def test_python_line_sees_the_bjet_names(self):
        self.add_line(
            self.config, api_key="n", value_type="python", python_code=NAMES_LINE
        )
        [log] = self.config._make_outbound_http_request(self.partner)
        self.assertEqual(log.state, "success", log.error_message)
        self.assertEqual(self.server.received[0].json()["n"], NAMES_EXPECTED)

    def test_python_script_sees_the_bjet_names(self):
        self.config.python_script = NAMES_LINE.replace("record.", "records.") + (
            "result['body'] = request_data\n"
        )
        [log] = self.config._make_outbound_http_request(self.partner)
        self.assertEqual(log.state, "success", log.error_message)
        self.assertEqual(
            self.server.received[0].json(), dict(NAMES_EXPECTED, body={"name": "Bob"})
        )

    def test_user_error_in_code_is_a_clear_failure(self):
        raising = "raise UserError('No phone for %s' % record.name)"
        self.add_line(
            self.config, api_key="p", value_type="python", python_code=raising
        )
        [log] = self.config._make_outbound_http_request(self.partner)
        self.assertEqual(log.state, "error")
        self.assertIn("'p' failed: No phone for Bob", log.error_message)
        self.assertFalse(self.server.received)
        self.assertEqual(log.get("error"), log.error_message)

    def test_user_error_in_script_is_a_clear_failure(self):
        self.config.python_script = "raise UserError('Refused: %s' % records.name)"
        [log] = self.config._make_outbound_http_request(self.partner)
        self.assertEqual(log.state, "error")
        self.assertEqual(log.error_message, "Python Script failed: Refused: Bob")
        self.assertFalse(self.server.received)

    def test_in_line_sees_the_bjet_names(self):
        config = self.make_config(lines=[("ref", "ref", "plain")])
        self.add_line(
            config,
            api_key="name64",
            field_path="name",
            value_type="python",
            python_code="import re\nresult = re.sub(r'\\s+', ' ', "
            "b64decode(value).decode()).strip()",
        )
        self.add_line(
            config,
            api_key="when",
            field_path="comment",
            value_type="python",
            python_code="dateutil.parser.isoparse(value)"
            ".astimezone(timezone.utc).strftime('%Y-%m-%d %H:%M') "
            "+ (' ok' if time.time() and Command.clear() else '')",
        )
        self.add_line(
            config,
            api_key="check",
            field_path="function",
            value_type="python",
            python_code="if not value:\n    raise UserError('check is required')",
        )
        obj = {
            "ref": "R1",
            "name64": "ICBBZGEgICBMb3ZlbGFjZSA=",
            "when": "2024-01-02T05:04:00+02:00",
            "check": "x",
        }
        values, _unknown = Mapping(config).to_values(obj)
        self.assertEqual(
            values,
            {"ref": "R1", "name": "Ada Lovelace", "comment": "2024-01-02 03:04 ok"},
        )
        with self.assertRaises(MappingError) as caught:
            Mapping(config).to_values(dict(obj, check=""))
        self.assertIn("check is required", str(caught.exception))
        self.assertIn("'check'", str(caught.exception))

    # -- Evaluate and Execute modes ---------------------------------------------

    def test_out_line_evaluate_and_execute(self):
        for key, code in (
            ("evaluated", "record.name.upper()"),
            ("result_set", "x = record.name\nresult = x + '!'"),
            ("executed", "x = record.name\ny = 1"),
            ("none_expression", "record.name and None"),
        ):
            self.add_line(
                self.config, api_key=key, value_type="python", python_code=code
            )
        self.config._make_outbound_http_request(self.partner)
        self.assertEqual(
            self.server.received[0].json(),
            {
                "name": "Bob",
                "evaluated": "BOB",
                "result_set": "Bob!",
                "executed": None,
                "none_expression": None,
            },
        )

    def test_in_line_evaluate_and_execute(self):
        config = self.make_config(lines=[("ref", "ref", "plain")])
        for key, path, code in (
            ("n", "name", "value.title()"),
            ("e", "email", "result = value + '@example.com'"),
            ("c", "comment", "seen = value\ny = 1"),
            ("f", "function", "request_data.get('missing')"),
        ):
            self.add_line(
                config,
                api_key=key,
                field_path=path,
                value_type="python",
                python_code=code,
            )
        values, _unknown = Mapping(config).to_values(
            {"ref": "R", "n": "ada lovelace", "e": "ada", "c": "x", "f": "y"}
        )
        # Execute mode writes nothing; an expression worth None clears the field.
        self.assertEqual(
            values,
            {
                "ref": "R",
                "name": "Ada Lovelace",
                "email": "ada@example.com",
                "function": None,
            },
        )

    def test_out_script_evaluate_and_execute(self):
        for code, body in (
            (
                "{'wrapped': request_data, 'n': len(records)}",
                {"wrapped": {"name": "Bob"}, "n": 1},
            ),
            ("result = [request_data]", [{"name": "Bob"}]),
            ("x = 1\ny = request_data", {"name": "Bob"}),
            ("request_data['extra'] = 1", {"name": "Bob", "extra": 1}),
            ("request_data.update(extra=2)", {"name": "Bob", "extra": 2}),
        ):
            with self.subTest(code=code):
                self.server.reset()
                self.config.python_script = code
                [log] = self.config._make_outbound_http_request(self.partner)
                self.assertEqual(log.state, "success", log.error_message)
                self.assertEqual(self.server.received[0].json(), body)

    def make_in_config(self, script):
        config = self.make_config(lines=[("ref", "ref", "plain")])
        config.line_ids.is_identifier = True
        runner = new_test_user(self.env, "bjet_runner", groups="base.group_user")
        config.write(
            {
                "request_type": "in",
                "endpoint": "bjet-compat",
                "run_as_user_id": runner.id,
                "python_script": script,
            }
        )
        return config

    def run_in_script(self, config, obj):
        mapping = Mapping(config)
        model = self.env["res.partner"]
        return config._inbound_run_script(mapping, model, obj, model.browse())

    def test_in_script_evaluate_and_execute(self):
        config = self.make_in_config(
            "dict(request_data, ref='R-' + request_data['ref'])"
        )
        self.assertEqual(self.run_in_script(config, {"ref": "1"}), {"ref": "R-1"})
        config.python_script = "result = {'ref': b64decode(request_data['b']).decode()}"
        self.assertEqual(self.run_in_script(config, {"b": "WDk="}), {"ref": "X9"})
        config.python_script = (
            "import re\nrequest_data['ref'] = re.sub('-', '', request_data['ref'])"
        )
        self.assertEqual(self.run_in_script(config, {"ref": "A-1"}), {"ref": "A1"})
        config.python_script = "x = 1\ny = request_data"
        self.assertEqual(self.run_in_script(config, {"ref": "2"}), {"ref": "2"})
        config.python_script = "raise UserError('ref %s refused' % request_data['ref'])"
        with self.assertRaises(UserError) as caught:
            self.run_in_script(config, {"ref": "3"})
        self.assertEqual(str(caught.exception), "ref 3 refused")

    # -- what stays refused ---------------------------------------------------

    def test_escapes_stay_refused(self):
        for code, message in (
            ("import os", "import of 'os' is not allowed"),
            ("from re import *", "import of 're.*' is not allowed"),
            ("import re\nresult = re.__dict__", "uses '__dict__'"),
            ("import re\nresult = re.sub.__globals__", "uses '__globals__'"),
        ):
            with self.subTest(code=code):
                with self.assertRaises(ValidationError) as caught:
                    self.config.python_script = code
                self.assertIn(message, str(caught.exception))
                with self.assertRaises(ValidationError) as caught:
                    self.add_line(
                        self.config, api_key="x", value_type="python", python_code=code
                    )
                self.assertIn(message, str(caught.exception))

    def test_sandboxed_re_at_run_time(self):
        context = sandbox.eval_context()
        self.assertIs(
            sandbox.run("import re\nresult = re", context), sandbox.SANDBOXED_RE
        )
        self.assertEqual(
            sandbox.run(
                "import re\nresult = re.findall(r'\\d+', 'a1b22', flags=re.I)",
                sandbox.eval_context(),
            ),
            ["1", "22"],
        )
        for code in (
            # safe_eval refuses attribute stores; the module is read-only anyway
            "import re\nre.sub = None",
            "import re\nresult = re.purge()",
            "import re\nresult = re._compile('x', 0)",
            "import re\nresult = re.sre_compile",
        ):
            with self.subTest(code=code), self.assertRaises(ValueError):
                sandbox.run(code, sandbox.eval_context())
        self.assertEqual(sandbox.SANDBOXED_RE.sub("a", "b", "aa"), "bb")
