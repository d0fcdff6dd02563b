"""The prediction route's request body: one row (an object keyed by feature name) or a list of rows."""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar, Self

from _bentoml_sdk.io_models import IORootModel
from bentoml.exceptions import BadInput
from pydantic import Field

from shared.clients.serving import FeatureValue

MAX_ROWS = 10_000

Row = dict[str, FeatureValue]
Rows = Row | Annotated[list[Row], Field(min_length=1, max_length=MAX_ROWS)]


class RowsInput(IORootModel[Rows]):
    """The request body itself is the row or the list of rows.

    BentoML's root-input model rebuilds a JSON schema on every request to decide how to parse
    the body (about 2 ms here, more than the model takes); a JSON body is all this route takes,
    so it is parsed directly, and malformed JSON is a 400 rather than a 500.
    """

    __root_input__: ClassVar[bool] = True

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **kwargs: Any) -> Self:
        """Parse the body as JSON, then validate it as rows."""
        try:
            parsed = json.loads(json_data)
        except ValueError as error:
            raise BadInput(f"the body is not valid JSON: {error}") from None
        return cls.model_validate(parsed, **kwargs)
