"""OpenAPI document, sample object and ``curl`` examples of the inbound
endpoints (SPEC §11).

``bj.api.sync.openapi.mixin`` is inherited by ``bj.api.sync.config``: the
controller serves ``_inbound_openapi(call)`` at ``/bj_api_sync/v1/openapi.json``
and the form shows ``curl_example`` (``_inbound_curl_example``). The schemas are
built from the mapping lines and typed from the Odoo fields they read.
"""

import shlex

from odoo import api, models
from odoo.exceptions import ValidationError

from ..mapping import (
    IN_DIRECTIONS,
    OUT_DIRECTIONS,
    RELATIONAL_TYPES,
    X2MANY_TYPES,
    Mapping,
)
from ..tools import jsonenc
from .bj_api_sync_inbound import MAX_ITEMS, ROUTE_PREFIX, InboundError

SCHEMA_MAX_DEPTH = 4
_TEXT_SCHEMA = {"type": ["string", "null"]}
_FIELD_SCHEMAS = {
    "integer": {"type": "integer"},
    "float": {"type": "number"},
    "monetary": {"type": "number"},
    "boolean": {"type": "boolean"},
    "date": {"type": ["string", "null"], "format": "date"},
    "datetime": {"type": ["string", "null"], "format": "date-time"},
    "binary": {"type": ["string", "null"], "contentEncoding": "base64"},
    "json": {},
    "properties": {},
}
_SAMPLE_VALUES = {
    "integer": 1,
    "float": 1.5,
    "monetary": 9.99,
    "boolean": True,
    "date": "2024-05-01",
    "datetime": "2024-05-01T10:00:00Z",
    "many2one": 1,
    "one2many": [1],
    "many2many": [1],
}


class BjApiSyncOpenapiMixin(models.AbstractModel):
    _name = "bj.api.sync.openapi.mixin"
    _description = "BJ API inbound endpoint description"

    def _inbound_curl_example(self, url):
        """Ready-to-run curl commands for this endpoint, secrets as variables."""
        self.ensure_one()
        auth = {
            "basic": ["-u", f"{self.auth_login or 'LOGIN'}:$PASSWORD"],
            "bearer": ["-H", "Authorization: Bearer $TOKEN"],
            "odoo_api_key": ["-H", "Authorization: Bearer $ODOO_API_KEY"],
            "api_key": ["-H", f"{self.api_key_header or 'X-API-Key'}: $API_KEY"],
        }.get(self.auth_type, [])

        def command(*args):
            words = ["curl", "-sS", *args[:-1], *auth, args[-1]]
            # Secrets stay shell variables ("$TOKEN"), expanded by the shell.
            return " ".join(
                f'"{word}"' if "$" in word else shlex.quote(word) for word in words
            )

        methods = set(self.http_method_ids.mapped("name"))
        commands = []
        if "GET" in methods:
            commands.append(command(f"{url}?limit=10"))
        if "POST" in methods:
            sample = jsonenc.dumps(self._inbound_sample_object())
            commands.append(
                command(
                    "-X",
                    "POST",
                    "-H",
                    "Content-Type: application/json",
                    "-d",
                    sample,
                    url,
                )
            )
        return "\n".join(commands)

    def _inbound_sample_object(self):
        """An object with one example value per inbound line (the lines as
        edited, so that the form shows it before saving)."""
        Line = self.env["bj.api.sync.config.line"]
        sample = {}
        for line in self.sudo().line_ids:
            if line.direction not in IN_DIRECTIONS or not line.api_key:
                continue
            value = {} if line.value_type == "mapping" else "…"
            if line.field_path and line.value_type in ("plain", "relational"):
                try:
                    chain = Line._resolve_field_path(self.model_name, line.field_path)
                except (ValidationError, KeyError):
                    continue  # a path being typed
                leaf = chain[-1]
                value = _SAMPLE_VALUES.get(leaf.type, "text")
                if line.value_type == "relational" and leaf.type in RELATIONAL_TYPES:
                    value = ["Name"] if leaf.type in X2MANY_TYPES else "Name"
            try:
                jsonenc.set_nested(sample, line.api_key, value)
            except ValueError:
                continue
        return sample

    # ------------------------------------------------------------------
    # OpenAPI
    # ------------------------------------------------------------------

    @api.model
    def _inbound_openapi(self, call):
        """An OpenAPI 3.1 document of the In endpoints whose credentials
        ``call`` carries (a tried endpoint counts the request in its rate)."""
        paths, schemas, schemes = {}, {}, {}
        schemas["Error"] = {
            "type": "object",
            "properties": {
                "status": {"const": "error"},
                "code": {"type": "integer"},
                "message": {"type": "string"},
                "line_id": {"type": "integer"},
            },
            "required": ["status", "code", "message"],
        }
        configs = self.sudo().search([("request_type", "=", "in")])
        for config in configs:
            try:
                config._inbound_check_rate()
                config._inbound_authenticate(call)
            except InboundError:
                continue
            config._inbound_openapi_paths(paths, schemas, schemes)
        base = self.env["ir.config_parameter"].sudo().get_param("web.base.url", "")
        return {
            "openapi": "3.1.0",
            "info": {
                "title": "BJ API Sync inbound endpoints",
                "version": self._module_version(),
            },
            "servers": [{"url": base.rstrip("/") or "/"}],
            "paths": paths,
            "components": {"schemas": schemas, "securitySchemes": schemes},
        }

    def _inbound_openapi_paths(self, paths, schemas, schemes):
        """Add this endpoint's paths, schemas and security scheme."""
        name = self.endpoint
        mapping = Mapping(self)
        schemas[name] = self._inbound_schema(mapping, OUT_DIRECTIONS)
        schemas[f"{name}_input"] = self._inbound_schema(mapping, IN_DIRECTIONS)
        security = []
        scheme = {
            "basic": {"type": "http", "scheme": "basic"},
            "bearer": {"type": "http", "scheme": "bearer"},
            "odoo_api_key": {
                "type": "http",
                "scheme": "bearer",
                "description": "An Odoo API key of the user the request runs as.",
            },
            "api_key": {
                "type": "apiKey",
                "in": "header",
                "name": (self.api_key_header or "X-API-Key").strip(),
            },
        }.get(self.auth_type)
        if scheme:
            schemes[f"{name}_auth"] = scheme
            security = [{f"{name}_auth": []}]
        ref = {"$ref": f"#/components/schemas/{name}"}
        input_ref = {"$ref": f"#/components/schemas/{name}_input"}
        errors = {
            code: {
                "description": "Error",
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/Error"}
                    }
                },
            }
            for code in ("4XX", "5XX")
        }

        def success(data, **extra):
            properties = {"status": {"const": "success"}, "data": data}
            properties.update({key: {"type": "integer"} for key in extra})
            return {
                "description": "Success",
                "content": {
                    "application/json": {
                        "schema": {"type": "object", "properties": properties}
                    }
                },
            }

        methods = set(self.http_method_ids.mapped("name"))
        collection, item = {}, {}
        if "GET" in methods:
            parameters = [
                {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                {"name": "offset", "in": "query", "schema": {"type": "integer"}},
                {
                    "name": "total",
                    "in": "query",
                    "description": "false: skip counting all matches (total null).",
                    "schema": {"type": "boolean", "default": True},
                },
            ]
            for key, line in self._inbound_filters(mapping).items():
                parameters.append(
                    {
                        "name": key,
                        "in": "query",
                        "description": "Equality filter.",
                        "schema": self._inbound_line_schema(
                            mapping, line, OUT_DIRECTIONS
                        ),
                    }
                )
            collection["get"] = {
                "summary": f"List {self.name}",
                "parameters": parameters,
                "responses": {
                    "200": success(
                        {"type": "array", "items": ref},
                        count=1,
                        total=1,
                        limit=1,
                        offset=1,
                    ),
                    **errors,
                },
            }
            item["get"] = {
                "summary": f"Read one {self.name} record",
                "responses": {"200": success(ref), **errors},
            }
        if "POST" in methods:
            collection["post"] = {
                "summary": f"Create or update {self.name} records (upsert)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    input_ref,
                                    {
                                        "type": "array",
                                        "items": input_ref,
                                        "maxItems": MAX_ITEMS,
                                    },
                                ]
                            }
                        }
                    },
                },
                "responses": {
                    "200": success(ref),
                    "201": success(ref),
                    **errors,
                },
            }
        for method in ("PUT", "PATCH"):
            if method in methods:
                item[method.lower()] = {
                    "summary": f"Update a {self.name} record",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": input_ref}},
                    },
                    "responses": {"200": success(ref), **errors},
                }
        if "DELETE" in methods:
            item["delete"] = {
                "summary": f"Delete a {self.name} record",
                "responses": {
                    "200": success({"type": "object", "properties": {"id": {}}}),
                    **errors,
                },
            }
        for operation in (*collection.values(), *item.values()):
            operation["security"] = security
        path = f"{ROUTE_PREFIX}/{name}"
        if collection:
            paths[path] = collection
        if item:
            ident = mapping.identifier_line()
            item["parameters"] = [
                {
                    "name": "id",
                    "in": "path",
                    "required": True,
                    "description": f"Value of {ident.api_key} ({ident.field_path}).",
                    "schema": {"type": "string"},
                }
            ]
            paths[f"{path}/{{id}}"] = item

    def _inbound_schema(self, mapping, directions, depth=0):
        """The JSON schema of the objects the lines of ``directions`` read or
        write (dotted keys as nested objects)."""
        root = {"type": "object", "properties": {}}
        for line in mapping.lines(directions):
            node = root
            *parents, last = line.api_key.split(".")
            for part in parents:
                node = node["properties"].setdefault(
                    part, {"type": "object", "properties": {}}
                )
                if "properties" not in node:
                    break
            else:
                node["properties"][last] = self._inbound_line_schema(
                    mapping, line, directions, depth
                )
        return root

    def _inbound_line_schema(self, mapping, line, directions, depth=0):
        """The JSON schema of one line's value (types from the Odoo field)."""
        if line.value_type == "python" or not line.field_path:
            return {"description": "Computed by Python code."}
        chain = mapping.chain(line.field_path)
        leaf = chain[-1]
        multi = any(f.type in X2MANY_TYPES for f in chain[:-1])
        if leaf.type in RELATIONAL_TYPES:
            many = multi or leaf.type in X2MANY_TYPES
            if line.value_type == "mapping" and depth < SCHEMA_MAX_DEPTH:
                child = mapping.child(line.mapping_config_id)
                item = self._inbound_schema(child, directions, depth + 1)
            elif line.value_type == "mapping":
                item = {"type": "object"}
            elif line.value_type == "relational":
                item = {"type": "string"}
            else:
                item = {"type": "integer"}
            if many:
                schema = {"type": "array", "items": item}
            else:
                schema = {"anyOf": [item, {"type": "null"}]}
        else:
            schema = dict(_FIELD_SCHEMAS.get(leaf.type, _TEXT_SCHEMA))
            if leaf.type == "selection":
                keys = [key for key, _label in leaf._description_selection(self.env)]
                schema["enum"] = [*keys, None]
            if multi:
                schema = {"type": "array", "items": schema}
        schema["description"] = f"{leaf.string} ({line.field_path})"
        return schema
