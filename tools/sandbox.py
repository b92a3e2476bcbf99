"""Make admin scripts' ``import`` lines work inside a restricted evaluator.

Odoo's ``safe_eval`` refuses every import opcode, yet the scripts integrators write
(and the product documentation shows) start with ``from datetime import datetime``
or ``import json``. Those modules are already offered to the script in a sandboxed
form, so each such import is rewritten into a plain assignment from a loader
function that hands out the sandboxed module; any other import is refused.

The rewrite keeps every statement on its original line, so error messages still
point at the admin's own line numbers.

Everything about running admin code lives here: the allowed modules, the size,
name and syntax checks made at save (:func:`check_source`), compiling once per
source and running (:func:`run`, with BJET's Evaluate mode). Odoo's ``safe_eval``
is imported only by the functions that compile or run code.
"""

import ast
import functools
import math
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
        "re",
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


def _read_only(self, name, value=None):
    raise AttributeError(f"{self!r} is read-only")


def restricted_module(name, attributes):
    """A read-only stand-in for module ``name`` offering only ``attributes``.

    Unlike the module itself it holds no reference to ``sys``, the module's
    private helpers or its globals; it has no instance dictionary, so a script
    can neither read one nor rebind an attribute for the scripts run after it.
    """
    namespace = {
        key: staticmethod(value) if callable(value) else value
        for key, value in attributes.items()
    }
    namespace.update(
        __slots__=(),
        __setattr__=_read_only,
        __delattr__=_read_only,
        __repr__=lambda self: f"<sandboxed module {name!r}>",
        __module__=__name__,
    )
    return type(name, (), namespace)()


#: The functions, flags and exception of ``re`` a script may use (``import re``).
#: Patterns and matches are Python's own objects: they expose nothing beyond
#: text processing, and dunder attributes are refused anyway. No timeout can
#: stop a regular expression: a catastrophic-backtracking pattern (``(a+)+$``
#: on a long input) holds the worker until Odoo's time limits kill it, as any
#: other slow loop in admin code would.
RE_NAMES = (
    "compile",
    "match",
    "search",
    "fullmatch",
    "sub",
    "subn",
    "split",
    "findall",
    "finditer",
    "escape",
    "error",
    "A",
    "ASCII",
    "I",
    "IGNORECASE",
    "L",
    "LOCALE",
    "M",
    "MULTILINE",
    "S",
    "DOTALL",
    "U",
    "UNICODE",
    "X",
    "VERBOSE",
    "NOFLAG",
)

#: The sandboxed ``re`` that ``import re`` gives scripts.
SANDBOXED_RE = restricted_module(
    "re", {name: getattr(re, name) for name in RE_NAMES if hasattr(re, name)}
)


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


# ----------------------------------------------------------------------------
# Checking, compiling and running admin code
# ----------------------------------------------------------------------------
# The restricted evaluator itself is Odoo's ``safe_eval`` (its opcode checks and
# restricted builtins); it is imported when code is compiled or run, so the
# import rewriting, size and name checks above and below stay usable (and
# tested) without Odoo.

#: Names a script has no business calling; ``safe_eval`` would only fail on them
#: at run time, so they are refused at save with a clearer message.
FORBIDDEN_NAMES = frozenset(
    {
        "open",
        "eval",
        "exec",
        "compile",
        "globals",
        "locals",
        "vars",
        "getattr",
        "setattr",
        "delattr",
        "input",
        "breakpoint",
        "memoryview",
        "type",
        "object",
        "super",
    }
)

#: What :func:`run` returns in Evaluate mode when the code neither sets
#: ``result`` nor is a single expression (Execute mode: it only acts).
NO_RESULT = type("NoResult", (), {"__repr__": lambda self: "NO_RESULT"})()


class CodeRefused(ValueError):
    """Code that cannot be accepted; ``lineno`` is the line at fault, if any."""

    def __init__(self, message, lineno=None):
        super().__init__(message)
        self.lineno = lineno


def _safe_eval():
    from odoo.tools import safe_eval  # noqa: PLC0415 - Odoo only when code runs

    return safe_eval


def check_source(source):
    """Refuse code at save: size, syntax, imports, forbidden and dunder names,
    and whatever ``safe_eval``'s own opcode checks refuse.

    :raises CodeRefused: with a message naming the line at fault
    """
    try:
        check_size(source)
    except ValueError as error:
        raise CodeRefused(str(error)) from None
    try:
        ast.parse(source, mode="exec")
        rewritten = rewrite_imports(source)
    except SyntaxError as error:
        raise CodeRefused(
            f"syntax error at line {error.lineno}: {error.msg}", error.lineno
        ) from None
    except ImportRefused as error:
        raise CodeRefused(str(error), error.lineno) from None
    for node in ast.walk(ast.parse(rewritten, mode="exec")):
        name = None
        if isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            name = node.id
        elif isinstance(node, (ast.Name, ast.Attribute)):
            ident = node.id if isinstance(node, ast.Name) else node.attr
            if "__" in ident:
                name = ident
        if name:
            raise CodeRefused(
                f"line {node.lineno} uses {name!r}, which is not allowed in "
                "sandboxed code.",
                node.lineno,
            )
    try:
        compile_code(source)
    except (SyntaxError, TypeError, ValueError, NameError) as error:
        raise CodeRefused(str(error)) from None


@functools.lru_cache(maxsize=512)
def compile_code(source):
    """Rewrite allowed imports, compile and validate code like ``safe_eval``.

    :return: ``(code object, rewritten source, expression code object)``; the
        last is set when the code is one expression (Evaluate mode)
    """
    safe_eval = _safe_eval()
    rewritten = rewrite_imports(source)
    code_obj = safe_eval.compile_codeobj(rewritten, mode="exec")
    safe_eval.assert_valid_codeobj(safe_eval._SAFE_OPCODES, code_obj, rewritten)
    expression = None
    tree = ast.parse(rewritten, mode="exec")
    if len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr):
        expression = safe_eval.compile_codeobj(rewritten.strip(), mode="eval")
        safe_eval.assert_valid_codeobj(safe_eval._SAFE_OPCODES, expression, rewritten)
    return code_obj, rewritten, expression


@functools.cache
def _modules():
    safe_eval = _safe_eval()
    return {
        "datetime": safe_eval.datetime,
        "time": safe_eval.time,
        "json": safe_eval.json,
        "math": safe_eval.wrap_module(
            math, [n for n in dir(math) if not n.startswith("_")]
        ),
        "dateutil": safe_eval.dateutil,
        "dateutil.relativedelta": safe_eval.dateutil.relativedelta,
        "dateutil.parser": safe_eval.dateutil.parser,
        "dateutil.tz": safe_eval.dateutil.tz,
        "dateutil.rrule": safe_eval.dateutil.rrule,
        "re": SANDBOXED_RE,
    }


def load_module(name):
    """Loader called by rewritten ``import`` lines: the sandboxed module."""
    if name not in ALLOWED_MODULES:
        raise ImportError(f"import of {name!r} is not allowed")
    return _modules()[name]


def eval_context(**names):
    """The names every piece of admin code sees, plus ``names``: those of
    SPEC §3 and the ones BJET's scripts use (§13: ``b64encode``, ``b64decode``,
    ``UserError``, ``Command``, ``timezone``, ``dateutil``, ``time``)."""
    from base64 import b64decode, b64encode  # noqa: PLC0415
    from datetime import date, datetime, timedelta, timezone  # noqa: PLC0415

    from dateutil.relativedelta import relativedelta  # noqa: PLC0415

    from odoo.exceptions import UserError  # noqa: PLC0415
    from odoo.fields import Command  # noqa: PLC0415

    modules = _modules()
    return {
        "datetime": datetime,
        "date": date,
        "timedelta": timedelta,
        "timezone": timezone,
        "relativedelta": relativedelta,
        "json": modules["json"],
        "time": modules["time"],
        "dateutil": modules["dateutil"],
        "b64encode": b64encode,
        "b64decode": b64decode,
        "UserError": UserError,
        "Command": Command,
        LOADER_NAME: load_module,
        **names,
    }


def run(source, context, evaluate=False):
    """Run admin code with ``context`` as its globals; return its ``result``.

    The code is compiled and validated once per distinct source, then run with
    ``safe_eval``'s restricted builtins — what ``safe_eval`` does, without
    compiling and disassembling it again for every record. Names the code sets
    are copied back into ``context``.

    :param evaluate: BJET's "Evaluate" mode: code that is one expression gives
        its value; code that sets no ``result`` gives :data:`NO_RESULT`
    :raises ValueError: wrapping whatever the code raised (as ``safe_eval``)
    """
    safe_eval = _safe_eval()
    code_obj, rewritten, expression = compile_code(source)
    globals_dict = dict(context, __builtins__=dict(safe_eval._BUILTINS))
    try:
        if evaluate and expression is not None:
            globals_dict["result"] = eval(expression, globals_dict)  # noqa: S307
        else:
            exec(code_obj, globals_dict)  # noqa: S102 - validated like safe_eval
    except safe_eval._BUBBLEUP_EXCEPTIONS:
        raise
    except Exception as error:  # noqa: BLE001 - same wrapping as safe_eval
        raise ValueError(f"{error!r} while evaluating\n{rewritten!r}") from error
    finally:
        del globals_dict["__builtins__"]
        context.update(globals_dict)
    if evaluate:
        return context.get("result", NO_RESULT)
    return context.get("result")
