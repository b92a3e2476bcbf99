"""The /bj_api_sync/v1 routes (SPEC §11): parse, authenticate, hand over, answer.

Everything about records happens in ``bj.api.sync.inbound.mixin``
(``models/bj_api_sync_inbound.py``); this module reads the HTTP request, runs
the checks in order, calls the configuration as the user the request runs as
and turns what comes back, or what is raised, into a JSON answer. No session is
read for authentication nor written: the routes are ``auth='none'`` with
``save_session=False``.
"""

import logging

from odoo import SUPERUSER_ID, http
from odoo.exceptions import ConcurrencyError
from odoo.http import request
from odoo.service.model import PG_CONCURRENCY_EXCEPTIONS_TO_RETRY

from ..models.bj_api_sync_inbound import (
    ROUTE_PREFIX,
    InboundAnswer,
    InboundCall,
    InboundError,
)
from ..tools import jsonbody

_logger = logging.getLogger(__name__)

BODY_METHODS = ("POST", "PUT", "PATCH")
#: Left to Odoo, which runs the whole request again (``retrying``).
RETRY_ERRORS = (ConcurrencyError, *PG_CONCURRENCY_EXCEPTIONS_TO_RETRY)
ROUTE_OPTIONS = {
    "type": "http",
    "auth": "none",
    "csrf": False,
    "save_session": False,
    "readonly": False,
}


class BjApiSyncInbound(http.Controller):
    @http.route(f"{ROUTE_PREFIX}/openapi.json", methods=["GET"], **ROUTE_OPTIONS)
    def bj_api_sync_openapi(self, **_params):
        """The OpenAPI 3.1 document of the endpoints the caller's credentials
        open."""
        document = self._configs()._inbound_openapi(self._read_call())
        return self._respond(InboundAnswer(200, body=document))

    @http.route(
        [
            f"{ROUTE_PREFIX}/<string:endpoint>",
            f"{ROUTE_PREFIX}/<string:endpoint>/<path:key>",
        ],
        **ROUTE_OPTIONS,
    )
    def bj_api_sync_endpoint(self, endpoint, key=None, **_params):
        """One inbound request: every answer is JSON (SPEC §11 table)."""
        call = self._read_call(key)
        config = self._configs()._inbound_config(endpoint)
        if not config:
            return self._respond(
                InboundAnswer.failure(
                    404, config.env._("No inbound endpoint %r.", endpoint)
                )
            )
        try:
            answer = self._serve(config, call)
        except (InboundError, jsonbody.BodyError) as error:
            answer = InboundAnswer.from_error(error)
        except RETRY_ERRORS as error:
            # Odoo runs the whole request again; should every try fail, the
            # caller gets this instead of an HTML page.
            error.error_response = self._respond(
                InboundAnswer.failure(
                    503,
                    config.env._("Concurrent requests conflicted; retry later."),
                    headers={"Retry-After": "1"},
                )
            )
            raise
        except Exception as error:  # noqa: BLE001 - answered 500, traceback logged
            _logger.exception(
                "bj_api_sync: inbound %s %s failed",
                call.method,
                request.httprequest.path,
            )
            # Nothing of it is kept but its log row, even if the error left
            # the transaction unusable.
            request.env.cr.rollback()
            answer = InboundAnswer.failure(
                500,
                config.env._("The request could not be handled."),
                error=repr(error),
            )
        config._inbound_finish(call, answer)
        return self._respond(answer)

    def _serve(self, config, call):
        # Odoo may run the request again after a conflict: it counts once.
        if not getattr(request, "bj_api_sync_counted", False):
            config._inbound_check_rate()
            request.bj_api_sync_counted = True
        config._inbound_check_method(call)
        uid = call.uid = config._inbound_authenticate(call)
        if call.method in BODY_METHODS:
            self._read_body(config, call)
        config._inbound_check_signature(call)
        return config.with_user(uid)._inbound_dispatch(call)

    def _configs(self):
        # A clean context: nothing of a browser session (companies, language)
        # reaches the work.
        return request.env(user=SUPERUSER_ID, context={})["bj.api.sync.config"]

    def _read_call(self, key=None):
        httprequest = request.httprequest
        return InboundCall(
            method=httprequest.method,
            url=httprequest.url,
            headers=dict(httprequest.headers.items()),
            args=list(httprequest.args.items(multi=True)),
            key=key,
            remote_addr=httprequest.remote_addr,
        )

    def _read_body(self, config, call):
        """Read and parse the JSON body: 415, 411, 413 or 400 otherwise."""
        httprequest = request.httprequest
        if not jsonbody.is_json_type(httprequest.headers.get("Content-Type")):
            raise InboundError(
                415,
                config.env._("The request body must be JSON (application/json)."),
            )
        limit = config._inbound_max_bytes()
        jsonbody.check_length(
            httprequest.content_length,
            httprequest.headers.get("Transfer-Encoding"),
            limit,
        )
        call.raw_body = jsonbody.check_read(httprequest.get_data(), limit)
        call.body = jsonbody.parse(call.raw_body)

    def _respond(self, answer):
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            **answer.headers,
        }
        return request.make_response(
            answer.body_text(), headers=list(headers.items()), status=answer.status
        )
