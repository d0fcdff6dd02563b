"""Derived-column expressions: a small typed language, parsed by ``ast`` into an allow-listed tree.

A spec's text is never given to ``eval`` or ``compile``: ``ast.parse`` only builds a syntax tree,
and every node kind, function and name in it is checked against the lists below before anything
runs. Each node also gets a kind (number, boolean or text) so that ``city / 2`` or
``where(age, 1, 0)`` is refused when the spec is applied, with its position, instead of failing
mid-training. Evaluation is vectorised numpy over whole columns, the same code in training,
real-time serving and batch scoring (it runs inside the fitted pipeline).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import reduce
from typing import Any

import numpy as np
import pandas as pd

from shared.features import functions
from shared.features.functions import Kind
from shared.profile import as_categories

NUMBER: Kind = "number"
BOOLEAN: Kind = "boolean"
TEXT: Kind = "text"

# Bounds that keep hostile text cheap: parsing, checking and evaluating stay linear and shallow.
MAX_LENGTH = 1000
MAX_DEPTH = 32
MAX_NODES = 300
MAX_EXPONENT = 10.0

_ARITHMETIC: Mapping[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.true_divide,
    ast.FloorDiv: np.floor_divide,
    ast.Mod: np.mod,
    ast.Pow: np.power,
}
_COMPARISONS: Mapping[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: np.equal,
    ast.NotEq: np.not_equal,
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
}
_SYMBOLS: Mapping[type[ast.AST], str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
}


class ExpressionError(ValueError):
    """An expression that cannot be used, with where in its text the problem starts (1-based)."""

    def __init__(self, message: str, *, line: int = 1, column: int = 1) -> None:
        self.message, self.line, self.column = message, line, column
        where = f"column {column}" if line == 1 else f"line {line}, column {column}"
        super().__init__(f"{message} (at {where})")


@dataclass(frozen=True)
class Node:
    """A checked node: its kind, what it does, its operands, and a name or constant."""

    kind: Kind
    op: str
    args: tuple[Node, ...] = ()
    value: Any = None
    apply: Callable[..., Any] | None = None

    def columns(self) -> set[str]:
        """Every input column the expression reads."""
        own = {self.value} if self.op == "column" else set()
        return own.union(*(arg.columns() for arg in self.args))


def parse(text: str, columns: Mapping[str, Kind]) -> Node:
    """Parse and type ``text`` over ``columns`` (name to kind), or raise ``ExpressionError``."""
    if not text.strip():
        raise ExpressionError("the expression is empty")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"the expression is longer than {MAX_LENGTH} characters")
    text = text.strip()
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as error:
        line = error.lineno or 1
        # Python gives no offset when the text ends too early: the problem is at its end.
        column = error.offset or len(text.splitlines()[min(line, len(text.splitlines())) - 1]) + 1
        raise ExpressionError(f"syntax error: {error.msg}", line=line, column=column) from None
    except (RecursionError, MemoryError):
        raise ExpressionError("the expression is too deeply nested or too large") from None
    except ValueError as error:  # a NUL byte, say
        raise ExpressionError(f"the expression cannot be parsed: {error}") from None
    nodes = sum(1 for _ in ast.walk(tree))
    if nodes > MAX_NODES:
        raise ExpressionError(f"the expression has {nodes} parts, more than {MAX_NODES}")
    return _Checker(text, columns).check(tree.body, depth=0)


def evaluate(node: Node, frame: pd.DataFrame) -> np.ndarray:
    """The expression's value for every row of ``frame``: floats (NaN for missing), booleans or text."""
    with np.errstate(all="ignore"):
        result = _evaluate(node, frame)
    values = np.broadcast_to(np.asarray(result), (len(frame),)).copy()
    if node.kind == NUMBER:
        values = values.astype("float64")
        # log(0), x / 0 and overflow give infinities; a derived value that is not finite is missing.
        values[~np.isfinite(values)] = np.nan
    return values


def _evaluate(node: Node, frame: pd.DataFrame) -> Any:
    if node.op == "constant":
        return node.value
    if node.op == "column":
        column = frame[node.value]
        if node.kind == TEXT:
            return as_categories(column).to_numpy(dtype=object)
        return pd.to_numeric(column, errors="coerce").to_numpy(dtype="float64")
    operands = [_evaluate(arg, frame) for arg in node.args]
    assert node.apply is not None, node.op
    return node.apply(*operands)


class _Checker:
    """Turns an ``ast`` tree into typed ``Node``s, refusing anything outside the language."""

    def __init__(self, text: str, columns: Mapping[str, Kind]) -> None:
        self.lines = text.splitlines() or [""]
        self.columns = columns

    def check(self, tree: ast.expr, *, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise self.error(tree, f"the expression is nested more than {MAX_DEPTH} deep")
        visit = getattr(self, f"_{type(tree).__name__}", None)
        if visit is None:
            raise self.error(tree, f"{_describe(tree)} is not allowed in an expression")
        node: Node = visit(tree, depth + 1)
        return node

    def error(self, tree: ast.AST, message: str) -> ExpressionError:
        line = getattr(tree, "lineno", 1)
        offset = getattr(tree, "col_offset", 0)
        # ast counts columns in UTF-8 bytes; people count characters.
        source = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        column = len(source.encode()[:offset].decode(errors="ignore")) + 1
        return ExpressionError(message, line=line, column=column)

    def expect(self, node: Node, tree: ast.AST, kinds: tuple[Kind, ...], what: str) -> None:
        if node.kind not in kinds:
            raise self.error(tree, f"{what} needs {' or '.join(kinds)}, not {node.kind}")

    def _Constant(self, tree: ast.Constant, depth: int) -> Node:
        value = tree.value
        if isinstance(value, bool):
            return Node(BOOLEAN, "constant", value=value)
        if isinstance(value, int | float):
            try:
                number = float(value)
            except OverflowError:
                number = float("inf")
            if not np.isfinite(number):
                raise self.error(tree, "the number is too large")
            return Node(NUMBER, "constant", value=number)
        if isinstance(value, str):
            return Node(TEXT, "constant", value=value)
        raise self.error(tree, f"a {type(value).__name__} constant is not allowed")

    def _Name(self, tree: ast.Name, depth: int) -> Node:
        return self.column(tree, tree.id)

    def column(self, tree: ast.AST, name: str) -> Node:
        if name not in self.columns:
            known = ", ".join(sorted(self.columns)) or "none declared"
            raise self.error(tree, f"unknown column {name!r} (known columns: {known})")
        return Node(self.columns[name], "column", value=name)

    def _UnaryOp(self, tree: ast.UnaryOp, depth: int) -> Node:
        operand = self.check(tree.operand, depth=depth)
        if isinstance(tree.op, ast.Not):
            self.expect(operand, tree.operand, (BOOLEAN,), "'not'")
            return Node(BOOLEAN, "not", (operand,), apply=np.logical_not)
        if isinstance(tree.op, ast.USub | ast.UAdd):
            self.expect(operand, tree.operand, (NUMBER,), "a sign")
            if operand.op == "constant":  # -3 is a literal, so ``x ** -1`` has a constant exponent
                sign = -1.0 if isinstance(tree.op, ast.USub) else 1.0
                return Node(NUMBER, "constant", value=sign * operand.value)
            return Node(
                NUMBER,
                "negate",
                (operand,),
                apply=np.negative if isinstance(tree.op, ast.USub) else np.positive,
            )
        raise self.error(tree, f"{_describe(tree.op)} is not allowed")

    def _BinOp(self, tree: ast.BinOp, depth: int) -> Node:
        apply = _ARITHMETIC.get(type(tree.op))
        symbol = _SYMBOLS.get(type(tree.op), _describe(tree.op))
        if apply is None:
            raise self.error(tree, f"the operator {symbol} is not allowed")
        left, right = self.check(tree.left, depth=depth), self.check(tree.right, depth=depth)
        for side, node in ((tree.left, left), (tree.right, right)):
            if node.kind != NUMBER:
                raise self.error(side, f"cannot apply {symbol} to {node.kind}: it needs numbers")
        if isinstance(tree.op, ast.Pow):
            if right.op != "constant":
                raise self.error(tree.right, "an exponent must be a number written in the expression")
            if abs(right.value) > MAX_EXPONENT:
                raise self.error(tree.right, f"the exponent {right.value:g} is beyond ±{MAX_EXPONENT:g}")
        return Node(NUMBER, symbol, (left, right), apply=apply)

    def _Compare(self, tree: ast.Compare, depth: int) -> Node:
        operands = [
            self.check(tree.left, depth=depth),
            *(self.check(c, depth=depth) for c in tree.comparators),
        ]
        parts: list[Node] = []
        for index, op in enumerate(tree.ops):
            apply = _COMPARISONS.get(type(op))
            if apply is None:
                raise self.error(tree, f"{_describe(op)} comparison is not allowed")
            left, right = operands[index], operands[index + 1]
            if left.kind != right.kind:
                raise self.error(tree, f"cannot compare {left.kind} with {right.kind}")
            if left.kind != NUMBER and not isinstance(op, ast.Eq | ast.NotEq):
                raise self.error(tree, f"{left.kind} can only be compared with == or !=")
            parts.append(Node(BOOLEAN, "compare", (left, right), apply=apply))
        if len(parts) == 1:
            return parts[0]
        return Node(BOOLEAN, "and", tuple(parts), apply=_all)

    def _BoolOp(self, tree: ast.BoolOp, depth: int) -> Node:
        values = [self.check(v, depth=depth) for v in tree.values]
        for value, source in zip(values, tree.values, strict=True):
            self.expect(value, source, (BOOLEAN,), "'and' / 'or'")
        if isinstance(tree.op, ast.And):
            return Node(BOOLEAN, "and", tuple(values), apply=_all)
        return Node(BOOLEAN, "or", tuple(values), apply=_any)

    def _IfExp(self, tree: ast.IfExp, depth: int) -> Node:
        args = (tree.test, tree.body, tree.orelse)
        return self.conditional(tree, [self.check(a, depth=depth) for a in args], args)

    def conditional(self, tree: ast.AST, nodes: list[Node], sources: tuple[ast.expr, ...]) -> Node:
        test, then, otherwise = nodes
        self.expect(test, sources[0], (BOOLEAN,), "a condition")
        if then.kind != otherwise.kind:
            raise self.error(tree, f"both branches need the same kind, not {then.kind} and {otherwise.kind}")
        return Node(then.kind, "where", (test, then, otherwise), apply=functions.where)

    def _Call(self, tree: ast.Call, depth: int) -> Node:
        if not isinstance(tree.func, ast.Name):
            raise self.error(tree.func, "only functions named in the expression language can be called")
        name = tree.func.id
        if tree.keywords:
            raise self.error(tree.keywords[0], f"{name}() takes no keyword arguments")
        if name == "col":
            return self.quoted_column(tree)
        signature = functions.SIGNATURES.get(name)
        if signature is None:
            known = ", ".join(sorted([*functions.SIGNATURES, "col"]))
            raise self.error(tree.func, f"unknown function {name!r} (functions: {known})")
        args = [self.check(a, depth=depth) for a in tree.args]
        if not signature.min_args <= len(args) <= signature.max_args:
            raise self.error(tree, f"{name}() takes {signature.arity}, not {len(args)}")
        if name == "where":
            return self.conditional(tree, args, tuple(tree.args))
        for arg, source in zip(args, tree.args, strict=True):
            self.expect(arg, source, signature.accepts, f"{name}()")
        return Node(signature.returns, name, tuple(args), apply=signature.apply)

    def quoted_column(self, tree: ast.Call) -> Node:
        # col("sepal length (cm)"): a column whose name is not a Python identifier.
        if (
            len(tree.args) != 1
            or not isinstance(tree.args[0], ast.Constant)
            or not isinstance(tree.args[0].value, str)
        ):
            raise self.error(tree, "col() takes one column name written in quotes")
        return self.column(tree.args[0], tree.args[0].value)


def _all(*values: Any) -> Any:
    return reduce(np.logical_and, values)


def _any(*values: Any) -> Any:
    return reduce(np.logical_or, values)


def _describe(tree: ast.AST) -> str:
    names = {
        "Attribute": "attribute access (a.b)",
        "Subscript": "indexing (a[b])",
        "Lambda": "a lambda",
        "NamedExpr": "assignment (:=)",
        "Starred": "unpacking (*a)",
        "JoinedStr": "an f-string",
    }
    kind = type(tree).__name__
    return names.get(kind, f"'{kind}'")
