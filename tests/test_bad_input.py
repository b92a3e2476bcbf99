import psycopg2

from odoo import Command
from odoo.exceptions import UserError, ValidationError
from odoo.tests import tagged
from odoo.tools import mute_logger

from .common import BjApiSyncCase


def assert_refused_by_database(case, fragment, save):
    """``save()`` breaks one of the configuration's database constraints, whose
    message (what users see) contains ``fragment``."""
    with (
        case.assertRaises(psycopg2.IntegrityError) as caught,
        mute_logger("odoo.sql_db"),
        case.env.cr.savepoint(),
    ):
        save()
        case.env.flush_all()
    message = case.env["bj.api.sync.config"]._sql_error_to_message(caught.exception)
    case.assertIn(fragment, message)


@tagged("post_install", "-at_install")
class TestBadInput(BjApiSyncCase):
    """Every bad input of the contract is refused with a message naming it."""

    def assertRefused(self, message, **values):
        with self.assertRaises(ValidationError) as caught:
            self.make_config(**values)
        self.assertIn(message, str(caught.exception))
        return caught.exception

    def assertLineRefused(self, message, **line):
        config = self.make_config()
        with self.assertRaises(ValidationError) as caught:
            config.line_ids = [Command.create(dict({"api_key": "k"}, **line))]
            config.line_ids.flush_recordset()
        self.assertIn(message, str(caught.exception))

    def test_url_not_http(self):
        self.assertRefused("http:// or https://", request_url="ftp://example.com/x")

    def test_url_without_host(self):
        self.assertRefused("no host", request_url="http:///partners")

    def test_out_without_url(self):
        self.assertRefused("needs a Request URL", request_url=False)

    def test_out_without_method(self):
        self.assertRefused(
            "exactly one HTTP method (0 selected)", http_method_ids=[Command.clear()]
        )

    def test_out_with_several_methods(self):
        both = (self.method_get | self.method_post).ids
        self.assertRefused(
            "exactly one HTTP method (2 selected)",
            http_method_ids=[Command.set(both)],
        )

    def test_domain_unparsable(self):
        error = self.assertRefused("Filter Domain", filter_domain="[('name', '=',")
        self.assertIn("not valid", str(error))

    def test_domain_unknown_field(self):
        error = self.assertRefused(
            "Filter Domain", filter_domain="[('no_such_field', '=', 1)]"
        )
        self.assertIn("no_such_field", str(error))

    def test_field_path_unknown(self):
        self.assertLineRefused("has no field 'nope'", field_path="country_id.nope")

    def test_field_path_through_non_relational(self):
        self.assertLineRefused(
            "'name' is a char field, not a relation", field_path="name.x"
        )

    def test_field_path_group_restricted(self):
        config_model = self.env["ir.model"]._get("bj.api.sync.config")
        with self.assertRaises(ValidationError) as caught:
            self.make_config(
                model_id=config_model.id, lines=[("bearer_token", "token", "plain")]
            )
        self.assertIn("restricted to some user groups", str(caught.exception))
        self.assertIn("bearer_token", str(caught.exception))

    def test_plain_line_without_field(self):
        self.assertLineRefused("an Odoo field is required", field_path=False)

    def test_api_key_with_empty_part(self):
        self.assertLineRefused("is not valid", field_path="name", api_key="a..b")

    def test_mapping_without_config(self):
        self.assertLineRefused(
            "needs a Mapping Configuration",
            field_path="country_id",
            value_type="mapping",
        )

    def test_mapping_on_wrong_model(self):
        other = self.make_config(name="Partner map")
        self.assertLineRefused(
            "points to res.country",
            field_path="country_id",
            value_type="mapping",
            mapping_config_id=other.id,
        )

    def test_mapping_cycle(self):
        first = self.make_config(name="First")
        second = self.make_config(name="Second")
        second.line_ids = [
            Command.create(
                {
                    "field_path": "parent_id",
                    "api_key": "parent",
                    "value_type": "mapping",
                    "mapping_config_id": first.id,
                }
            )
        ]
        with self.assertRaises(ValidationError) as caught:
            first.line_ids = [
                Command.create(
                    {
                        "field_path": "parent_id",
                        "api_key": "parent",
                        "value_type": "mapping",
                        "mapping_config_id": second.id,
                    }
                )
            ]
        self.assertIn("Mapping cycle", str(caught.exception))
        self.assertIn("First → Second → First", str(caught.exception))

    def test_mapping_self_cycle(self):
        config = self.make_config(name="Self")
        with self.assertRaises(ValidationError) as caught:
            config.line_ids = [
                Command.create(
                    {
                        "field_path": "parent_id",
                        "api_key": "parent",
                        "value_type": "mapping",
                        "mapping_config_id": config.id,
                    }
                )
            ]
        self.assertIn("Mapping cycle: Self → Self", str(caught.exception))

    def test_python_code_syntax_error(self):
        self.assertLineRefused(
            "syntax error at line 2",
            value_type="python",
            python_code="x = 1\nresult = (",
        )

    def test_python_code_empty(self):
        self.assertLineRefused("has no code", value_type="python", python_code=" ")

    def test_python_script_syntax_error(self):
        error = self.assertRefused("Python Script", python_script="if True\n  x = 1")
        self.assertIn("syntax error at line 1", str(error))

    def test_python_imports_refused(self):
        error = self.assertRefused(
            "import of 'os' is not allowed", python_script="import os"
        )
        self.assertIn("line 1", str(error))
        self.assertRefused(
            "import of 'subprocess' is not allowed",
            python_script="x = 1\nfrom subprocess import run",
        )
        self.assertLineRefused(
            "import of 'sys' is not allowed",
            value_type="python",
            python_code="import sys",
        )

    def test_python_forbidden_names_refused(self):
        for code, name in (
            ("result = open('/etc/passwd').read()", "open"),
            ("result = eval('1')", "eval"),
            ("exec('x = 1')", "exec"),
            ("result = records.__class__", "__class__"),
        ):
            self.assertRefused(f"uses '{name}'", python_script=code)
            self.assertLineRefused(
                f"uses '{name}'", value_type="python", python_code=code
            )

    def test_header_name_invalid(self):
        with self.assertRaises(ValidationError) as caught:
            self.make_config(
                header_ids=[Command.create({"key": "X Bad", "value": "1"})]
            )
        self.assertIn("'X Bad' is not a valid HTTP header name", str(caught.exception))

    def test_page_size_below_one(self):
        assert_refused_by_database(
            self,
            "Page Size must be between 1 and 10000",
            lambda: self.make_config(is_paginated=True, page_size=0),
        )

    def test_timeouts_not_positive(self):
        assert_refused_by_database(
            self,
            "Connection Timeout must be more than 0",
            lambda: self.make_config(connect_timeout=0),
        )
        assert_refused_by_database(
            self,
            "Read Timeout must be more than 0",
            lambda: self.make_config(read_timeout=-1),
        )

    def test_placeholders_on_paginated(self):
        self.assertRefused(
            "cannot be used on a paginated configuration",
            request_url=self.server.url("/p/{ref}"),
            is_paginated=True,
        )

    def test_placeholder_unknown_field(self):
        self.assertRefused(
            "has no field 'nope'", request_url=self.server.url("/p/{nope}")
        )

    def make_in_config(self, **values):
        config = self.make_config()
        config.line_ids.is_identifier = True
        # In configurations answer an endpoint as a Run As user (SPEC §11).
        values.setdefault("endpoint", "bad-input")
        values.setdefault("run_as_user_id", self.env.ref("base.user_admin").id)
        config.write(dict(request_type="in", **values))
        return config

    def test_send_on_in_config(self):
        config = self.make_in_config()
        with self.assertRaises(UserError) as caught:
            config._make_outbound_http_request(self.env.user.partner_id)
        self.assertIn("not an outbound (Out) configuration", str(caught.exception))

    def test_send_without_url(self):
        config = self.make_in_config(request_url=False)
        with self.assertRaises(UserError) as caught:
            config._make_outbound_http_request(self.env.user.partner_id)
        self.assertIn("it has no Request URL", str(caught.exception))

    def test_send_without_lines(self):
        config = self.make_config(lines=())
        with self.assertRaises(UserError) as caught:
            config._make_outbound_http_request(self.env.user.partner_id)
        self.assertIn("it has no field mappings", str(caught.exception))

    def test_send_records_of_another_model(self):
        config = self.make_config()
        with self.assertRaises(UserError) as caught:
            config._make_outbound_http_request(self.env.user)
        self.assertIn("maps res.partner records, not res.users", str(caught.exception))
        self.assertFalse(self.server.received)
