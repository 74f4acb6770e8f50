"""The request bodies of the raw-body endpoints, written into the gateway's /openapi.json.

The endpoints parse their bodies themselves (OpenAI-shaped errors, unknown fields ignored), so FastAPI
cannot see their schemas; this adds them, so clients and API fuzzers know what to send.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel


def document_request_bodies(
    app: FastAPI, bodies: dict[tuple[str, str], type[BaseModel]], model_name: str
) -> None:
    """Add ``bodies`` ((METHOD, path) -> pydantic model) to the app's OpenAPI document; the ``model``
    field of a body lists the one model this gateway serves."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for (method, path), model in bodies.items():
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(body.pop("$defs", {}))
            if "model" in body.get("properties", {}):
                body["properties"]["model"] = {"type": "string", "enum": [model_name], "title": "Model"}
            components[model.__name__] = body
            operation = schema["paths"][path][method.lower()]
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
                },
            }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
