"""Data of the benchmarks: partners inserted by SQL, and the configurations."""

from odoo import Command

#: Every bench partner has a ref ``BP-<n>``; the first 10,000 also have
#: ``function = 'g10k'``.
ALL_DOMAIN = "[('ref', '=like', 'BP-%')]"
G10K_DOMAIN = "[('function', '=', 'g10k')]"
G10K_SQL = "function = 'g10k'"
TAG_NAMES = ("Alpha", "Beta", "Gamma", "Delta", "Epsilon")
COUNTRY_CODES = ("BE", "CA", "DE", "ES", "FR", "IT", "JP", "NL", "GB", "US")

#: The python line of the payloads: the seed's phone example, as the README shows it.
PHONE_SCRIPT = """\
# Example: Format phone number
phone = records.phone or ''
if phone.startswith('+'):
    result = phone
else:
    result = '+1' + phone.replace('-', '').replace(' ', '')
"""

#: (field_path, api_key, value_type) of the payload benchmarks (B1, B3, B5): four
#: plain fields, a relational many2one, tag names through an x2many, a nested
#: mapping (country → code + name) and a python line (the seed's phone example).
PAYLOAD_LINES = (
    ("name", "name", "plain"),
    ("email", "email", "plain"),
    ("phone", "phone", "plain"),
    ("ref", "ref", "plain"),
    ("parent_id", "company", "relational"),
    ("category_id.name", "tags", "plain"),
    ("country_id", "country", "mapping"),
    (False, "phone_e164", "python"),
)

#: What ``read()`` must fetch to get the same data (the ceiling R of B1).
READ_FIELDS = [
    "name",
    "email",
    "phone",
    "ref",
    "parent_id",
    "country_id",
    "category_id",
]


#: The fields of the inbound benchmarks (B7, B8), each mapped by one line of the
#: same name (``ref`` is the identifier), and read by Odoo's /json/2 baseline.
INBOUND_FIELDS = (
    "name",
    "email",
    "phone",
    "ref",
    "city",
    "zip",
    "website",
    "comment",
)


def partner_values(key, run, count):
    """Values of ``count`` new partners of benchmark ``key`` (``"B0"``…), run
    ``run``: name, ``ref`` ``<key>-<run>-<n>`` (the configs' filters), email, phone.
    """
    return [
        {
            "name": f"{key} partner {run}-{i}",
            "ref": f"{key}-{run}-{i:04d}",
            "email": f"{key.lower()}.{run}.{i}@example.com",
            "phone": f"555-{i:04d}",
        }
        for i in range(count)
    ]


def insert_partners(env, count, first_group=10_000, companies=200):
    """Insert ``companies`` companies and ``count`` contacts with SQL; return ids.

    Contacts get a name, email, phone, ref, a country, 0 to 2 tags and, one in
    five, a parent company; the first ``first_group`` get ``function='g10k'``.
    """
    cr = env.cr
    cr.execute(
        "SELECT array_agg(id ORDER BY id) FROM res_country WHERE code IN %s",
        [COUNTRY_CODES],
    )
    countries = cr.fetchone()[0]
    tags = env["res.partner.category"].create([{"name": n} for n in TAG_NAMES])
    env.flush_all()
    common = """
        type, active, is_company, lang, partner_share, employee, color,
        create_uid, write_uid, create_date, write_date
    """
    common_values = """
        'contact', true, {company}, 'en_US', true, false, 0,
        1, 1, now() at time zone 'utc', now() at time zone 'utc'
    """
    cr.execute(
        f"""
        INSERT INTO res_partner (
            name, complete_name, ref, commercial_company_name, {common})
        SELECT 'Bench Co ' || i, 'Bench Co ' || i, 'BCO-' || i, 'Bench Co ' || i,
               {common_values.format(company="true")}
          FROM generate_series(1, %s) i
        RETURNING id
        """,
        [companies],
    )
    cr.execute(
        "SELECT id, name FROM res_partner WHERE id IN %s ORDER BY id",
        [tuple(row[0] for row in cr.fetchall())],
    )
    rows = cr.fetchall()
    company_ids = [row[0] for row in rows]
    company_names = [row[1] for row in rows]
    cr.execute(
        "UPDATE res_partner SET commercial_partner_id = id WHERE id IN %s",
        [tuple(company_ids)],
    )
    # One pass: the id is drawn first so that commercial_partner_id can use it.
    cr.execute(
        f"""
        INSERT INTO res_partner (
            id, name, complete_name, ref, email, email_normalized, phone, function,
            country_id, parent_id, commercial_partner_id, commercial_company_name,
            {common})
        SELECT s.id, s.name,
               CASE WHEN s.parent_id IS NULL THEN s.name
                    ELSE s.company_name || ', ' || s.name END,
               'BP-' || lpad(s.i::text, 6, '0'),
               'p' || s.i || '@example.com', 'p' || s.i || '@example.com',
               '555-' || lpad((s.i %% 10000)::text, 4, '0') || ' ' || (s.i %% 97),
               CASE WHEN s.i <= %(first)s THEN 'g10k' END,
               (%(countries)s::int[])[1 + s.i %% %(ncountries)s],
               s.parent_id, COALESCE(s.parent_id, s.id),
               CASE WHEN s.parent_id IS NOT NULL THEN s.company_name END,
               {common_values.format(company="false")}
          FROM (
            SELECT nextval('res_partner_id_seq') AS id, i,
                   'Bench Partner ' || lpad(i::text, 6, '0') AS name,
                   CASE WHEN i %% 5 = 0
                        THEN (%(companies)s::int[])[1 + (i / 5) %% %(ncompanies)s]
                   END AS parent_id,
                   (%(names)s::text[])[1 + (i / 5) %% %(ncompanies)s] AS company_name
              FROM generate_series(1, %(count)s) i
          ) s
         ORDER BY s.id
        RETURNING id
        """,
        {
            "first": first_group,
            "countries": countries,
            "ncountries": len(countries),
            "companies": company_ids,
            "names": company_names,
            "ncompanies": len(company_ids),
            "count": count,
        },
    )
    partner_ids = sorted(row[0] for row in cr.fetchall())
    tag_ids = tags.ids
    cr.execute(
        """
        INSERT INTO res_partner_res_partner_category_rel (category_id, partner_id)
        SELECT (%(tags)s::int[])[1 + p.id %% 5], p.id
          FROM unnest(%(ids)s::int[]) p(id) WHERE p.id %% 3 <> 0
        UNION ALL
        SELECT (%(tags)s::int[])[1 + (p.id + 1) %% 5], p.id
          FROM unnest(%(ids)s::int[]) p(id) WHERE p.id %% 3 = 2
        """,
        {"tags": tag_ids, "ids": partner_ids},
    )
    cr.execute("ANALYZE res_partner")
    cr.execute("ANALYZE res_partner_res_partner_category_rel")
    env.invalidate_all()
    return partner_ids


def fill_inbound_fields(env, domain_sql):
    """Give the partners matching ``domain_sql`` (an SQL condition) a city, zip,
    website and comment, so that every field of B7 holds a value."""
    env.cr.execute(
        f"""
        UPDATE res_partner
           SET city = 'City ' || (id % 50),
               zip = lpad((id % 100000)::text, 5, '0'),
               website = 'https://p' || id || '.example.com',
               comment = '<p>Bench note ' || id || '</p>'
         WHERE {domain_sql}
        """
    )
    env.invalidate_all()


def inbound_values(key, run, count):
    """:func:`partner_values` with every field of :data:`INBOUND_FIELDS`."""
    return [
        dict(
            vals,
            city=f"City {i % 50}",
            zip=f"{i:05d}",
            website=f"https://{key.lower()}-{run}-{i}.example.com",
            comment=f"<p>Bench note {run}-{i}</p>",
        )
        for i, vals in enumerate(partner_values(key, run, count))
    ]


def make_in_config(env, name, endpoint, filter_domain, **values):
    """An inbound configuration of partners, GET and POST, one line per field
    of :data:`INBOUND_FIELDS` (``ref`` the identifier), authenticated with an
    Odoo API key (the request runs as the key's user, as /json/2 does)."""
    methods = env.ref("bj_api_sync.http_method_get") | env.ref(
        "bj_api_sync.http_method_post"
    )
    vals = {
        "name": name,
        "request_type": "in",
        "endpoint": endpoint,
        "model_id": env["ir.model"]._get("res.partner").id,
        "filter_domain": filter_domain,
        "http_method_ids": [Command.set(methods.ids)],
        "auth_type": "odoo_api_key",
        "page_size": 100,
        "line_ids": [
            Command.create(
                {
                    "sequence": sequence,
                    "field_path": name,
                    "api_key": name,
                    "value_type": "plain",
                    "direction": "both",
                    "is_identifier": name == "ref",
                }
            )
            for sequence, name in enumerate(INBOUND_FIELDS)
        ],
    }
    vals.update(values)
    return env["bj.api.sync.config"].create(vals)


def make_config(env, name, url, lines=PAYLOAD_LINES, model="res.partner", **values):
    """An outbound POST configuration (quick retries off, as a bench needs)."""
    country_config = None
    if any(vtype == "mapping" for _p, _k, vtype in lines):
        country_config = make_config(
            env,
            f"{name} / country",
            url,
            lines=(("code", "code", "plain"), ("name", "name", "plain")),
            model="res.country",
        )
    line_commands = []
    for sequence, (path, key, vtype) in enumerate(lines):
        line = {
            "sequence": sequence,
            "field_path": path,
            "api_key": key,
            "value_type": vtype,
        }
        if vtype == "mapping":
            line["mapping_config_id"] = country_config.id
        if vtype == "python":
            line["python_code"] = PHONE_SCRIPT
        line_commands.append(Command.create(line))
    vals = {
        "name": name,
        "request_type": "out",
        "model_id": env["ir.model"]._get(model).id,
        "request_url": url,
        "http_method_ids": [Command.set(env.ref("bj_api_sync.http_method_post").ids)],
        "max_retries": 0,
        "backoff_factor": 0.0,
        "line_ids": line_commands,
    }
    vals.update(values)
    return env["bj.api.sync.config"].create(vals)


def automate_on_create(env, config):
    """Create the on-create automation through the config's wizard."""
    wizard = env["bj.api.sync.automate"].create(
        {"config_id": config.id, "on_create": True}
    )
    wizard.action_create_automations()
    config.invalidate_recordset(["automation_ids"])
    return config.automation_ids


def webhook_automation(env, url, domain, field_names):
    """Odoo's own "Send Webhook Notification" action in an on-create rule."""
    partner_model = env["ir.model"]._get("res.partner")
    fields = env["ir.model.fields"].search(
        [("model", "=", "res.partner"), ("name", "in", field_names)]
    )
    return env["base.automation"].create(
        {
            "name": "Bench webhook baseline",
            "model_id": partner_model.id,
            "trigger": "on_create",
            "filter_domain": domain,
            "active": False,
            "action_server_ids": [
                Command.create(
                    {
                        "name": "Bench webhook",
                        "model_id": partner_model.id,
                        "state": "webhook",
                        "webhook_url": url,
                        "webhook_field_ids": [Command.set(fields.ids)],
                        "usage": "base_automation",
                    }
                )
            ],
        }
    )
