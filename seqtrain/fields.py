"""Field types shared by every config section (pydantic only, no TensorFlow).

Integers are strict so that `units: true` or `units: 6.5` is an error rather than a
silent 1 or 6; floats accept strings because PyYAML reads `1e-3` as one, but not booleans.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


def _reject_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"got {str(value).lower()} (a YAML boolean); expected a number")
    return value


# Bounds go before NOT_BOOLEAN: pydantic then keeps them on its float schema and the JSON
# Schema shows them as `minimum`/`exclusiveMaximum`. Put after it (`Annotated[
# NonNegativeFloat, Field(lt=1)]`), pydantic wraps the check in a function: 2.6 drops the
# bound from the JSON Schema inside `X | None`, later versions write it as `ge`, which
# editors do not know. A float field of other bounds spells the type out the same way,
# `allow_inf_nan=False` included.
NOT_BOOLEAN = BeforeValidator(_reject_bool)
# Finite only: `learning_rate: .inf` is a typo, never a setting.
PositiveFloat = Annotated[float, Field(gt=0.0, allow_inf_nan=False), NOT_BOOLEAN]
NonNegativeFloat = Annotated[float, Field(ge=0.0, allow_inf_nan=False), NOT_BOOLEAN]
Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False), NOT_BOOLEAN]
DropoutRate = Annotated[float, Field(ge=0.0, lt=1.0, allow_inf_nan=False), NOT_BOOLEAN]
ShrinkFactor = Annotated[float, Field(gt=0.0, lt=1.0, allow_inf_nan=False), NOT_BOOLEAN]
PositiveInt = Annotated[int, Field(strict=True, ge=1)]
NonNegativeInt = Annotated[int, Field(strict=True, ge=0)]


class Section(BaseModel):
    """A config section: unknown keys are errors; defaults and assignments are validated too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_default=True)
