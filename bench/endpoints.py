"""B7 and B8: the inbound REST endpoints (SPEC §11) against Odoo's own /json/2.

Both sides are served by the same odoo-bin process (run_bench.py starts it,
threaded: ``--workers=0``) and called through one keep-alive
``requests.Session`` each (odoo-bin answers ``Connection: close``, so both sides
connect again for every request), authenticated by the same Odoo API key of the
administrator sent as ``Authorization: Bearer``: the endpoints use the
``odoo_api_key`` authentication, so each request of either side checks the key
the same way and runs as the same user. Both read and write the same records
and the same fields (:data:`dataset.INBOUND_FIELDS`); the endpoints log every
request (``log_level`` all, the default).

Each round calls the sides in turn, request by request, and times every call,
so that drift of a shared machine hits them alike; the round with the median
ratio is reported, as in B2.
"""

import ast
import time

import requests

import dataset
from cases import Result, rate

#: Endpoints of the two configurations made by :func:`prepare`.
B7_ENDPOINT = "bench-b7"
B8_ENDPOINT = "bench-b8"
SERVER_MODE = "threaded odoo-bin (--workers=0, Connection: close)"


def prepare(env, list_domain, list_domain_sql):
    """Make the API key and the two inbound configurations; fill the fields of
    the listed partners. Runs before the server starts (it reads them fresh).

    :return: the API key (text)
    """
    admin = env.ref("base.user_admin")
    key = env["res.users.apikeys"].with_user(admin)._generate(None, "bench", None)
    dataset.fill_inbound_fields(env, list_domain_sql)
    dataset.make_in_config(env, "Bench B7 list", B7_ENDPOINT, list_domain)
    dataset.make_in_config(
        env, "Bench B8 upsert", B8_ENDPOINT, "[('ref', '=like', 'B8-%')]"
    )
    env.cr.commit()
    return key


class Client:
    """One keep-alive session to the server, with the API key as Bearer."""

    def __init__(self, base_url, api_key):
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update(
            {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        )

    def get(self, path, params, expected=200):
        response = self.session.get(self.base_url + path, params=params, timeout=60)
        return self._check(response, expected)

    def post(self, path, body, expected=200):
        response = self.session.post(self.base_url + path, json=body, timeout=120)
        return self._check(response, expected)

    def _check(self, response, expected):
        if response.status_code != expected:
            raise AssertionError(
                f"{response.request.method} {response.url}: "
                f"{response.status_code} {response.text[:500]}"
            )
        return response.json()

    def close(self):
        self.session.close()


def duel(functions, rows, weight=1):
    """Call ``functions[i](row[i])`` for each row of ``rows``, rotating which
    function goes first, and time each call: drift of a shared machine hits
    them all alike.

    :return: ``(rate of the first / rate of the second, rate of each
        function…)``, rates in calls (times ``weight``) per second
    """
    spent = [0.0] * len(functions)
    for number, row in enumerate(rows):
        for step in range(len(functions)):
            side = (number + step) % len(functions)
            start = time.perf_counter()
            functions[side](row[side])
            spent[side] += time.perf_counter() - start
    rates = [rate(len(rows) * weight, seconds) for seconds in spent]
    return (rates[0] / rates[1], *rates)


def median(rounds):
    """The round with the median ratio."""
    return sorted(rounds)[len(rounds) // 2]


def ratios(rounds):
    return ", ".join(f"{ratio:.2f}" for ratio, *_rates in rounds)


def as_object(row):
    """A /json/2 row as the endpoint shows the same record (``False`` → null)."""
    return {name: row[name] or None for name in dataset.INBOUND_FIELDS}


# ----------------------------------------------------------------------------
# B7: GET list vs /json/2 search_read
# ----------------------------------------------------------------------------


def b7_list(url, api_key, domain, count, rounds=3, size=100):
    """GET the pages of ``size`` of the ``count`` records the B7 endpoint lists
    (``domain``) once a round, two ways, each against the /json/2 call doing
    the same work:

    * ``?total=false`` (the page only) vs ``search_read`` of the same page;
    * the default answer, whose ``total`` counts every match, vs
      ``web_search_read``, which counts them too (``length``).
    """
    clients = [Client(url, api_key) for _side in range(4)]
    ours, odoo, ours_counted, web = clients
    offsets = range(0, count, size)
    json2_domain = ast.literal_eval(domain)
    fields = list(dataset.INBOUND_FIELDS)
    path = f"/bj_api_sync/v1/{B7_ENDPOINT}"

    def get_page(offset):
        return ours.get(path, {"limit": size, "offset": offset, "total": "false"})

    def get_page_counted(offset):
        return ours_counted.get(path, {"limit": size, "offset": offset})

    def search_read(offset):
        body = {"domain": json2_domain, "fields": fields}
        return odoo.post(
            "/json/2/res.partner/search_read",
            dict(body, limit=size, offset=offset),
        )

    def web_search_read(offset):
        body = {"domain": json2_domain, "specification": dict.fromkeys(fields, {})}
        return web.post(
            "/json/2/res.partner/web_search_read",
            dict(body, limit=size, offset=offset),
        )

    try:
        # Warm-up, and the same records, values and total on every side.
        for offset in offsets[:10]:
            mine = get_page(offset)
            counted = get_page_counted(offset)
            theirs = [as_object(row) for row in search_read(offset)]
            total = web_search_read(offset)["length"]
            if (
                mine["data"] != theirs
                or counted["data"] != theirs
                or len(theirs) != size
                or mine["total"] is not None
                or counted["total"] != total
            ):
                raise AssertionError(f"pages at offset {offset} differ")
        rows = [(offset,) * 4 for offset in offsets]
        functions = (get_page, search_read, get_page_counted, web_search_read)
        results = [duel(functions, rows) for _r in range(rounds)]
    finally:
        for client in clients:
            client.close()
    plain = [(m / b, m, b) for _ratio, m, b, _m2, _w in results]
    counted = [(m2 / w, m2, w) for _ratio, _m, _b, m2, w in results]
    ratio, mine, base = median(plain)
    ratio2, mine2, web2 = median(counted)
    return Result(
        "B7",
        f"GET list, {size} partners a page, {len(fields)} lines, odoo_api_key, "
        f"keep-alive requests.Session, {SERVER_MODE}: ?total=false {mine:.0f} "
        f"req/s | baseline /json/2/res.partner/search_read (same key, records, "
        f"fields) {base:.0f} req/s | ratio {ratio:.2f} | target >= 1.0 | with "
        f"total (counts every match) {mine2:.0f} req/s | baseline /json/2 "
        f"web_search_read (page + count) {web2:.0f} req/s | ratio {ratio2:.2f} | "
        f"target >= 1.0 | median of {rounds} rounds (search_read "
        f"{ratios(plain)}; web_search_read {ratios(counted)}) of {len(rows)} "
        f"requests a "
        f"side, interleaved, over {count} records | pages checked equal",
        ratio >= 1.0 and ratio2 >= 1.0,
    )


# ----------------------------------------------------------------------------
# B8: POST one object vs /json/2 create; POST arrays vs in-process create()
# ----------------------------------------------------------------------------


def b8_upsert(env, url, api_key, rounds=5, singles=100, arrays=7, size=100):
    """POST ``singles`` single new objects a round vs
    ``/json/2/res.partner/create`` of the same values, then ``arrays`` arrays
    of ``size`` new objects a round vs ``create()`` of the same values in this
    process (as the administrator, then flush and commit, as a request does).
    """
    ours = Client(url, api_key)
    odoo = Client(url, api_key)
    path = f"/bj_api_sync/v1/{B8_ENDPOINT}"
    Partner = env(user=env.ref("base.user_admin").id)["res.partner"]
    runs = iter(range(1, 1_000_000))

    def post_one(vals):
        body = ours.post(path, vals, expected=201)
        if body["data"]["ref"] != vals["ref"]:
            raise AssertionError(f"POST answered {body['data']!r}")

    def json2_create(vals):
        [_id] = odoo.post("/json/2/res.partner/create", {"vals_list": [vals]})

    def post_array(vals_list):
        body = ours.post(path, vals_list, expected=201)
        if len(body["data"]) != len(vals_list):
            raise AssertionError(f"POST answered {len(body['data'])} objects")

    def create(vals_list):
        Partner.create(vals_list)
        env.flush_all()
        env.cr.commit()

    def single_pairs(count):
        run = next(runs)
        return list(
            zip(
                dataset.inbound_values("B8", run, count),
                dataset.inbound_values("B8-json2", run, count),
                strict=True,
            )
        )

    def array_pairs(count):
        return [
            (
                dataset.inbound_values("B8", next(runs), size),
                dataset.inbound_values("B8", next(runs), size),
            )
            for _a in range(count)
        ]

    before = Partner.search_count([("ref", "=like", "B8-%")])
    try:
        duel((post_one, json2_create), single_pairs(10))  # warm-up
        single_rounds = [
            duel((post_one, json2_create), single_pairs(singles))
            for _r in range(rounds)
        ]
        duel((post_array, create), array_pairs(1), size)  # warm-up
        bulk_rounds = [
            duel((post_array, create), array_pairs(arrays), size)
            for _r in range(rounds)
        ]
    finally:
        ours.close()
        odoo.close()
    env.invalidate_all()
    created = Partner.search_count([("ref", "=like", "B8-%")]) - before
    expected = (10 + rounds * singles) * 2 + (1 + rounds * arrays) * size * 2
    single_ratio, single, single_base = median(single_rounds)
    bulk_ratio, bulk, bulk_base = median(bulk_rounds)
    ok = single_ratio >= 1.0 and bulk_ratio >= 0.5 and created == expected
    return Result(
        "B8",
        f"POST create, {len(dataset.INBOUND_FIELDS)} lines, odoo_api_key, "
        f"keep-alive requests.Session, {SERVER_MODE}: single object "
        f"{single:.0f} req/s | baseline /json/2/res.partner/create (same key, "
        f"values) {single_base:.0f} req/s | ratio {single_ratio:.2f} | target >= "
        f"1.0 | arrays of {size} (bulk upsert) {bulk:.0f} rec/s | baseline "
        f"in-process create() + commit {bulk_base:.0f} rec/s | ratio "
        f"{bulk_ratio:.2f} | target >= 0.5 | median of {rounds} rounds (single "
        f"{ratios(single_rounds)}; bulk {ratios(bulk_rounds)}) of {singles} objects "
        f"and {arrays} arrays a side, interleaved | partners created "
        f"{created}/{expected}",
        ok,
    )
