"""Request bodies and queries in, JSON out: how the REST routes read input and answer errors.

Every error is ``{"detail": "..."}`` saying what to do; validation errors are sentences
naming the field (chat.wording).
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from quart import Response, request

from .wording import sentences

M = TypeVar("M", bound=BaseModel)


class BadRequest(Exception):
    def __init__(self, detail: str, status: int = 422) -> None:
        super().__init__(detail)
        self.detail, self.status = detail, status


JSON = "application/json"


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status=status, content_type=JSON)


async def body(model: type[M]) -> M:
    """The request body as ``model``; any content type is read as JSON, an empty body as {}."""
    return parse(await request.get_data(cache=True), model)


def parse(raw: bytes, model: type[M]) -> M:
    """``raw`` (a whole request body) as ``model``, or BadRequest saying what is wrong."""
    try:
        data = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        raise BadRequest("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise BadRequest(sentences(error)) from None


def query(model: type[M]) -> M:
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as error:
        raise BadRequest(sentences(error)) from None


def client_address() -> str:
    return request.remote_addr or "unknown"


def bearer_token() -> str | None:
    return bearer(request.headers.get("Authorization", ""))


def bearer(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer …`` header's value."""
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
