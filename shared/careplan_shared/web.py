"""Small Flask pieces both services use: fast JSON, security headers, offline Swagger UI."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Flask, send_from_directory
from flask.json.provider import JSONProvider


class OrjsonProvider(JSONProvider):
    """ISO 8601 dates and datetimes, UUIDs as strings, and a lot faster than json."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def install(app: Flask) -> None:
    app.json = OrjsonProvider(app)

    @app.after_request
    def _headers(response):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response


def swagger_ui_config(path: str = "/docs") -> dict[str, str]:
    """flask-smorest settings for Swagger UI served from the local swagger-ui-bundle files."""
    return {
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/",
        "OPENAPI_JSON_PATH": "openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": path,
        "OPENAPI_SWAGGER_UI_URL": f"{path}/assets/",
    }


def install_swagger_assets(app: Flask, path: str = "/docs") -> None:
    from swagger_ui_bundle import swagger_ui_path

    @app.get(f"{path}/assets/<path:filename>")
    def _swagger_asset(filename: str):
        response = send_from_directory(str(swagger_ui_path), filename)
        response.headers["Cache-Control"] = "public, max-age=86400"
        return response
