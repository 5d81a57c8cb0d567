"""The one check of a value against a type annotation, for configs and model parameters.

Config files and ``--set`` overrides arrive as YAML text, so :mod:`distst.config` converts
what is unambiguous (``1e-3`` read as a string -> float, ``6.0`` -> int 6, a number -> str);
model parameters are Python values handed to a constructor, so :mod:`distst.nn.registry`
only checks them (an int is accepted where a float is annotated). Both go through
:func:`check_type`; each formats its own error message from the :class:`TypeMismatch`.
"""

from __future__ import annotations

import types
import typing
from typing import Any


class TypeMismatch(Exception):
    """``value`` does not fit ``hint``; ``where`` is the path below the checked value where
    it failed (``"[1]"`` for a list's second item, ``""`` for the value itself)."""

    def __init__(self, value: Any, hint: Any, where: str = ""):
        super().__init__(f"{where}: {value!r} is not {type_name(hint)}")
        self.value, self.hint, self.where = value, hint, where


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def type_name(hint: Any) -> str:
    """How an annotation reads in an error message: ``int``, ``list of int``, ``float | str``."""
    if typing.get_origin(hint) in (list, tuple):
        args = typing.get_args(hint)
        return f"list of {type_name(args[0])}" if args else "list"
    if _is_union(hint):
        return " | ".join(type_name(h) for h in typing.get_args(hint))
    return "None" if hint is type(None) else getattr(hint, "__name__", str(hint))


def check_type(value: Any, hint: Any, *, convert: bool) -> Any:
    """``value`` if it fits annotation ``hint`` (converted as described in the module
    docstring when ``convert``), else :class:`TypeMismatch`. bool is never an int or a float;
    an annotation this checker does not model is left to the code that uses the value."""
    if hint is Any:
        return value
    if _is_union(hint):
        for arg in typing.get_args(hint):
            try:
                return check_type(value, arg, convert=convert)
            except TypeMismatch:
                continue
        raise TypeMismatch(value, hint)
    if hint is type(None):
        if value is None:
            return None
        raise TypeMismatch(value, hint)
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise TypeMismatch(value, hint)
        (item,) = typing.get_args(hint)[:1] or (Any,)
        out = []
        for i, v in enumerate(value):
            try:
                out.append(check_type(v, item, convert=convert))
            except TypeMismatch as e:
                raise TypeMismatch(e.value, e.hint, f"[{i}]{e.where}") from None
        return out if convert else value
    if hint is dict or origin is dict:
        if isinstance(value, dict):
            return dict(value) if convert else value
    elif hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value) if convert else value
        if convert and isinstance(value, str):
            # YAML 1.1 reads 1e-3 (no dot) as a string; a float key takes it as the number
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if convert and isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is str:
        if isinstance(value, str):
            return value
        if convert and isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    elif isinstance(hint, type):
        if isinstance(value, hint):
            return value
    else:
        return value
    raise TypeMismatch(value, hint)


def fits_type(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits ``hint`` as it is (no conversion)."""
    try:
        check_type(value, hint, convert=False)
        return True
    except TypeMismatch:
        return False
