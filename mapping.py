"""The mapping engine of bj_api_sync, both ways (SPEC §3 and §10).

* Odoo → JSON: :meth:`Mapping.build_objects` turns records into the JSON objects
  of a payload, line by line over a whole batch (each field read once per batch).
* JSON → Odoo: :meth:`Mapping.to_values` turns one JSON object into the values a
  ``create`` or ``write`` of the configuration's model takes, only for fields the
  lines name (no mass assignment), with errors that name the key, the line and the
  value (:class:`MappingError`, HTTP 422 for inbound requests).

A :class:`Mapping` works on one configuration's lines (cached as plain
:class:`LinePlan` tuples) and on records of the environment it is given: the
rights of the user the work is done for. It is not a model: like a job class of a
queue, it is plain Python that works on records.
"""

import base64
import binascii
import re
import typing
from datetime import date, datetime, timezone

from odoo import Command

from .tools import jsonenc, sandbox

MAPPING_MAX_DEPTH = 8
RELATIONAL_TYPES = ("many2one", "one2many", "many2many")
X2MANY_TYPES = ("one2many", "many2many")
#: Directions whose lines build JSON (out) and read JSON (in).
OUT_DIRECTIONS = ("both", "out")
IN_DIRECTIONS = ("both", "in")

_MISSING = object()
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no", ""})


class LinePlan(typing.NamedTuple):
    """What the engine needs of one mapping line (cached, ORM-free)."""

    id: int
    api_key: str
    value_type: str
    field_path: str | None
    mapping_config_id: int | None
    python_code: str | None
    direction: str
    is_identifier: bool


class PayloadError(Exception):
    """Building the JSON object of one record failed."""


class MappingError(Exception):
    """A JSON value cannot become an Odoo value (SPEC §10): 422 for inbound
    requests, an error on that object for imports.

    ``key`` is the JSON key, ``line_id`` the mapping line, ``value`` the JSON
    value at fault.
    """

    status = 422

    def __init__(self, message, key=None, line_id=None, value=None):
        super().__init__(message)
        self.key = key
        self.line_id = line_id
        self.value = value


# ----------------------------------------------------------------------------
# Odoo values → JSON values (SPEC §3 "plain")
# ----------------------------------------------------------------------------


def _as_text(value):
    if value is False or value is None or value == "":
        return None
    return str(value)


def _as_binary(value):
    if not value:
        return None
    return value.decode() if isinstance(value, bytes) else value


_PLAIN_CONVERTERS = {
    "many2one": lambda value: value.id or None,
    "one2many": lambda value: list(value.ids),
    "many2many": lambda value: list(value.ids),
    "boolean": bool,
    "integer": lambda value: value or 0,
    "float": lambda value: value or 0,
    "monetary": lambda value: value or 0,
    "datetime": lambda value: jsonenc.format_datetime(value) if value else None,
    "date": lambda value: value.isoformat() if value else None,
    "binary": _as_binary,
    "json": lambda value: None if value is False else value,
    "properties": lambda value: None if value is False else value,
    "many2one_reference": lambda value: value or None,
    "reference": lambda value: f"{value._name},{value.id}" if value else None,
}


def plain_converter(field_type):
    """The function giving the JSON form of a value of this field type (SPEC §3):
    char, text, html, selection and any other type are text, empty → null."""
    return _PLAIN_CONVERTERS.get(field_type, _as_text)


def _parse(parser, text):
    """``parser(text)``, or None when it refuses the text."""
    try:
        return parser(text)
    except (ValueError, binascii.Error):
        return None


def get_nested(data, dotted_key):
    """The value at ``dotted_key`` in ``data`` (dots walk nested objects), or
    ``_MISSING`` when a key on the way is absent or not an object."""
    current = data
    for part in dotted_key.split("."):
        if not isinstance(current, dict) or part not in current:
            return _MISSING
        current = current[part]
    return current


def has_nested(data, dotted_key):
    """Whether ``data`` holds a value (``null`` included) at ``dotted_key``."""
    return get_nested(data, dotted_key) is not _MISSING


def walk_path(record, chain):
    """Follow all relational segments of ``chain`` but the last from ``record``;
    return ``(target records, whether an x2many was crossed)``."""
    current, multi = record, False
    for field in chain[:-1]:
        if field.type in X2MANY_TYPES:
            multi = True
        current = current.mapped(field.name) if multi else current[field.name]
    return current, multi


def snapshot_value(field, value):
    """A field's value (as a record gives it) kept to be compared and sent
    later: a tuple of ids for relational fields, the value itself otherwise."""
    if field.type in RELATIONAL_TYPES:
        ids = getattr(value, "ids", value)
        return tuple(ids) if isinstance(ids, (list, tuple)) else ()
    return value


def value_changed(field, before, value):
    """Whether ``value`` (as a record gives it) differs from ``before`` (as
    :func:`snapshot_value` kept it) in what the API sees: ids for relations
    (x2many as sets), the plain JSON value otherwise (``False`` and ``""`` are
    both ``null``)."""
    if field.type in X2MANY_TYPES:
        return set(before) != set(value.ids)
    if field.type in RELATIONAL_TYPES:
        return tuple(before) != tuple(value.ids)
    convert = plain_converter(field.type)
    return convert(before) != convert(value)


def _field_sources(model, field, seen):
    """``field``'s name, and for a field computed (or related) but not stored,
    the first fields of its dependencies, recursively."""
    names = {field.name}
    if field.store or not (field.compute or field.related) or field.name in seen:
        return frozenset(names)
    seen.add(field.name)
    for depend in model.pool.field_depends.get(field, ()):
        dependency = model._fields.get(depend.split(".")[0])
        if dependency is not None:
            names |= _field_sources(model, dependency, seen)
    return frozenset(names)


class Mapping:
    """The lines of one configuration, applied to records of ``env``.

    :param config: the ``bj.api.sync.config`` record (read as superuser: its
        lines are configuration, not data)
    :param env: the environment whose rights read and write the records, run
        the code; default the configuration's
    """

    def __init__(self, config, env=None):
        config.ensure_one()
        self.config = config.sudo()
        self.env = env if env is not None else config.env
        self._ = config.env._
        self._line_sources = {}

    def child(self, config_id):
        """The mapping of a nested configuration, in the same environment."""
        return Mapping(self.config.browse(config_id), self.env)

    @property
    def model_name(self):
        return self.config.model_name

    def lines(self, directions):
        return [
            line
            for line in self.config._get_line_plans()
            if line.direction in directions
        ]

    def chain(self, path):
        """The fields a dotted path from the configuration's model walks."""
        return self.env["bj.api.sync.config.line"]._resolve_field_path(
            self.model_name, path
        )

    # ------------------------------------------------------------------------
    # Code
    # ------------------------------------------------------------------------

    def script_context(self, model, records):
        """Names given to mapping code and scripts. ``env`` is the records'
        environment: the rights of the user the work is done for, never more."""
        env = model.env
        return sandbox.eval_context(
            env=env,
            model=model,
            records=records,
            uid=env.uid,
            user=env.user,
            Command=Command,
        )

    # ------------------------------------------------------------------------
    # Odoo → JSON
    # ------------------------------------------------------------------------

    def build_objects(self, records, depth=0, fetched=False, keep=None):
        """Build one JSON object per record from the out lines.

        Values are computed line by line over the whole batch so that the ORM
        reads each field once for all records.

        :param fetched: the caller has just read :meth:`first_level_fields`
            of ``records`` (only deeper levels are read here)
        :param keep: None (every line for every record), or a list aligned with
            ``records`` of None (every line) or the set of line ids that record's
            object keeps (see :meth:`change_scope`)
        :return: ``(objects, errors)`` lists aligned with ``records``; ``errors``
            holds a :class:`PayloadError` for the records that failed, else None
        """
        objects = [{} for _record in records]
        errors = [None] * len(records)
        lines = self.lines(OUT_DIRECTIONS)
        self.prefetch(
            records,
            [line.field_path for line in lines if line.field_path],
            fetched=fetched,
        )
        for line in lines:
            if keep is not None and all(
                kept is not None and line.id not in kept for kept in keep
            ):
                continue  # no record sends this line
            values = self._line_values(line, records, depth)
            key = line.api_key
            simple = "." not in key
            for index, value in enumerate(values):
                if errors[index]:
                    continue
                if keep is not None and keep[index] is not None:
                    if line.id not in keep[index]:
                        continue
                if isinstance(value, PayloadError):
                    errors[index] = value
                elif simple:
                    objects[index][key] = value
                else:
                    try:
                        jsonenc.set_nested(objects[index], key, value)
                    except ValueError as error:
                        errors[index] = PayloadError(str(error))
        return objects, errors

    def build_objects_isolated(self, records, depth=0, keep=None):
        """:meth:`build_objects`, but a failure that escapes it (an access error
        on a related record, say) only fails the records it concerns: the batch
        is built again record by record."""
        import psycopg2  # noqa: PLC0415 - only for the exception class

        try:
            return self.build_objects(records, depth, keep=keep)
        except psycopg2.Error:
            raise
        except Exception as error:  # noqa: BLE001 - becomes the records' error
            if len(records) == 1:
                return [None], [PayloadError(str(error))]
        objects, errors = [], []
        for index, record in enumerate(records):
            obj, err = self.build_objects_isolated(
                record, depth, keep=None if keep is None else [keep[index]]
            )
            objects += obj
            errors += err
        return objects, errors

    def _line_values(self, line, records, depth):
        """Values of one line for every record, aligned with ``records``; a
        record whose value cannot be computed gets a :class:`PayloadError`."""
        if line.value_type != "python":
            return self._path_values(line, records, line.value_type, depth)
        plain = (
            self._path_values(line, records, "plain", depth)
            if line.field_path
            else [None] * len(records)
        )
        model = records.browse()
        values = []
        for record, value in zip(records, plain, strict=True):
            context = self.script_context(model, record)
            context.update(record=record, value=value)
            try:
                result = sandbox.run(line.python_code, context, evaluate=True)
                values.append(None if result is sandbox.NO_RESULT else result)
            except Exception as error:  # noqa: BLE001
                values.append(
                    PayloadError(
                        self._(
                            "Python code of mapping line %(key)r failed: %(error)s",
                            key=line.api_key,
                            error=error,
                        )
                    )
                )
        return values

    def _path_values(self, line, records, value_type, depth):
        chain = self.chain(line.field_path)
        leaf = chain[-1]
        get = leaf.__get__
        recs = list(records)
        if leaf.type not in RELATIONAL_TYPES:
            convert = plain_converter(leaf.type)
            if len(chain) == 1:  # the common case, kept tight
                return [convert(get(rec)) for rec in recs]
            result = []
            for current, multi in (walk_path(rec, chain) for rec in recs):
                if multi:
                    result.append([convert(get(rec)) for rec in current])
                else:
                    result.append(convert(get(current)) if current else None)
            return result
        related_list = []
        for rec in recs:
            current, multi = (rec, False) if len(chain) == 1 else walk_path(rec, chain)
            if not multi and len(current) == 1:
                related = get(current)
            else:
                related = current.mapped(leaf.name)
            related_list.append((related, leaf.type == "many2one" and not multi))
        if value_type == "plain":
            return [
                (related.id or None) if single else list(related.ids)
                for related, single in related_list
            ]
        if value_type == "relational":
            return [
                (related.display_name or None)
                if single
                else related.mapped("display_name")
                for related, single in related_list
            ]
        # mapping: build every nested object in one batch, then distribute.
        if depth >= MAPPING_MAX_DEPTH:
            error = PayloadError(
                self._("Mapping nested deeper than %s levels.", MAPPING_MAX_DEPTH)
            )
            return [error] * len(records)
        union_ids = list(
            dict.fromkeys(i for related, _single in related_list for i in related._ids)
        )
        union = records.env[leaf.comodel_name].browse(union_ids)
        union = union.with_prefetch(union_ids)
        objects, errors = self.child(line.mapping_config_id).build_objects(
            union, depth + 1
        )
        by_id = {
            rec.id: err or obj
            for rec, obj, err in zip(union, objects, errors, strict=True)
        }
        result = []
        for related, single in related_list:
            items = [by_id[rec.id] for rec in related]
            failed = next((i for i in items if isinstance(i, PayloadError)), None)
            if failed:
                result.append(failed)
            elif single:
                result.append(items[0] if items else None)
            else:
                result.append(items)
        return result

    def placeholder_values(self, record, placeholders):
        """The plain values of the URL placeholders for one record."""
        values = {}
        for path in placeholders:
            chain = self.chain(path)
            current, multi = walk_path(record, chain)
            convert = plain_converter(chain[-1].type)
            name = chain[-1].name
            if multi:
                values[path] = ",".join(str(convert(rec[name])) for rec in current)
            else:
                values[path] = convert(current[name]) if current else None
        return values

    # ------------------------------------------------------------------------
    # Changed fields (payload_scope = changed, SPEC §14)
    # ------------------------------------------------------------------------

    def line_sources(self, line):
        """The fields of the configuration's model whose change changes the
        value of ``line``: the first field of its path; for a first field that
        is computed (or related) without being stored, also the first fields of
        what it depends on (``display_name`` follows ``name``…)."""
        if not line.field_path:
            return frozenset()
        if line.id not in self._line_sources:
            model = self.env[self.model_name]
            first = self.chain(line.field_path)[0]
            self._line_sources[line.id] = _field_sources(model, first, set())
        return self._line_sources[line.id]

    def change_scope(self, records, changes):
        """What each record's object keeps when only changes are sent.

        Kept: the identifier lines, the Python lines (their code may read any
        field) and the lines whose source fields (:meth:`line_sources`) differ
        from their values before. A record none of whose lines changed is left
        out (nothing to send).

        :param changes: ``{record id: {field name: value before}}`` (values as
            :func:`snapshot_value` keeps them); records without an entry are
            sent whole
        :return: ``(records, keep, changed)``: the records to send and, aligned
            with them, the line ids each object keeps and the lines whose
            sources changed (both None for a record sent whole)
        """
        lines = self.lines(OUT_DIRECTIONS)
        sources = {line.id: self.line_sources(line) for line in lines}
        watched = frozenset().union(*sources.values())
        always = frozenset(
            line.id
            for line in lines
            if line.is_identifier or line.value_type == "python"
        )
        kept_ids, keep, changed = [], [], []
        for record in records:
            before = changes.get(record.id)
            if before is None:
                kept_ids.append(record.id)
                keep.append(None)
                changed.append(None)
                continue
            names = {
                name
                for name, value in before.items()
                if name in watched
                and value_changed(record._fields[name], value, record[name])
            }
            moved = [line for line in lines if sources[line.id] & names]
            if not moved:
                continue
            kept_ids.append(record.id)
            keep.append(always | {line.id for line in moved})
            changed.append(moved)
        kept = records.browse(kept_ids).with_prefetch(records._prefetch_ids)
        return kept, keep, changed

    def add_previous(self, records, objects, errors, changed, changes):
        """Add ``"previous": {api_key: value before}`` to the objects of records
        sent by changes (``changed`` / ``changes`` as :meth:`change_scope`).

        Each changed line whose first field was written gets the value that
        field had before the transaction's first write, converted the way the
        line converts the current one (ids, display names, nested objects of the
        related records as they are now). Python lines and lines that changed
        through a dependency get none. A failure is that record's error.
        """
        import psycopg2  # noqa: PLC0415 - only for the exception class

        for index, record in enumerate(records):
            if errors[index] or changed[index] is None:
                continue
            before = changes[record.id]
            previous = {}
            try:
                for line in changed[index]:
                    if line.value_type == "python":
                        continue
                    first = self.chain(line.field_path)[0]
                    if first.name not in before:
                        continue
                    value = self._previous_value(line, before[first.name])
                    jsonenc.set_nested(previous, line.api_key, value)
            except psycopg2.Error:
                raise
            except Exception as error:  # noqa: BLE001 - becomes the record's error
                errors[index] = PayloadError(
                    self._("Previous values could not be built: %s", error)
                )
                continue
            objects[index]["previous"] = previous

    def _previous_value(self, line, before):
        """The value ``line`` gives for its first field's value ``before``."""
        chain = self.chain(line.field_path)
        first, leaf = chain[0], chain[-1]
        if first.type not in RELATIONAL_TYPES:
            return plain_converter(first.type)(before)
        if len(chain) == 1 and line.value_type == "plain":
            if first.type == "many2one":
                return before[0] if before else None
            return list(before)
        current = self.env[first.comodel_name].browse(before).exists()
        multi = first.type in X2MANY_TYPES
        for field in chain[1:-1]:
            multi = multi or field.type in X2MANY_TYPES
            current = current.mapped(field.name) if multi else current[field.name]
        if len(chain) == 1:
            related, single = current, first.type == "many2one"
        elif leaf.type not in RELATIONAL_TYPES:
            convert = plain_converter(leaf.type)
            if multi:
                return [convert(rec[leaf.name]) for rec in current]
            return convert(current[leaf.name]) if current else None
        else:
            if multi or len(current) != 1:
                related = current.mapped(leaf.name)
            else:
                related = current[leaf.name]
            single = leaf.type == "many2one" and not multi
        if line.value_type == "plain":
            return (related.id or None) if single else list(related.ids)
        if line.value_type == "relational":
            if single:
                return related.display_name or None
            return related.mapped("display_name")
        objects, errors = self.child(line.mapping_config_id).build_objects(related, 1)
        failed = next((error for error in errors if error), None)
        if failed:
            raise failed
        if single:
            return objects[0] if objects else None
        return objects

    def prefetch(self, records, paths, fetched=False):
        """Read every field ``paths`` walk through, level by level, in bulk.

        Accessing fields record by record would also work thanks to prefetching,
        but one ``fetch`` per model and level reads exactly the needed columns
        (like ``read()`` would) instead of every prefetchable field. With
        ``fetched``, the first level is already read.
        """
        self._prefetch_tree(records, self._path_tree(paths), fetched)

    def _path_tree(self, paths):
        tree = {}
        for path in paths:
            node = tree
            for field in self.chain(path):
                node = node.setdefault(field.name, {})
        return tree

    def first_level_fields(self, records):
        """The stored fields of ``records``' model the out lines read (and
        ``active``): what :meth:`build_objects` reads first."""
        lines = self.lines(OUT_DIRECTIONS)
        tree = self._path_tree(line.field_path for line in lines if line.field_path)
        return self._stored_names(records, tree)

    @staticmethod
    def _stored_names(records, tree):
        names = [name for name in tree if records._fields[name].store]
        if "active" in records._fields:
            names.append("active")  # x2many values are filtered on it
        return names

    def _prefetch_tree(self, records, tree, fetched=False):
        if not records or not tree:
            return
        if not fetched:
            records.fetch(self._stored_names(records, tree))
        for name, subtree in tree.items():
            if subtree and records._fields[name].relational:
                targets = records.mapped(name)
                self._prefetch_tree(targets.with_prefetch(targets._ids), subtree)

    # ------------------------------------------------------------------------
    # JSON → Odoo
    # ------------------------------------------------------------------------

    def identifier_line(self):
        """The in line marked Record Identifier, or None."""
        return next(
            (line for line in self.lines(IN_DIRECTIONS) if line.is_identifier), None
        )

    def identifier_value(self, obj):
        """The identifier's JSON value in ``obj`` (``_MISSING`` when absent)."""
        line = self.identifier_line()
        if not line or not isinstance(obj, dict):
            return _MISSING
        return get_nested(obj, line.api_key)

    def identifier_domain(self, value):
        """The domain finding "the same record" by its identifier value."""
        line = self.identifier_line()
        value = self._identifier_search_value(line, value)
        return [(line.field_path, "=", value)]

    def _identifier_search_value(self, line, value):
        chain = self.chain(line.field_path)
        leaf = chain[-1]
        if len(chain) == 1 and leaf.type not in RELATIONAL_TYPES:
            return self._convert_in(line, leaf, value)
        if isinstance(value, (dict, list)):
            raise self._error(line, value, self._("an identifier must be a scalar"))
        return value

    def find(self, model, obj):
        """The record ``obj`` identifies (empty when it has no identifier or no
        record has it; several → :class:`MappingError`)."""
        value = self.identifier_value(obj)
        if value is _MISSING or value is None:
            return model.browse()
        found = model.with_context(active_test=False).search(
            self.identifier_domain(value), limit=2
        )
        if len(found) > 1:
            line = self.identifier_line()
            raise self._error(
                line,
                value,
                self._("several %(model)s records have it", model=model._name),
            )
        return found

    def to_values(self, obj, record=None, depth=0):
        """The values to write for one JSON object (SPEC §10).

        Only fields named by in lines are written; a key absent from ``obj``
        leaves its field untouched, JSON ``null`` clears it.

        :param obj: the JSON object (a dict)
        :param record: the existing record (updates), else an empty recordset
        :return: ``(values, unknown_keys)``: the values for ``create``/``write``
            and the top-level keys of ``obj`` no line reads
        :raises MappingError: naming the key, the line and the value
        """
        model = self.env[self.model_name]
        record = record if record is not None else model.browse()
        if not isinstance(obj, dict):
            raise MappingError(
                self._(
                    "Expected a JSON object, got %(type)s.",
                    type=type(obj).__name__,
                ),
                value=obj,
            )
        values = {}
        known = set()
        for line in self.lines(IN_DIRECTIONS):
            known.add(line.api_key.split(".")[0])
            value = get_nested(obj, line.api_key)
            if line.value_type == "python":
                result = self._python_value(line, value, obj, record, model)
                if result is not _MISSING and line.field_path:
                    values[self.chain(line.field_path)[0].name] = result
                continue
            if value is _MISSING:
                continue
            chain = self.chain(line.field_path)
            if chain[0].name == "id":
                continue  # identifies, never written
            name, converted = self._line_to_value(line, chain, value, record, depth)
            values[name] = converted
        unknown = sorted(key for key in obj if key not in known)
        return values, unknown

    def _python_value(self, line, value, obj, record, model):
        context = self.script_context(model, record)
        context.update(
            record=record,
            value=None if value is _MISSING else value,
            request_data=obj,
        )
        try:
            result = sandbox.run(line.python_code, context, evaluate=True)
        except Exception as error:  # noqa: BLE001 - named in the error
            raise self._error(
                line, value, self._("its Python code failed: %s", error)
            ) from None
        if result is sandbox.NO_RESULT:
            return _MISSING  # Execute mode: the code only acts
        return result

    def _line_to_value(self, line, chain, value, record, depth):
        """``(field name, value)`` of one non-Python in line."""
        first, leaf = chain[0], chain[-1]
        if line.value_type == "mapping":
            return first.name, self._mapping_value(line, first, value, record, depth)
        if len(chain) > 1:
            # country_id.code ← "BE": find the related record(s) by that value.
            rest = ".".join(field.name for field in chain[1:])
            return first.name, self._lookup(line, first, rest, value)
        if line.value_type == "relational" and leaf.type in RELATIONAL_TYPES:
            comodel = self.env[leaf.comodel_name]
            return leaf.name, self._lookup(line, leaf, comodel._rec_name, value)
        return leaf.name, self._convert_in(line, leaf, value)

    def _error(self, line, value, reason):
        return MappingError(
            self._(
                "Key %(key)r (mapping line %(line)s, field %(path)s): value "
                "%(value)s: %(reason)s.",
                key=line.api_key,
                line=line.id,
                path=line.field_path or "-",
                value=jsonenc.short_repr(value),
                reason=reason,
            ),
            key=line.api_key,
            line_id=line.id,
            value=value,
        )

    # -- plain values ---------------------------------------------------------

    def _convert_in(self, line, field, value):
        """A JSON value as the ORM value of ``field`` (SPEC §10 "plain")."""
        if value is None:
            if field.type in X2MANY_TYPES:
                return [Command.clear()]
            return False
        convert = getattr(self, f"_in_{field.type}", self._in_text)
        return convert(line, field, value)

    def _in_text(self, line, field, value):
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self._error(line, value, self._("a text is expected"))
        return str(value)

    def _in_selection(self, line, field, value):
        keys = [key for key, _label in field._description_selection(self.env)]
        if value not in keys:
            raise self._error(
                line,
                value,
                self._("allowed values are %s", ", ".join(map(repr, keys))),
            )
        return value

    def _in_number(self, line, value, kind):
        if isinstance(value, bool):
            value = None
        elif isinstance(value, str):
            try:
                value = kind(value.strip())
            except ValueError:
                value = None
        elif isinstance(value, float) and kind is int:
            value = int(value) if value.is_integer() else None
        elif not isinstance(value, (int, float)):
            value = None
        if value is None or (isinstance(value, float) and value != value):
            raise self._error(
                line,
                value,
                self._("an integer is expected")
                if kind is int
                else self._("a number is expected"),
            )
        if kind is float and value in (float("inf"), float("-inf")):
            raise self._error(line, value, self._("a finite number is expected"))
        return kind(value)

    def _in_integer(self, line, field, value):
        result = self._in_number(line, value, int)
        if not -(2**31) <= result < 2**31:
            raise self._error(line, value, self._("out of the integer range"))
        return result

    def _in_float(self, line, field, value):
        return self._in_number(line, value, float)

    _in_monetary = _in_float

    def _in_boolean(self, line, field, value):
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, str)) and str(value).strip().lower() in (
            _TRUE | _FALSE
        ):
            return str(value).strip().lower() in _TRUE
        raise self._error(line, value, self._("true or false is expected"))

    def _in_date(self, line, field, value):
        parsed = None
        if isinstance(value, str) and _DATE_RE.match(value):
            parsed = _parse(date.fromisoformat, value)
        if parsed is None:
            raise self._error(line, value, self._("a date YYYY-MM-DD is expected"))
        return parsed

    def _in_datetime(self, line, field, value):
        if isinstance(value, str):
            text = value.strip()
            if text.endswith(("Z", "z")):
                text = text[:-1] + "+00:00"
            parsed = _parse(datetime.fromisoformat, text)
            if parsed is not None:
                if parsed.tzinfo is not None:
                    parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
                return parsed.replace(microsecond=0)
        raise self._error(
            line,
            value,
            self._("an ISO 8601 date and time is expected (2024-05-01T10:00:00Z)"),
        )

    def _in_binary(self, line, field, value):
        decoded = None
        if isinstance(value, str):
            decoded = _parse(lambda text: base64.b64decode(text, validate=True), value)
        if decoded is None:
            raise self._error(line, value, self._("base64 text is expected"))
        return value

    def _in_many2one(self, line, field, value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._error(line, value, self._("a record id is expected"))
        return self._existing(line, field, [value], value).id

    def _in_x2many(self, line, field, value):
        if not isinstance(value, list) or any(
            isinstance(item, bool) or not isinstance(item, int) for item in value
        ):
            raise self._error(line, value, self._("a list of record ids is expected"))
        return [Command.set(self._existing(line, field, value, value).ids)]

    _in_one2many = _in_many2many = _in_x2many

    def _existing(self, line, field, ids, value):
        comodel = self.env[field.comodel_name]
        found = comodel.browse(ids).exists()
        if len(found) != len(set(ids)):
            raise self._error(
                line,
                value,
                self._("no such %(model)s record", model=field.comodel_name),
            )
        return found

    # -- lookups (dotted paths, display names) --------------------------------

    def _lookup(self, line, field, path, value):
        """The id(s) of ``field``'s comodel whose ``path`` equals ``value`` (a
        list of values for an x2many field)."""
        comodel = self.env[field.comodel_name].with_context(active_test=False)
        multi = field.type in X2MANY_TYPES
        if value is None:
            return [Command.clear()] if multi else False
        items = value if multi else [value]
        if not isinstance(items, list) or any(
            isinstance(item, (dict, list)) for item in items
        ):
            raise self._error(
                line,
                value,
                self._("a list of values is expected")
                if multi
                else self._("a single value is expected"),
            )
        ids = []
        for item in items:
            found = comodel.search([(path, "=", item)], limit=2)
            if len(found) != 1:
                raise self._error(
                    line,
                    item,
                    self._(
                        "%(count)s %(model)s records have %(path)s = %(value)s",
                        count=self._("no") if not found else self._("several"),
                        model=field.comodel_name,
                        path=path,
                        value=jsonenc.short_repr(item),
                    ),
                )
            ids.append(found.id)
        return [Command.set(ids)] if multi else ids[0]

    # -- nested configurations ------------------------------------------------

    def _mapping_value(self, line, field, value, record, depth):
        if depth >= MAPPING_MAX_DEPTH:
            raise self._error(
                line,
                value,
                self._("mapping nested deeper than %s levels", MAPPING_MAX_DEPTH),
            )
        child = self.child(line.mapping_config_id)
        if field.type == "one2many":
            return self._one2many_commands(line, child, field, value, record, depth)
        multi = field.type == "many2many"
        if value is None:
            return [Command.clear()] if multi else False
        items = value if multi else [value]
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise self._error(
                line,
                value,
                self._("a list of objects is expected")
                if multi
                else self._("an object is expected"),
            )
        ids = [child.find_or_create(item, line, depth + 1).id for item in items]
        return [Command.set(ids)] if multi else ids[0]

    def find_or_create(self, obj, parent_line, depth):
        """The record a nested object points at, by this (child) configuration's
        identifier; created from its lines when missing and the configuration
        allows it (``inbound_create_missing``)."""
        model = self.env[self.model_name]
        if not self.identifier_line():
            raise MappingError(
                self._(
                    "Key %(key)r (mapping line %(line)s): configuration %(config)r "
                    "has no Record Identifier line to find %(model)s records.",
                    key=parent_line.api_key,
                    line=parent_line.id,
                    config=self.config.name,
                    model=self.model_name,
                ),
                key=parent_line.api_key,
                line_id=parent_line.id,
                value=obj,
            )
        found = self.find(model, obj)
        if found:
            return found
        if not self.config.inbound_create_missing:
            raise MappingError(
                self._(
                    "Key %(key)r (mapping line %(line)s): no %(model)s record "
                    "has %(ident)s = %(value)s, and configuration %(config)r does "
                    "not create missing records.",
                    key=parent_line.api_key,
                    line=parent_line.id,
                    model=self.model_name,
                    ident=self.identifier_line().api_key,
                    value=jsonenc.short_repr(self.identifier_value(obj)),
                    config=self.config.name,
                ),
                key=parent_line.api_key,
                line_id=parent_line.id,
                value=obj,
            )
        values, _unknown = self.to_values(obj, depth=depth)
        return model.create(values)

    def _one2many_commands(self, line, child, field, value, record, depth):
        if value is None:
            value = []
        if not isinstance(value, list) or not all(isinstance(i, dict) for i in value):
            raise self._error(line, value, self._("a list of objects is expected"))
        existing = record[field.name] if record else None
        commands = []
        if not existing:
            for item in value:
                vals, _unknown = child.to_values(item, depth=depth + 1)
                commands.append(Command.create(vals))
            return commands
        ident = child.identifier_line()
        if not ident:
            # No way to tell the children apart: the list is replaced.
            commands += [Command.delete(rec.id) for rec in existing]
            for item in value:
                vals, _unknown = child.to_values(item, depth=depth + 1)
                commands.append(Command.create(vals))
            return commands
        kept = set()
        for item in value:
            ident_value = child.identifier_value(item)
            target = existing[:0]
            if ident_value not in (_MISSING, None):
                domain = child.identifier_domain(ident_value)
                target = existing.filtered_domain(domain)[:1]
            vals, _unknown = child.to_values(item, record=target, depth=depth + 1)
            if target:
                kept.add(target.id)
                commands.append(Command.update(target.id, vals))
            else:
                commands.append(Command.create(vals))
        commands += [Command.delete(rec.id) for rec in existing if rec.id not in kept]
        return commands


def field_writable_problem(field):
    """Why an in line cannot write ``field`` (SPEC §10), or None."""
    if field.name == "id":
        return None
    if field.readonly:
        return "readonly"
    if not field.store and not field.inverse:
        return "not stored and without inverse"
    return None


__all__ = [
    "IN_DIRECTIONS",
    "MAPPING_MAX_DEPTH",
    "OUT_DIRECTIONS",
    "LinePlan",
    "Mapping",
    "MappingError",
    "PayloadError",
    "field_writable_problem",
    "get_nested",
    "has_nested",
    "plain_converter",
    "walk_path",
]
