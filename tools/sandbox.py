"""Make admin scripts' ``import`` lines work inside a restricted evaluator.

Odoo's ``safe_eval`` refuses every import opcode, yet the scripts integrators write
(and the product documentation shows) start with ``from datetime import datetime``
or ``import json``. Those modules are already offered to the script in a sandboxed
form, so each such import is rewritten into a plain assignment from a loader
function that hands out the sandboxed module; any other import is refused.

The rewrite keeps every statement on its original line, so error messages still
point at the admin's own line numbers. No Odoo import here.
"""

import ast
import re

#: Modules a script may import, with their importable submodules.
ALLOWED_MODULES = frozenset(
    {
        "datetime",
        "time",
        "json",
        "math",
        "dateutil",
        "dateutil.relativedelta",
        "dateutil.parser",
        "dateutil.tz",
        "dateutil.rrule",
    }
)

#: Name of the loader function the evaluation context must provide.
LOADER_NAME = "_bj_import"

#: Largest script accepted, in UTF-8 bytes (parsing and checking a 10 MB script
#: took half a minute and gigabytes of memory).
MAX_CODE_BYTES = 64 * 1024

# The line breaks of Python's tokenizer (and so of ast line numbers): not the
# other ones str.splitlines() knows (\v, \f, \x1c-\x1e, \x85, U+2028, U+2029).
_LINE_RE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def check_size(source):
    """Raise ``ValueError`` when ``source`` is over :data:`MAX_CODE_BYTES`.

    Call it before parsing; the message reads e.g. ``The code is 70000 bytes,
    more than the 65536 allowed.``
    """
    if not source:
        return
    if isinstance(source, str):
        if len(source) <= MAX_CODE_BYTES // 4:
            return  # even 4 bytes a character would fit
        size = len(source.encode("utf-8", "surrogatepass"))
    else:
        size = len(source)
    if size > MAX_CODE_BYTES:
        raise ValueError(
            f"The code is {size} bytes, more than the {MAX_CODE_BYTES} allowed."
        )


def split_lines(source):
    """``source`` cut into lines the way ``ast`` numbers them (ends kept)."""
    return _LINE_RE.findall(source)


class ImportRefused(ValueError):
    """A script imports a module that is not offered in the sandbox."""

    def __init__(self, module, lineno):
        self.module = module
        self.lineno = lineno
        allowed = ", ".join(sorted(m for m in ALLOWED_MODULES if "." not in m))
        super().__init__(
            f"line {lineno}: import of '{module}' is not allowed "
            f"(only {allowed} can be imported)"
        )


def _statement_for(node):
    """Return the one-line replacement of an Import / ImportFrom node."""
    parts = []
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name not in ALLOWED_MODULES:
                raise ImportRefused(alias.name, node.lineno)
            if alias.asname:
                parts.append(f"{alias.asname} = {LOADER_NAME}({alias.name!r})")
            else:
                # ``import dateutil.parser`` binds the top-level package name.
                top = alias.name.split(".")[0]
                parts.append(f"{top} = {LOADER_NAME}({top!r})")
        return "; ".join(parts)
    module = node.module or ""
    if node.level or module not in ALLOWED_MODULES:
        name = "." * (node.level or 0) + module
        raise ImportRefused(name, node.lineno)
    for alias in node.names:
        if alias.name == "*":
            raise ImportRefused(f"{module}.*", node.lineno)
        target = alias.asname or alias.name
        parts.append(f"{target} = {LOADER_NAME}({module!r}).{alias.name}")
    return "; ".join(parts)


def rewrite_imports(source):
    """Return ``source`` with its allowed imports turned into loader calls.

    :raises SyntaxError: when the source does not parse
    :raises ImportRefused: when it imports a module outside ``ALLOWED_MODULES``
    """
    if not source or ("import" not in source):
        return source
    tree = ast.parse(source, mode="exec")
    nodes = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    if not nodes:
        return source
    lines = split_lines(source)
    # Replace from the bottom up so earlier offsets stay valid.
    nodes.sort(key=lambda n: (n.lineno, n.col_offset), reverse=True)
    for node in nodes:
        replacement = _statement_for(node)
        first, last = node.lineno - 1, node.end_lineno - 1
        # ast offsets are in UTF-8 bytes; work on encoded lines.
        head = lines[first].encode()[: node.col_offset].decode()
        tail = lines[last].encode()[node.end_col_offset :].decode()
        lines[first] = head + replacement + tail
        for index in range(first + 1, last + 1):
            lines[index] = "\n"
        if last > first and not lines[first].endswith("\n"):
            lines[first] += "\n"
    return "".join(lines)
