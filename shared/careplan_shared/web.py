"""Small Flask pieces both services use: fast JSON, security headers, offline Swagger UI."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any, cast

import orjson
from flask import Flask, Response, current_app, request, send_from_directory
from flask.json.provider import JSONProvider

JSON_OPTIONS = orjson.OPT_NON_STR_KEYS


class OrjsonProvider(JSONProvider):
    """ISO 8601 dates and datetimes, UUIDs as strings, and a lot faster than json."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj, option=JSON_OPTIONS).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        """jsonify(): the bytes orjson makes, as they are (not decoded to str and encoded again)."""
        body = orjson.dumps(self._prepare_response_obj(args, kwargs), option=JSON_OPTIONS)
        return cast(Response, self._app.response_class(body, mimetype="application/json"))  # type: ignore[arg-type]


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A ready application/json response, serialised once by orjson (as jsonify would, the same
    bytes): for a view whose body is already in its documented shape, so flask-smorest's
    ``@blp.response`` passes it on without dumping it through the schema again."""
    return current_app.response_class(orjson.dumps(obj, option=JSON_OPTIONS), status=status, headers=headers,
                                      mimetype="application/json")


# The API answers JSON only: it loads nothing and may be framed by no one.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

# On every response (gunicorn's own error answers too, see server.py). HSTS is ignored over
# plain http and tells browsers to keep to https once they have reached us over it.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Content-Security-Policy": API_CSP,
    "Strict-Transport-Security": "max-age=31536000",
}

SECURITY_HEADER_NAMES = {name.lower(): name for name in SECURITY_HEADERS}
_SECURITY_HEADERS_LOWER = tuple((name.lower(), value) for name, value in SECURITY_HEADERS.items())

SWAGGER_UI_ENDPOINT = "openapi_swagger_ui"  # flask-smorest's view (in blueprint "api-docs")
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def docs_csp(page: bytes) -> str:
    """The policy of the Swagger UI page: its scripts and styles from here only, its inline
    script(s) by their hash, no outside host at all (the validator badge would be one).
    Styles stay 'unsafe-inline': Swagger UI sets inline styles throughout its markup."""
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
                      for script in _INLINE_SCRIPT.findall(page))
    return ("default-src 'none'; "
            f"script-src 'self' {hashes}; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def install(app: Flask) -> None:
    app.json = OrjsonProvider(app)

    @app.after_request
    def _headers(response: Response) -> Response:
        endpoint = request.endpoint or ""
        if endpoint.rpartition(".")[2] == SWAGGER_UI_ENDPOINT and not response.direct_passthrough:
            response.headers["Content-Security-Policy"] = docs_csp(response.get_data())
        # setdefault() each, without its cost: werkzeug answers a missing name with an exception
        headers = response.headers
        present = {name.lower() for name, _ in headers}
        for name, value in _SECURITY_HEADERS_LOWER:
            if name not in present:
                headers.add(SECURITY_HEADER_NAMES[name], value)
        return response


def swagger_ui_config(path: str = "/docs") -> dict[str, Any]:
    """flask-smorest settings for Swagger UI served from the local swagger-ui-bundle files;
    it never calls the outside validator (validator.swagger.io would get the spec's URL)."""
    return {
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/",
        "OPENAPI_JSON_PATH": "openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": path,
        "OPENAPI_SWAGGER_UI_URL": f"{path}/assets/",
        "OPENAPI_SWAGGER_UI_CONFIG": {"validatorUrl": "none"},
    }


def install_swagger_assets(app: Flask, path: str = "/docs") -> None:
    from swagger_ui_bundle import swagger_ui_path

    @app.get(f"{path}/assets/<path:filename>")
    def _swagger_asset(filename: str):
        response = send_from_directory(str(swagger_ui_path), filename)
        response.headers["Cache-Control"] = "public, max-age=86400"
        return response
