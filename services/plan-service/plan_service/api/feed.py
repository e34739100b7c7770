"""/v1/feed: integration events in log order, for the notification-service's embedded transport."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint

from careplan_shared.events import encode_event
from careplan_shared.web import json_response
from plan_service.api import schemas
from plan_service.api.authorization import Access, requires

blp = Blueprint("feed", __name__, url_prefix="/v1/feed",
                description="Integration events (shared envelope), ordered by log position")


@blp.route("")
class Feed(MethodView):
    @requires("feed.read")
    @blp.arguments(schemas.FeedQuery, location="query", unknown=None)
    @blp.response(200, schemas.FeedPage)
    @blp.doc(security=[{"bearer": []}])
    def get(self, args: dict[str, Any], access: Access):
        """Events after position `after`, at most `limit`; poll again with the last position seen"""
        events, last = current_app.extensions["careplan"].plans.feed(args["after"], args["limit"])
        # encode_event gives each item in its JSON form: schemas.FeedPage would only copy them
        return json_response({"items": [encode_event(e) for e in events], "last_position": last})
