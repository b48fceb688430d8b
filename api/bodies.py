"""Reading request bodies the same way everywhere: 415 for other media, 400 for bad JSON,
422 for content that fails its schema."""

from __future__ import annotations

from typing import Any

from flask import request
from marshmallow import Schema, ValidationError

from api.errors import ApiError, ValidationFailed
from api.limits import check_text, parse_json
from api.runtime import runtime

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")


def unsupported_media(message: str) -> ApiError:
    return ApiError(415, "unsupported_media_type", message, {"content_type": request.content_type})


def json_object() -> dict[str, Any]:
    """The body of an application/json request, which must be a JSON object.

    Parsed by :func:`api.limits.parse_json`: bounded depth, no NUL, valid Unicode.
    """
    body = parse_json(request.get_data(cache=True), runtime().settings.max_json_depth)
    if not isinstance(body, dict):
        raise ApiError(400, "malformed_json", "The request body must be a JSON object.")
    return body


def json_body() -> dict[str, Any]:
    """A JSON object body; any other media type is a 415."""
    if request.mimetype != "application/json":
        raise unsupported_media("Send application/json.")
    return json_object()


def validated(schema: Schema, data: dict[str, Any], what: str) -> dict[str, Any]:
    """``data`` loaded through ``schema``; a 422 listing every problem otherwise."""
    try:
        return schema.load(data)
    except ValidationError as err:
        raise ValidationFailed(f"The request is not a valid {what}.", err.messages) from err


def yaml_document(what: str, schema: Schema, json_key: str) -> str:
    """A YAML document (an SOP, a portal profile) sent as YAML/plain text or as JSON
    ``{json_key: "<yaml>"}`` (checked by ``schema``): UTF-8 and storable. Its size is checked
    where it is parsed, which other senders (the console) reach too."""
    if request.mimetype == "application/json":
        body = f'{what} body: send {{"{json_key}": "<yaml text>"}}'
        text = validated(schema, json_object(), body)[json_key]
    elif request.mimetype in YAML_TYPES:
        try:
            text = request.get_data(cache=False).decode("utf-8")
        except UnicodeDecodeError as err:
            raise ApiError(400, "malformed_body", f"The {what} text must be UTF-8.") from err
        check_text(text, f"The {what} text")
    else:
        raise unsupported_media(
            f"Send the {what} as application/yaml (or text/yaml, text/plain),"
            f' or as JSON {{"{json_key}": ...}}.'
        )
    return text
