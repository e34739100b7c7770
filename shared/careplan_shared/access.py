"""Authentication for Flask views, the same in both services: the bearer token of the request,
verified by ``current_app.extensions["careplan"].verifier``; 401 problem if it does not hold."""

from __future__ import annotations

from flask import current_app, g, request
from flask_smorest import abort

from careplan_shared.auth import InvalidToken, Principal, bearer_token


def authenticate() -> Principal:
    principal = g.get("principal")
    if principal is not None:
        return principal
    try:
        token = bearer_token(request.headers.get("Authorization"))
        principal = current_app.extensions["careplan"].verifier.verify(token)
    except InvalidToken as e:
        abort(401, message=f"a valid bearer token is required ({e})",
              headers={"WWW-Authenticate": 'Bearer realm="careplan"'})
    g.principal = principal
    return principal
