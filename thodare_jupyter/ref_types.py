"""The declared type of a ``{{ref}}``, and whether it fits the param it fills.

Types are read from JSON Schema: an outputs model's (as serialized), the run
input's, a param's. A value's *shape* is the set of kinds it may have: the
JSON kinds (``string``, ``integer``, ``number``, ``boolean``, ``null``,
``array``, ``object``) plus ``table`` and ``file``; ``None`` means unknown
(``Any``, an untyped output, an untyped input). The checks are conservative:
unknown fits everything, and a ref is a mismatch only when none of the kinds
it may have can become any kind the param takes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import listing, suggest

Shape = frozenset[str] | None
"""The kinds a value may have; ``None``: unknown (anything)."""
_MAX_HOPS = 32  # $ref hops followed before a type counts as unknown
_FITS = {
    ("integer", "number"),  # numbers widen
    ("number", "integer"),  # 2.0 is an int to pydantic
    ("boolean", "integer"),
    ("boolean", "number"),
    ("integer", "boolean"),  # 0 and 1 are bools to pydantic
    ("table", "array"),  # a table reaches a list param as its rows
    ("table", "object"),  # ... and a dict param as its reference
    ("file", "object"),
    ("object", "table"),  # a dict may be a stored table's reference
    ("object", "file"),
    ("string", "file"),  # a path
}
_NAMES = {
    "string": "a string", "integer": "an integer", "number": "a number",
    "boolean": "a boolean", "null": "null", "array": "a list", "object": "an object",
    "table": "a table", "file": "a file",
}  # fmt: skip
_SCALARS = frozenset({"string", "integer", "number", "boolean"})


@dataclass(frozen=True)
class Typed:
    """A JSON Schema node with the root document its ``$ref``s point into."""

    schema: Mapping[str, Any]
    root: Mapping[str, Any]

    @classmethod
    def of(cls, schema: Mapping[str, Any] | None) -> Typed | None:
        """The root of a whole schema document (None stays None: unknown)."""
        return None if not isinstance(schema, Mapping) else cls(schema, schema)

    def at(self, schema: Any) -> Typed | None:
        """Another node of the same document; a non-schema (``true``) is unknown."""
        return Typed(schema, self.root) if isinstance(schema, Mapping) else None


@dataclass(frozen=True)
class Missing:
    """A ref names a field its type does not declare."""

    field: str
    depth: int
    """How many parts of the path were read before the missing one."""
    choices: tuple[str, ...]

    def hint(self) -> str:
        """`` Did you mean 'x'?`` when a declared field is close, else ``""``."""
        return suggest(self.field, self.choices)


def branches(node: Typed | None) -> list[Typed] | None:
    """The alternatives a node allows (``anyOf``/``oneOf`` spread, ``$ref`` followed);
    None when any of them is unknown."""
    if node is None:
        return None
    out: list[Typed] = []
    todo = [(node, 0)]
    while todo:
        cur, hops = todo.pop()
        s = cur.schema
        ref = s.get("$ref")
        if isinstance(ref, str):
            target = _deref(cur.root, ref)
            if target is None or hops >= _MAX_HOPS:
                return None
            todo.append((Typed(target, cur.root), hops + 1))
            continue
        alts = s.get("anyOf") or s.get("oneOf")
        if isinstance(alts, list):
            for alt in alts:
                if not isinstance(alt, Mapping):
                    return None
                todo.append((Typed(alt, cur.root), hops))
            continue
        every = s.get("allOf")
        if isinstance(every, list):
            if len(every) != 1 or not isinstance(every[0], Mapping):
                return None
            todo.append((Typed(every[0], cur.root), hops))
            continue
        if not _kinds(s):
            return None
        out.append(cur)
    return out


def shape(node: Typed | None) -> Shape:
    """The kinds a value of this type may have (None: unknown)."""
    alts = branches(node)
    if alts is None:
        return None
    return frozenset(k for alt in alts for k in _kinds(alt.schema))


def walk(node: Typed | None, path: Iterable[str]) -> Typed | Missing | None:
    """The type found by reading ``path`` (field names, list indices) into ``node``.

    None when it is unknown somewhere on the way (an untyped field, a table's
    column values, a key read off a string: what the resolver gives is not
    declared); :class:`Missing` when every alternative declares its fields and
    none has the one asked for (an object that allows extra keys has them all).
    """
    cur: Typed | None = node
    for depth, part in enumerate(path):
        alts = branches(cur)
        if alts is None:
            return None
        found: list[Typed] = []
        declared: list[str] = []
        for alt in alts:
            got = _step(alt, part)
            if isinstance(got, Missing):
                declared += got.choices
            elif got is None:
                return None
            elif got is not _NOTHING:
                found.append(got)
        if found:
            cur = (
                found[0]
                if len(found) == 1
                else Typed({"anyOf": [f.schema for f in found]}, found[0].root)
            )
        elif declared:
            return Missing(part, depth, tuple(sorted(set(declared))))
        else:
            return None
    return cur


_NOTHING = Typed({}, {})  # a null alternative: it holds no fields, and it is not a miss


def _step(alt: Typed, part: str) -> Typed | Missing | None:
    kinds = _kinds(alt.schema)
    s = alt.schema
    if kinds == {"null"}:
        return _NOTHING
    if "table" in kinds:  # a row (any columns), or one column's values
        return Typed({"type": "object" if part.isdigit() else "array"}, alt.root)
    if "file" in kinds:
        return None
    if kinds == {"object"}:
        props = s.get("properties")
        if isinstance(props, Mapping) and part in props:
            return alt.at(props[part])
        extra = s.get("additionalProperties")
        if isinstance(extra, Mapping):
            return alt.at(extra)
        if isinstance(props, Mapping) and extra in (None, False) and not s.get("patternProperties"):
            return Missing(part, 0, tuple(str(p) for p in props))
        return None
    if kinds == {"array"} and part.isdigit():
        fixed = s.get("prefixItems")
        if isinstance(fixed, list) and int(part) < len(fixed):
            return alt.at(fixed[int(part)])
        return alt.at(s.get("items"))
    return None


def element(node: Typed | None) -> Typed | None:
    """The type of one item of a ``for_each`` over ``node``: a list's items, a table's
    rows (objects of any columns); None when unknown."""
    alts = branches(node)
    if alts is None:
        return None
    items = []
    for alt in alts:
        kinds = _kinds(alt.schema)
        if "table" in kinds:
            return None
        if kinds == {"array"}:
            got = alt.at(alt.schema.get("items"))
            if got is None:
                return None
            items.append(got.schema)
    if not items:
        return None
    root = alts[0].root
    return Typed(items[0], root) if len(items) == 1 else Typed({"anyOf": items}, root)


def of_value(value: Any) -> Typed | None:
    """The type of a literal (a workflow variable): its kind, fields unknown."""
    for kind, types in (
        ("boolean", (bool,)),
        ("integer", (int,)),
        ("number", (float,)),
        ("string", (str,)),
        ("array", (list, tuple)),
        ("object", (dict,)),
        ("null", (type(None),)),
    ):
        if isinstance(value, types):
            return Typed.of({"type": kind})
    return None


def fits(source: Shape, target: Shape) -> bool:
    """Whether a value of shape ``source`` may become a param of shape ``target``.

    Unknown on either side fits; ``null`` is left out of the source (an
    optional field may well be set); one compatible pair of kinds is enough.
    """
    if source is None or target is None:
        return True
    kinds = source - {"null"}
    if not kinds:
        return True
    return any(s == t or (s, t) in _FITS for s in kinds for t in target)


def describe(kinds: Shape) -> str:
    """``a table``, ``a string or a list`` (``null`` left out when there is more)."""
    if not kinds:
        return "any value"
    shown = sorted(kinds - {"null"}) or ["null"]
    return " or ".join(_NAMES.get(k, k) for k in shown)


def mismatch(ref: str, source: Typed | None, param: str, target: Shape) -> str:
    """The sentence for a ref that cannot fit its param (``for_each`` for a block's
    ``for_each``), with what to do instead."""
    src = shape(source) or frozenset()
    kinds = src - {"null"}
    takes = describe(target)
    if param == "for_each":
        return (
            f"{{{{{ref}}}}} is {describe(src)}, but for_each takes a list or a table "
            "(one call per item); read a list field, or drop for_each."
        )
    head = f"{{{{{ref}}}}} is {describe(src)}, but '{param}' takes {takes}."
    wants_scalar = target is not None and bool(target & _SCALARS)
    if "table" in kinds and wants_scalar:
        return (
            f"{head} Use for_each over its rows ({{{{item.<column>}}}}), or pass one value "
            f"({{{{{ref}.<column>.0}}}}); a column ({{{{{ref}.<column>}}}}) is a list."
        )
    if "array" in kinds and wants_scalar:
        return f"{head} Use for_each over it, or pass one item ({{{{{ref}.0}}}})."
    if "object" in kinds and wants_scalar:
        fields = _fields(source)
        one = f"{{{{{ref}.{fields[0]}}}}}" if fields else f"{{{{{ref}.<field>}}}}"
        more = f" Fields: {listing(fields)}." if fields else ""
        return f"{head} Pass one of its fields ({one}).{more}"
    if kinds <= _SCALARS and target is not None and "string" in target:
        return f'{head} Write it inside text ("… {{{{{ref}}}}} …") to pass it as a string.'
    return (
        f"{head} Read a field that holds {takes}, or make the upstream output "
        f"declare {takes} (its outputs model)."
    )


def _fields(node: Typed | None) -> list[str]:
    out: list[str] = []
    for alt in branches(node) or ():
        props = alt.schema.get("properties")
        if isinstance(props, Mapping):
            out += [str(p) for p in props if str(p) not in out]
    return out


def _kinds(schema: Mapping[str, Any]) -> set[str]:
    t = schema.get("type")
    kinds = {t} if isinstance(t, str) else set()
    if isinstance(t, list):
        kinds = {k for k in t if isinstance(k, str)}
    if "object" in kinds and schema.get("format") in ("table", "file"):
        kinds = (kinds - {"object"}) | {str(schema["format"])}
    values = [schema["const"]] if "const" in schema else schema.get("enum")
    if not kinds and isinstance(values, list):
        kinds = {k for v in values if (k := _kind_of(v)) is not None}
    if not kinds and isinstance(schema.get("properties"), Mapping):
        kinds = {"object"}
    return kinds


def _kind_of(value: Any) -> str | None:
    got = of_value(value)
    return None if got is None else str(got.schema["type"])


def _deref(root: Mapping[str, Any], ref: str) -> Mapping[str, Any] | None:
    """``#/$defs/Name`` (or any local JSON pointer) in ``root``; None when it is not one."""
    if not ref.startswith("#"):
        return None
    cur: Any = root
    for part in ref[1:].split("/")[1:] if ref != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur if isinstance(cur, Mapping) else None
