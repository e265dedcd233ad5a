"""
Allowed ranges of values, declared once as pydantic-annotated types, and one-line errors that name the argument,
the value and the range.

The callbacks check their constructor arguments with :func:`checked_init`; breakout-sb3 checks the recipe's
hyperparameters and its command-line flags with the same types (``breakout_sb3.ranges``).
"""

from __future__ import annotations

import functools
import math
import typing
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import annotated_types
from pydantic import (
    ConfigDict,
    Field,
    PydanticSchemaGenerationError,
    PydanticUserError,
    TypeAdapter,
    ValidationError,
    validate_call,
)

Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
PositiveFloat = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveInt = Annotated[int, Field(ge=1)]

F = TypeVar("F", bound=Callable[..., Any])


def describe(annotation: Any) -> str:
    """:return: the values ``annotation`` allows, in words: ``a number in [0, 1]``, ``an integer >= 1 or None``..."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        choices = [repr(choice) for choice in typing.get_args(annotation)]
        return choices[0] if len(choices) == 1 else "one of " + ", ".join(choices)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return " or ".join(describe(arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return "None"
    if origin is Annotated:
        base, *extras = typing.get_args(annotation)
        bounds = {}
        for extra in extras:
            for item in getattr(extra, "metadata", [extra]):
                for name in ("ge", "gt", "le", "lt"):
                    if isinstance(item, getattr(annotated_types, name.capitalize())):
                        bounds[name] = getattr(item, name)
        kind = "a number" if base is float and bounds else describe(base)
        return _describe_bounds(kind, bounds)
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return "an integer"
    if annotation is float:
        return "a finite number"
    if annotation is str:
        return "a string"
    if annotation is dict or origin is dict:
        return "a mapping"
    if annotation is list or origin is list:
        return "a list"
    if annotation is tuple or origin is tuple:
        return "a tuple"
    if origin is type:
        (base,) = typing.get_args(annotation)
        return f"a subclass of {getattr(base, '__name__', base)}"
    if annotation is Callable or origin is Callable:
        return "a callable"
    return getattr(annotation, "__name__", str(annotation))


def _describe_bounds(kind: str, bounds: dict[str, float]) -> str:
    low = ("[", bounds["ge"]) if "ge" in bounds else ("(", bounds["gt"]) if "gt" in bounds else None
    high = (bounds["le"], "]") if "le" in bounds else (bounds["lt"], ")") if "lt" in bounds else None
    if low is not None and high is not None:
        return f"{kind} in {low[0]}{_number(low[1])}, {_number(high[0])}{high[1]}"
    if low is not None:
        return f"{kind} {'>=' if low[0] == '[' else '>'} {_number(low[1])}"
    if high is not None:
        return f"{kind} {'<=' if high[1] == ']' else '<'} {_number(high[0])}"
    return kind


def _number(value: float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:,}" if isinstance(value, int) and abs(value) >= 10_000 else str(value)


def shown(value: Any) -> str:
    """:return: ``value`` as an error message shows it (floats such as nan and inf as Python writes them)"""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return repr(value)


@functools.cache
def _adapter(annotation: Any) -> TypeAdapter:
    return TypeAdapter(annotation, config=ConfigDict(arbitrary_types_allowed=True))


def matches(value: Any, annotation: Any) -> bool:
    """
    :return: whether ``value`` is of the type ``annotation`` declares, checked as :func:`check_value` checks it
        (strictly); an annotation given as a string, or one pydantic cannot build a check for, allows any value
    """
    if annotation is Any or isinstance(annotation, (str, typing.ForwardRef)):
        return True
    try:
        adapter = _adapter(annotation)
    except (PydanticSchemaGenerationError, PydanticUserError, TypeError):
        return True
    try:
        adapter.validate_python(value, strict=True)
    except ValidationError:
        return False
    except PydanticUserError:  # a forward reference pydantic cannot resolve
        return True
    return True


def check_value(name: str, value: Any, annotation: Any) -> Any:
    """
    :return: ``value``, validated (strictly: no string or bool taken for a number; an int is a valid float)
    :raise ValueError: one line naming ``name``, the value and the allowed range
    """
    try:
        return _adapter(annotation).validate_python(value, strict=True)
    except ValidationError:
        raise ValueError(f"{name} must be {describe(annotation)}, got {shown(value)}") from None


def checked_init(init: F) -> F:
    """
    Validates a constructor's arguments against its annotations (pydantic, strict) before it runs: a value out of
    its range raises a ``ValueError`` of one line naming the class, the argument, the value and the allowed range.
    """
    validated = validate_call(config=ConfigDict(strict=True, arbitrary_types_allowed=True))(init)

    @functools.wraps(init)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            validated(self, *args, **kwargs)
        except ValidationError as e:
            error = e.errors()[0]
            name, where = str(error["loc"][0]) if error["loc"] else "?", type(self).__name__
            if error["type"] == "unexpected_keyword_argument":
                raise TypeError(f"{where}: unknown argument '{name}'") from None
            if error["type"] in ("missing_argument", "missing_keyword_only_argument"):
                raise TypeError(f"{where}: missing argument '{name}'") from None
            allowed = describe(typing.get_type_hints(init, include_extras=True)[name])
            raise ValueError(f"{where}: {name} must be {allowed}, got {shown(error['input'])}") from None

    return typing.cast(F, wrapper)


def first_problem(error: ValidationError) -> str:
    """
    :return: the first problem pydantic found in a record read from a file, in one line naming the field:
        ``'episodes' is missing``, ``'files.model.zip.size' should be a valid integer, got '12'``
    """
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "its content"
    if first["type"] == "missing":
        return f"'{where}' is missing"
    value = shown(first["input"])
    value = value if len(value) <= 60 else value[:57] + "..."
    return f"'{where}' {first['msg'].removeprefix('Input ')}, got {value}"
