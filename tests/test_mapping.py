"""The mapping engine both ways (SPEC §10): JSON → values for every value type,
round trips (out then in gives the same values), and each error's message."""

from datetime import date, datetime

from odoo import Command
from odoo.exceptions import ValidationError
from odoo.tests import tagged

from ..mapping import Mapping, MappingError
from .common import BjApiSyncCase


@tagged("post_install", "-at_install")
class TestMappingIn(BjApiSyncCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.be = cls.env.ref("base.be")
        cls.fr = cls.env.ref("base.fr")
        cls.tag_a, cls.tag_b = cls.env["res.partner.category"].create(
            [{"name": "Map A"}, {"name": "Map B"}]
        )
        cls.company = cls.env["res.partner"].create(
            {"name": "Map Parent Co", "is_company": True, "ref": "MAP-CO"}
        )

    def mapping(self, lines, **values):
        return Mapping(self.make_config(lines=lines, **values))

    def values(self, lines, obj, record=None):
        values, _unknown = self.mapping(lines).to_values(obj, record)
        return values

    def assert_refused(self, lines, obj, *fragments):
        with self.assertRaises(MappingError) as caught:
            self.mapping(lines).to_values(obj)
        for fragment in fragments:
            self.assertIn(fragment, str(caught.exception))
        return caught.exception

    # -- plain ----------------------------------------------------------------

    def test_plain_types(self):
        lines = [
            ("name", "name", "plain"),
            ("comment", "notes", "plain"),
            ("type", "type", "plain"),
            ("color", "color", "plain"),
            ("partner_latitude", "lat", "plain"),
            ("is_company", "company", "plain"),
            ("parent_id", "parent", "plain"),
            ("category_id", "tags", "plain"),
        ]
        values = self.values(
            lines,
            {
                "name": "Zoé",
                "notes": "<p>Hi</p>",
                "type": "invoice",
                "color": "7",
                "lat": 50.25,
                "company": True,
                "parent": self.company.id,
                "tags": [self.tag_a.id, self.tag_b.id],
            },
        )
        self.assertEqual(
            values,
            {
                "name": "Zoé",
                "comment": "<p>Hi</p>",
                "type": "invoice",
                "color": 7,
                "partner_latitude": 50.25,
                "is_company": True,
                "parent_id": self.company.id,
                "category_id": [Command.set([self.tag_a.id, self.tag_b.id])],
            },
        )

    def test_dates_and_datetimes(self):
        config = self.make_config(
            lines=[("name", "day", "plain"), ("write_date", "when", "plain")],
            model_id=self.env["ir.model"]._get("res.currency.rate").id,
        )
        mapping = Mapping(config)
        values, _unknown = mapping.to_values({"day": "2024-02-29"})
        self.assertEqual(values, {"name": date(2024, 2, 29)})
        with self.assertRaises(MappingError) as caught:
            mapping.to_values({"day": "29/02/2024"})
        self.assertIn("YYYY-MM-DD", str(caught.exception))
        # Datetimes: offset → UTC, Z, naive = UTC (write_date is read-only, so
        # the converter is exercised directly on a datetime field).
        line = mapping.lines(("both",))[1]
        field = self.env["res.currency.rate"]._fields["write_date"]
        convert = mapping._in_datetime
        self.assertEqual(
            convert(line, field, "2024-05-01T12:00:00+02:00"),
            datetime(2024, 5, 1, 10, 0, 0),
        )
        self.assertEqual(
            convert(line, field, "2024-05-01T10:00:00Z"), datetime(2024, 5, 1, 10)
        )
        self.assertEqual(
            convert(line, field, "2024-05-01T10:00:00"), datetime(2024, 5, 1, 10)
        )

    def test_missing_key_untouched_null_clears(self):
        lines = [("email", "email", "plain"), ("category_id", "tags", "plain")]
        self.assertEqual(self.values(lines, {"other": 1}), {})
        self.assertEqual(
            self.values(lines, {"email": None, "tags": None}),
            {"email": False, "category_id": [Command.clear()]},
        )

    def test_nested_keys(self):
        values = self.values(
            [("email", "contact.email", "plain")], {"contact": {"email": "x@y.z"}}
        )
        self.assertEqual(values, {"email": "x@y.z"})

    def test_dotted_lookup(self):
        lines = [
            ("country_id.code", "country", "plain"),
            ("category_id.name", "tags", "plain"),
        ]
        values = self.values(lines, {"country": "BE", "tags": ["Map A", "Map B"]})
        self.assertEqual(values["country_id"], self.be.id)
        self.assertEqual(
            values["category_id"], [Command.set([self.tag_a.id, self.tag_b.id])]
        )
        self.assert_refused(
            lines, {"country": "XX"}, "'country'", "no res.country", "code", '"XX"'
        )
        self.env["res.partner.category"].create({"name": "Map A"})
        self.assert_refused(lines, {"tags": ["Map A"]}, "several res.partner.category")

    def test_bad_plain_values_name_key_line_and_value(self):
        config = self.make_config(lines=[("type", "kind", "plain")])
        line = config.line_ids
        with self.assertRaises(MappingError) as caught:
            Mapping(config).to_values({"kind": "robot"})
        error = caught.exception
        self.assertEqual(
            (error.key, error.line_id, error.value), ("kind", line.id, "robot")
        )
        self.assertIn("'kind'", str(error))
        self.assertIn(f"mapping line {line.id}", str(error))
        self.assertIn('"robot"', str(error))
        self.assertIn("'contact'", str(error), "allowed values are listed")
        self.assertEqual(error.status, 422)
        for lines, obj, fragment in (
            ([("color", "c", "plain")], {"c": "seven"}, "an integer is expected"),
            ([("color", "c", "plain")], {"c": 2**40}, "out of the integer range"),
            (
                [("partner_latitude", "l", "plain")],
                {"l": "NaN"},
                "a number is expected",
            ),
            ([("is_company", "b", "plain")], {"b": "maybe"}, "true or false"),
            ([("name", "n", "plain")], {"n": {"a": 1}}, "a text is expected"),
            ([("parent_id", "p", "plain")], {"p": 10**8}, "no such res.partner"),
            ([("parent_id", "p", "plain")], {"p": "1"}, "a record id is expected"),
            ([("category_id", "t", "plain")], {"t": [1, "x"]}, "a list of record"),
            ([("image_1920", "i", "plain")], {"i": "***"}, "base64 text"),
        ):
            with self.subTest(obj=obj):
                self.assert_refused(lines, obj, fragment)

    # -- relational -------------------------------------------------------------

    def test_relational_by_display_name(self):
        lines = [
            ("parent_id", "parent", "relational"),
            ("category_id", "tags", "relational"),
        ]
        values = self.values(lines, {"parent": "Map Parent Co", "tags": ["Map B"]})
        self.assertEqual(values["parent_id"], self.company.id)
        self.assertEqual(values["category_id"], [Command.set([self.tag_b.id])])
        self.assert_refused(lines, {"parent": "Nobody Here"}, "no res.partner", "name")

    # -- mapping ----------------------------------------------------------------

    def make_child(self, model, lines, identifier=None, **values):
        config = self.make_config(
            lines=lines, model_id=self.env["ir.model"]._get(model).id, **values
        )
        if identifier:
            config.line_ids.filtered(
                lambda line: line.api_key == identifier
            ).is_identifier = True
        return config

    def test_mapping_many2one_found_created_or_refused(self):
        child = self.make_child(
            "res.partner", [("ref", "ref", "plain"), ("name", "name", "plain")], "ref"
        )
        config = self.make_config(lines=[("name", "name", "plain")])
        self.add_line(
            config,
            field_path="parent_id",
            api_key="company",
            value_type="mapping",
            mapping_config_id=child.id,
        )
        mapping = Mapping(config)
        values, _unknown = mapping.to_values(
            {"name": "Kid", "company": {"ref": "MAP-CO", "name": "ignored"}}
        )
        self.assertEqual(values["parent_id"], self.company.id)
        with self.assertRaises(MappingError) as caught:
            mapping.to_values({"company": {"ref": "NEW-CO", "name": "New Co"}})
        self.assertIn("does not create missing records", str(caught.exception))
        child.inbound_create_missing = True
        values, _unknown = mapping.to_values(
            {"company": {"ref": "NEW-CO", "name": "New Co"}}
        )
        created = self.env["res.partner"].browse(values["parent_id"])
        self.assertEqual((created.ref, created.name), ("NEW-CO", "New Co"))

    def test_mapping_one2many_create_update_delete(self):
        child = self.make_child(
            "res.partner",
            [("ref", "ref", "plain"), ("name", "name", "plain")],
            "ref",
        )
        config = self.make_config(lines=[("name", "name", "plain")])
        self.add_line(
            config,
            field_path="child_ids",
            api_key="contacts",
            value_type="mapping",
            mapping_config_id=child.id,
        )
        mapping = Mapping(config)
        obj = {
            "name": "Parent",
            "contacts": [{"ref": "C1", "name": "One"}, {"ref": "C2", "name": "Two"}],
        }
        values, _unknown = mapping.to_values(obj)
        parent = self.env["res.partner"].create(values)
        self.assertEqual(parent.child_ids.mapped("ref"), ["C1", "C2"])
        one, two = parent.child_ids
        # C1 renamed, C2 gone, C3 new.
        obj["contacts"] = [{"ref": "C1", "name": "One bis"}, {"ref": "C3", "name": "3"}]
        values, _unknown = mapping.to_values(obj, record=parent)
        parent.write(values)
        self.assertEqual(sorted(parent.child_ids.mapped("ref")), ["C1", "C3"])
        self.assertEqual(one.name, "One bis")
        self.assertFalse(two.exists())
        # Without a child identifier the list is replaced.
        child.line_ids.is_identifier = False
        values, _unknown = Mapping(config).to_values(obj, record=parent)
        parent.write(values)
        self.assertFalse(one.exists())
        self.assertEqual(sorted(parent.child_ids.mapped("ref")), ["C1", "C3"])

    # -- python -----------------------------------------------------------------

    def test_python_evaluate_result_and_execute(self):
        config = self.make_config(lines=[("name", "name", "plain")])
        line_model = self.env["bj.api.sync.config.line"]
        line_model.create(
            [
                {
                    "config_id": config.id,
                    "api_key": "full_name",
                    "field_path": "name",
                    "value_type": "python",
                    "python_code": "value.upper()",
                },
                {
                    "config_id": config.id,
                    "api_key": "code",
                    "field_path": "ref",
                    "value_type": "python",
                    "python_code": "result = request_data['code'] + '-X'",
                },
                {
                    "config_id": config.id,
                    "api_key": "note",
                    "field_path": "comment",
                    "value_type": "python",
                    "python_code": "seen = value\nx = 1",
                },
            ]
        )
        values, _unknown = Mapping(config).to_values(
            {"name": "ignored", "full_name": "ada", "code": "A1", "note": "n"}
        )
        # "name" is written twice (plain, then Evaluate): the last line wins.
        self.assertEqual(values, {"name": "ADA", "ref": "A1-X"})

    # -- rules ------------------------------------------------------------------

    def test_no_mass_assignment_and_unknown_keys(self):
        mapping = self.mapping([("name", "name", "plain")])
        values, unknown = mapping.to_values(
            {"name": "Safe", "id": 1, "create_uid": 1, "is_company": True}
        )
        self.assertEqual(values, {"name": "Safe"})
        self.assertEqual(unknown, ["create_uid", "id", "is_company"])

    def test_directions(self):
        config = self.make_config(
            lines=[("name", "name", "plain"), ("email", "email", "plain")]
        )
        config.line_ids[0].direction = "out"
        config.line_ids[1].direction = "in"
        partner = self.env["res.partner"].create({"name": "Dir", "email": "d@x.y"})
        objects, _errors = Mapping(config).build_objects(partner)
        self.assertEqual(objects, [{"name": "Dir"}])
        values, _unknown = Mapping(config).to_values({"name": "N", "email": "e@x.y"})
        self.assertEqual(values, {"email": "e@x.y"})

    def test_identifier_rule_and_writable_fields_at_save(self):
        config = self.make_config(
            lines=[("name", "name", "plain")],
            endpoint="mapping-in",
            run_as_user_id=self.env.ref("base.user_admin").id,
        )
        with self.assertRaises(ValidationError) as caught:
            config.request_type = "in"
        self.assertIn("exactly one inbound mapping line", str(caught.exception))
        config.line_ids.is_identifier = True
        config.request_type = "in"
        with self.assertRaises(ValidationError) as caught:
            config.line_ids = [
                Command.create({"field_path": "display_name", "api_key": "label"})
            ]
        self.assertIn("cannot be written", str(caught.exception))
        # The same line, outbound only, is fine.
        config.line_ids = [
            Command.create(
                {"field_path": "display_name", "api_key": "label", "direction": "out"}
            )
        ]

    def test_find_by_identifier(self):
        config = self.make_config(
            lines=[("ref", "ref", "plain"), ("name", "name", "plain")]
        )
        config.line_ids[0].is_identifier = True
        mapping = Mapping(config)
        Partner = self.env["res.partner"]
        self.assertEqual(mapping.find(Partner, {"ref": "MAP-CO"}), self.company)
        self.assertFalse(mapping.find(Partner, {"ref": "NOPE"}))
        self.assertFalse(mapping.find(Partner, {"name": "no identifier"}))


@tagged("post_install", "-at_install")
class TestMappingRoundTrip(BjApiSyncCase):
    """Out then in gives the same values (plain, relational, mapping lines)."""

    def round_trip(self, config, record, fields_):
        [obj], [error] = Mapping(config).build_objects(record)
        self.assertIsNone(error)
        values, _unknown = Mapping(config).to_values(obj)
        copy = self.env["res.partner"].create(
            dict(values, name=values.get("name", "c"))
        )
        for name in fields_:
            self.assertEqual(copy[name], record[name], name)
        return obj

    def test_round_trips(self):
        tags = self.env["res.partner.category"].create(
            [{"name": "RT1"}, {"name": "RT2"}]
        )
        parent = self.env["res.partner"].create(
            {"name": "RT Parent", "ref": "RT-P", "is_company": True}
        )
        partner = self.env["res.partner"].create(
            {
                "name": "RT Child",
                "email": "rt@example.com",
                "color": 4,
                "partner_latitude": 1.5,
                "is_company": False,
                "type": "invoice",
                "country_id": self.env.ref("base.be").id,
                "category_id": [Command.set(tags.ids)],
                "parent_id": parent.id,
            }
        )
        plain = self.make_config(
            lines=[
                ("name", "name", "plain"),
                ("email", "email", "plain"),
                ("color", "color", "plain"),
                ("partner_latitude", "lat", "plain"),
                ("is_company", "company", "plain"),
                ("type", "type", "plain"),
                ("country_id", "country", "plain"),
                ("country_id.code", "country_code", "plain"),
                ("category_id", "tags", "plain"),
                ("parent_id", "parent", "plain"),
            ]
        )
        fields_ = [
            "email",
            "color",
            "partner_latitude",
            "is_company",
            "type",
            "country_id",
            "category_id",
            "parent_id",
        ]
        self.round_trip(plain, partner, fields_)
        relational = self.make_config(
            lines=[
                ("name", "name", "plain"),
                ("country_id", "country", "relational"),
                ("category_id", "tags", "relational"),
                ("parent_id", "parent", "relational"),
            ]
        )
        obj = self.round_trip(relational, partner, ["country_id", "category_id"])
        self.assertEqual(obj["country"], "Belgium")
        child = self.make_config(
            lines=[("ref", "ref", "plain"), ("name", "name", "plain")]
        )
        child.line_ids[0].is_identifier = True
        nested = self.make_config(lines=[("name", "name", "plain")])
        self.add_line(
            nested,
            field_path="parent_id",
            api_key="parent",
            value_type="mapping",
            mapping_config_id=child.id,
        )
        obj = self.round_trip(nested, partner, ["parent_id"])
        self.assertEqual(obj["parent"], {"ref": "RT-P", "name": "RT Parent"})
