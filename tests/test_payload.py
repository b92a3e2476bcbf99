import base64
from datetime import date, datetime

from odoo import Command
from odoo.tests import tagged

from ..mapping import Mapping, plain_converter
from .common import BjApiSyncCase


@tagged("post_install", "-at_install")
class TestPayload(BjApiSyncCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.country = cls.env.ref("base.be")
        cls.tag_a = cls.env["res.partner.category"].create({"name": "A"})
        cls.tag_b = cls.env["res.partner.category"].create({"name": "B"})
        cls.company = cls.env["res.partner"].create(
            {"name": "Parent Co", "is_company": True, "country_id": cls.country.id}
        )
        cls.partner = cls.env["res.partner"].create(
            {
                "name": "Alice",
                "email": "alice@example.com",
                "phone": "555-0100",
                "parent_id": cls.company.id,
                "country_id": cls.country.id,
                "category_id": [Command.set([cls.tag_a.id, cls.tag_b.id])],
                "partner_latitude": 50.5,
                "color": 3,
                "image_1920": False,
            }
        )

    def build(self, config, records):
        objects, errors = Mapping(config).build_objects(records)
        self.assertEqual(errors, [None] * len(records))
        return objects

    def test_plain_values_by_type(self):
        config = self.make_config(
            lines=[
                ("id", "id", "plain"),
                ("name", "name", "plain"),
                ("email", "email", "plain"),
                ("website", "website", "plain"),
                ("color", "color", "plain"),
                ("partner_latitude", "lat", "plain"),
                ("is_company", "is_company", "plain"),
                ("active", "active", "plain"),
                ("create_date", "created", "plain"),
                ("type", "type", "plain"),
                ("parent_id", "parent", "plain"),
                ("user_id", "user", "plain"),
                ("category_id", "tags", "plain"),
                ("image_1920", "image", "plain"),
            ]
        )
        self.partner.create_date  # noqa: B018 - make sure it is loaded
        obj = self.build(config, self.partner)[0]
        self.assertEqual(obj["id"], self.partner.id)
        self.assertEqual(obj["name"], "Alice")
        self.assertIsNone(obj["website"], "empty char is null")
        self.assertEqual(obj["color"], 3)
        self.assertEqual(obj["lat"], 50.5)
        self.assertIs(obj["is_company"], False)
        self.assertIs(obj["active"], True)
        rate_date = self.env["res.currency.rate"]._fields["name"]
        self.assertEqual(
            plain_converter(rate_date.type)(date(2024, 2, 29)), "2024-02-29"
        )
        self.assertIsNone(plain_converter(rate_date.type)(False))
        created = self.partner.create_date
        self.assertEqual(obj["created"], created.strftime("%Y-%m-%dT%H:%M:%SZ"))
        self.assertEqual(obj["type"], "contact")
        self.assertEqual(obj["parent"], self.company.id)
        self.assertIsNone(obj["user"])
        self.assertEqual(sorted(obj["tags"]), sorted([self.tag_a.id, self.tag_b.id]))
        self.assertIsNone(obj["image"])

    def test_binary_is_base64(self):
        pixel = base64.b64encode(
            base64.b64decode(
                "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
                "+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
            )
        )
        self.partner.image_1920 = pixel
        config = self.make_config(lines=[("image_1920", "image", "plain")])
        obj = self.build(config, self.partner)[0]
        self.assertIsInstance(obj["image"], str)
        self.assertTrue(base64.b64decode(obj["image"]).startswith(b"\x89PNG"))

    def test_relational_and_paths(self):
        config = self.make_config(
            lines=[
                ("parent_id", "company", "relational"),
                ("parent_id.country_id.code", "company_country", "plain"),
                ("category_id", "tag_names", "relational"),
                ("category_id.name", "tag_names_plain", "plain"),
                ("country_id.name", "country", "relational"),
                ("user_id", "salesperson", "relational"),
            ]
        )
        obj = self.build(config, self.partner)[0]
        self.assertEqual(obj["company"], "Parent Co")
        self.assertEqual(obj["company_country"], "BE")
        self.assertEqual(sorted(obj["tag_names"]), ["A", "B"])
        self.assertEqual(sorted(obj["tag_names_plain"]), ["A", "B"])
        self.assertEqual(obj["country"], "Belgium")
        self.assertIsNone(obj["salesperson"])

    def test_path_through_empty_many2one(self):
        config = self.make_config(lines=[("user_id.login", "login", "plain")])
        self.assertIsNone(self.build(config, self.partner)[0]["login"])

    def test_nested_keys(self):
        config = self.make_config(
            lines=[
                ("name", "customer.name", "plain"),
                ("email", "customer.contact.email", "plain"),
                ("country_id.code", "customer.address.country", "plain"),
            ]
        )
        obj = self.build(config, self.partner)[0]
        self.assertEqual(
            obj,
            {
                "customer": {
                    "name": "Alice",
                    "contact": {"email": "alice@example.com"},
                    "address": {"country": "BE"},
                }
            },
        )

    def test_mapping_nested_config(self):
        country_config = self.Config.create(
            {
                "name": "Country",
                "request_type": "out",
                "model_id": self.env["ir.model"]._get("res.country").id,
                "request_url": self.server.url("/countries"),
                "http_method_ids": [Command.set(self.method_post.ids)],
                "line_ids": [
                    Command.create({"field_path": "code", "api_key": "iso"}),
                    Command.create({"field_path": "name", "api_key": "label"}),
                ],
            }
        )
        tag_model = self.env["ir.model"]._get("res.partner.category")
        tag_config = self.Config.create(
            {
                "name": "Tag",
                "request_type": "out",
                "model_id": tag_model.id,
                "request_url": self.server.url("/tags"),
                "http_method_ids": [Command.set(self.method_post.ids)],
                "line_ids": [Command.create({"field_path": "name", "api_key": "n"})],
            }
        )
        config = self.make_config(lines=[("name", "name", "plain")])
        config.line_ids = [
            Command.create(
                {
                    "field_path": "country_id",
                    "api_key": "country",
                    "value_type": "mapping",
                    "mapping_config_id": country_config.id,
                }
            ),
            Command.create(
                {
                    "field_path": "category_id",
                    "api_key": "tags",
                    "value_type": "mapping",
                    "mapping_config_id": tag_config.id,
                }
            ),
            Command.create(
                {
                    "field_path": "user_id",
                    "api_key": "user",
                    "value_type": "mapping",
                    "mapping_config_id": self.Config.create(
                        {
                            "name": "User",
                            "request_type": "out",
                            "model_id": self.env["ir.model"]._get("res.users").id,
                            "request_url": self.server.url("/u"),
                            "http_method_ids": [Command.set(self.method_post.ids)],
                            "line_ids": [
                                Command.create({"field_path": "login", "api_key": "l"})
                            ],
                        }
                    ).id,
                }
            ),
        ]
        obj = self.build(config, self.partner)[0]
        self.assertEqual(obj["country"], {"iso": "BE", "label": "Belgium"})
        self.assertEqual(sorted(t["n"] for t in obj["tags"]), ["A", "B"])
        self.assertIsNone(obj["user"])

    def test_python_line_seed_example(self):
        """The documentation's phone formatting example, as written."""
        code = (
            "# Example: Format phone number\n"
            "phone = records.phone or ''\n"
            "if phone.startswith('+'):\n"
            "    result = phone\n"
            "else:\n"
            "    result = '+1' + phone.replace('-', '').replace(' ', '')\n"
        )
        config = self.make_config(lines=[("name", "name", "plain")])
        config.line_ids = [
            Command.create(
                {"api_key": "phone", "value_type": "python", "python_code": code}
            ),
            Command.create(
                {
                    "field_path": "email",
                    "api_key": "domain",
                    "value_type": "python",
                    "python_code": "result = value.split('@')[1] + ':' + record.name",
                }
            ),
        ]
        obj = self.build(config, self.partner)[0]
        self.assertEqual(obj["phone"], "+15550100")
        self.assertEqual(obj["domain"], "example.com:Alice")

    def test_python_script_seed_examples(self):
        config = self.make_config(
            lines=[("name", "name", "plain")],
            python_script=(
                "# Example: Add timestamp\n"
                "from datetime import datetime\n"
                "import json\n"
                "result = {\n"
                "    'data': request_data,\n"
                "    'timestamp': datetime.now().isoformat(),\n"
                "    'source': 'odoo',\n"
                "    'echo': json.loads(json.dumps(request_data)),\n"
                "}\n"
            ),
        )
        units = list(config._prepare_units(self.partner))
        self.assertEqual(len(units), 1)
        body = units[0].body
        self.assertEqual(body["data"], {"name": "Alice"})
        self.assertEqual(body["echo"], {"name": "Alice"})
        self.assertEqual(body["source"], "odoo")
        self.assertTrue(datetime.fromisoformat(body["timestamp"]))

    def test_python_script_total_example(self):
        config = self.make_config(
            lines=[("name", "name", "plain")],
            is_paginated=True,
            page_size=10,
            python_script=(
                "total = sum(records.mapped('color'))\n"
                "result = {'total_revenue': total, 'order_count': len(records)}\n"
            ),
        )
        partners = self.make_partners(3, color=2)
        units = list(config._prepare_units(partners))
        self.assertEqual(units[0].body, {"total_revenue": 6, "order_count": 3})

    def test_script_without_result_keeps_body(self):
        config = self.make_config(
            lines=[("name", "name", "plain")],
            python_script="request_data['extra'] = 1",
        )
        unit = next(config._prepare_units(self.partner))
        self.assertEqual(unit.body, {"name": "Alice", "extra": 1})

    def test_allowed_imports_in_python_line(self):
        config = self.make_config(lines=[("name", "name", "plain")])
        config.line_ids = [
            Command.create(
                {
                    "api_key": "v",
                    "value_type": "python",
                    "python_code": (
                        "import math\n"
                        "from dateutil.relativedelta import relativedelta\n"
                        "from datetime import date as d\n"
                        "result = [math.floor(2.7), "
                        "str(d(2024, 1, 31) + relativedelta(months=1))]\n"
                    ),
                }
            )
        ]
        self.assertEqual(self.build(config, self.partner)[0]["v"], [2, "2024-02-29"])

    def test_query_count_independent_of_page_size(self):
        """Building a page of 100 issues no more SQL than a page of 10."""
        tags = self.env["res.partner.category"].create(
            [{"name": f"T{i}"} for i in range(5)]
        )
        partners = self.make_partners(
            100,
            parent_id=self.company.id,
            country_id=self.country.id,
            category_id=[Command.set(tags.ids)],
        )
        config = self.make_config(
            lines=[
                ("name", "name", "plain"),
                ("email", "email", "plain"),
                ("parent_id", "company", "relational"),
                ("parent_id.country_id.code", "country", "plain"),
                ("category_id.name", "tags", "plain"),
                ("category_id", "tag_names", "relational"),
            ],
            is_paginated=True,
            page_size=100,
        )

        def count_queries(records):
            self.env.invalidate_all()
            records = records.browse(records.ids)
            before = self.env.cr.sql_log_count
            objects, errors = Mapping(config).build_objects(records)
            self.assertEqual(len(objects), len(records))
            self.assertFalse(any(errors))
            return self.env.cr.sql_log_count - before

        small = count_queries(partners[:10])
        large = count_queries(partners)
        self.assertLessEqual(large, small, f"10 records: {small}, 100: {large} queries")
