"""The functions a derived-column expression may call: each a vectorised numpy/pandas function.

Each has a signature (how many arguments, of which kind, returning which kind) so the checker can
type an expression before it ever runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import reduce
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import pandas as pd

Kind = Literal["number", "boolean", "text"]
_ANY: tuple[Kind, ...] = ("number", "boolean", "text")


@dataclass(frozen=True)
class Signature:
    """Arity, accepted argument kinds and result kind of one function."""

    apply: Callable[..., Any]
    accepts: tuple[Kind, ...] = ("number",)
    returns: Kind = "number"
    min_args: int = 1
    max_args: int = 1

    @property
    def arity(self) -> str:
        """The number of arguments, as an error message says it."""
        if self.min_args == self.max_args:
            return f"{self.min_args} argument{'s' if self.min_args != 1 else ''}"
        return f"{self.min_args} to {self.max_args} arguments"


def where(condition: Any, then: Any, otherwise: Any) -> Any:
    """``then`` where ``condition`` holds, ``otherwise`` elsewhere."""
    return np.where(condition, then, otherwise)


def isnull(values: Any) -> Any:
    """Whether each value is missing."""
    return pd.isna(values)


def _dates(values: Any) -> pd.DatetimeIndex:
    # Text from CSV, JSON requests and Parquet all parse the same way; what does not parse is missing.
    parsed = pd.to_datetime(
        pd.Series(np.asarray(values, dtype=object)), errors="coerce", format="mixed", utc=True
    )
    return pd.DatetimeIndex(parsed)


def _part(name: str) -> Callable[[Any], Any]:
    def part(values: Any) -> Any:
        return np.asarray(getattr(_dates(values), name), dtype="float64")

    part.__name__ = name
    return part


def days_between(start: Any, end: Any) -> Any:
    """Days from ``start`` to ``end`` (fractional; negative when ``end`` is earlier)."""
    start, end = np.broadcast_arrays(np.asarray(start, dtype=object), np.asarray(end, dtype=object))
    delta = _dates(end) - _dates(start)
    return np.asarray(delta.total_seconds(), dtype="float64") / 86400.0


def clip(values: Any, low: Any, high: Any) -> Any:
    """``values`` bounded to ``[low, high]``."""
    return np.minimum(np.maximum(values, low), high)


SIGNATURES: Mapping[str, Signature] = MappingProxyType(
    {
        "abs": Signature(np.abs),
        "sqrt": Signature(np.sqrt),
        "log": Signature(np.log),
        "log1p": Signature(np.log1p),
        "log10": Signature(np.log10),
        "exp": Signature(np.exp),
        "floor": Signature(np.floor),
        "ceil": Signature(np.ceil),
        "round": Signature(np.round),
        "sign": Signature(np.sign),
        "clip": Signature(clip, min_args=3, max_args=3),
        "min": Signature(lambda *v: reduce(np.minimum, v), min_args=2, max_args=8),
        "max": Signature(lambda *v: reduce(np.maximum, v), min_args=2, max_args=8),
        "where": Signature(where, accepts=_ANY, min_args=3, max_args=3),
        "isnull": Signature(isnull, accepts=_ANY, returns="boolean"),
        "year": Signature(_part("year"), accepts=("text",)),
        "month": Signature(_part("month"), accepts=("text",)),
        "day": Signature(_part("day"), accepts=("text",)),
        "hour": Signature(_part("hour"), accepts=("text",)),
        "weekday": Signature(_part("day_of_week"), accepts=("text",)),
        "dayofyear": Signature(_part("day_of_year"), accepts=("text",)),
        "days_between": Signature(days_between, accepts=("text",), min_args=2, max_args=2),
    }
)
