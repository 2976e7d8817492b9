"""`answer(Model, value)`: a route's JSON answer, checked against the model it declares with
`@returns` (api/openapi.py), so /openapi.json cannot promise a shape the route does not send:
a route that drifts fails its own tests loudly instead of surprising a client."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import pydantic
from starlette.responses import JSONResponse


def answer(model: Any, value: Any, *, status: int = 200) -> JSONResponse:
    adapter = _adapter(model)
    checked = adapter.validate_python(value)
    return JSONResponse(adapter.dump_python(checked, mode="json", by_alias=True), status)


@lru_cache(maxsize=256)
def _adapter(model: Any) -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(model)
