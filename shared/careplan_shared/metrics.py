"""Prometheus metrics for both services: ``GET /metrics`` in the text format, behind a bearer token.

Off unless ``CAREPLAN_METRICS_TOKEN`` (or ``CAREPLAN_METRICS_TOKEN_FILE``) is set: then
``/metrics`` answers a request carrying ``Authorization: Bearer <that token>`` (401 otherwise),
and every request is counted by its route *template* (Flask's url_rule, never the path: a path
holds plan ids), method and status. Without the token there is no ``/metrics`` (404) and
nothing is counted. No label anywhere carries a plan id, a patient id or plan content.

Under gunicorn each worker is a process of its own: ``prepare_multiprocess`` (in the master,
before any worker forks) gives prometheus-client's multiprocess mode a private directory per
service instance, emptied at start, and ``mark_worker_dead`` (gunicorn's child_exit hook)
retires a dead worker's files; a scrape answered by any worker then adds up every worker. In
one process (tests with Flask's test client) the default registry is used.

Values that live in a store (prompts open, dead letters, relay and consumer positions) are read
at scrape time by collectors the services register here (``add_collector``): right whichever
process or instance answers the scrape.
"""

from __future__ import annotations

import hmac
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, g, request
from flask_smorest import abort

from careplan_shared.config import ConfigError

log = logging.getLogger("careplan.metrics")

TOKEN_VARIABLE = "CAREPLAN_METRICS_TOKEN"
TOKEN_FILE_VARIABLE = "CAREPLAN_METRICS_TOKEN_FILE"
MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
VARIABLES = (TOKEN_VARIABLE, TOKEN_FILE_VARIABLE, MULTIPROC_VARIABLE)  # the environment this module reads
MIN_TOKEN_LENGTH = 16
PATH = "/metrics"
EXTENSION = "careplan.metrics"
# Methods are free text in HTTP: anything else is counted as "other" (a label value per
# invented method would let any client grow the series without bound).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
NO_ROUTE = "(no route)"  # 404 and 405: no url_rule matched; the path is never a label


def token_from_env(env: Mapping[str, str] | None = None) -> str | None:
    """The scrape token, or None (metrics off). A token shorter than 16 characters, or a token
    file that cannot be read, stops the start-up."""
    env = os.environ if env is None else env
    token = env.get(TOKEN_VARIABLE) or None
    path = env.get(TOKEN_FILE_VARIABLE) or None
    if token and path:
        raise ConfigError(f"set {TOKEN_VARIABLE} or {TOKEN_FILE_VARIABLE}, not both")
    if path:
        try:
            token = Path(path).read_text().strip()
        except OSError as e:
            raise ConfigError(f"{TOKEN_FILE_VARIABLE}: cannot read {path} ({type(e).__name__})") from None
    if token is None:
        return None
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(f"the metrics token must be at least {MIN_TOKEN_LENGTH} characters "
                          "(e.g. `openssl rand -hex 32`)")
    return token


def prepare_multiprocess(service: str, data_dir: Path, port: int,
                         env: MutableMapping[str, str] | None = None) -> Path | None:
    """In the gunicorn master, before the workers fork: set up prometheus-client's multiprocess
    directory (PROMETHEUS_MULTIPROC_DIR if given, else ``<data dir>/metrics/<service>-<port>``,
    one per instance on a host), 0700, emptied of an earlier run's files. None: metrics off."""
    env = os.environ if env is None else env
    if token_from_env(env) is None:
        return None
    given = env.get(MULTIPROC_VARIABLE)
    path = Path(given) if given else data_dir / "metrics" / f"{service}-{port}"
    path.mkdir(parents=True, mode=0o700, exist_ok=True)
    path.chmod(0o700)
    for stale in path.glob("*.db"):  # a dead run's counters must not be added to this one's
        stale.unlink()
    env[MULTIPROC_VARIABLE] = str(path)
    if "prometheus_client.values" in sys.modules:  # imported already: choose its mode again
        from prometheus_client import values

        values.ValueClass = values.get_value_class()
    return path


def mark_worker_dead(server: Any, worker: Any) -> None:
    """gunicorn's child_exit hook: the worker's live gauges stop counting; its counters stay."""
    if os.environ.get(MULTIPROC_VARIABLE):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


# -- HTTP requests ---------------------------------------------------------------------------

_http: tuple[Any, Any] | None = None


def _http_metrics() -> tuple[Any, Any]:
    """Made on first use, in the worker (after PROMETHEUS_MULTIPROC_DIR is set)."""
    global _http
    if _http is None:
        from prometheus_client import Counter, Histogram

        _http = (
            Counter("careplan_http_requests", "HTTP requests answered, by route template, method and status",
                    ("route", "method", "status")),
            Histogram("careplan_http_request_duration_seconds",
                      "Time from the request's first hook to its response, by route template and method",
                      ("route", "method")),
        )
    return _http


def route_label() -> str:
    return request.url_rule.rule if request.url_rule is not None else NO_ROUTE


def method_label() -> str:
    return request.method if request.method in METHODS else "other"


def install(app: Flask, env: Mapping[str, str] | None = None) -> bool:
    """``GET /metrics`` and request counting, if a token is configured (see the module). Call it
    early (right after web.install): its before_request hook should run first. -> on or off."""
    token = token_from_env(env)
    app.extensions[EXTENSION] = {"token": token, "collectors": []}
    if token is None:
        return False
    requests_total, duration = _http_metrics()

    @app.before_request
    def _started() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _count(response: Response) -> Response:
        route, method = route_label(), method_label()
        requests_total.labels(route, method, str(response.status_code)).inc()
        started = g.get("metrics_started")
        if started is not None:
            duration.labels(route, method).observe(time.perf_counter() - started)
        return response

    app.add_url_rule(PATH, "metrics", _scrape, methods=["GET"])
    return True


def add_collector(app: Flask, name: str, read: Callable[[], Iterable[Any]]) -> None:
    """``read()`` -> metric families, called at each scrape (values from a store or a broker);
    nothing when metrics are off."""
    state = app.extensions.get(EXTENSION)
    if state is not None and state["token"] is not None:
        state["collectors"].append((name, read))


class ScrapeCollectors:
    """The collectors added with ``add_collector``, read at a scrape; a failing one costs its
    own metrics at that scrape (logged by type only), never the whole scrape, and says so in
    careplan_metrics_collector_success."""

    def __init__(self, collectors: Iterable[tuple[str, Callable[[], Iterable[Any]]]]):
        self.collectors = list(collectors)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        success = GaugeMetricFamily("careplan_metrics_collector_success",
                                    "1 if the collector read its values at this scrape, else 0 (its metrics "
                                    "are then missing from the scrape)", labels=("collector",))
        for name, read in self.collectors:
            try:
                families = list(read())
            except Exception as e:  # noqa: BLE001 - see the class
                log.warning("a metrics collector failed", extra={"reason": name, "error_type": type(e).__name__})
                success.add_metric([name], 0)
                continue
            success.add_metric([name], 1)
            yield from families
        if self.collectors:
            yield success


def registry_for(collectors: Iterable[tuple[str, Callable[[], Iterable[Any]]]]) -> Any:
    """What one scrape exposes: every worker's values (multiprocess) or this process's, plus
    the collectors'."""
    from prometheus_client import REGISTRY, CollectorRegistry, multiprocess

    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get(MULTIPROC_VARIABLE):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(REGISTRY)  # type: ignore[arg-type]  # a registry collects like a collector
    registry.register(ScrapeCollectors(collectors))  # type: ignore[arg-type]
    return registry


def _authorized(token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def _scrape() -> Response:
    from prometheus_client.exposition import choose_encoder

    state = current_app.extensions[EXTENSION]
    if not _authorized(state["token"]):
        abort(401, message="a valid metrics token is required (Authorization: Bearer ...)",
              headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    # the format the scraper asks for (Accept): Prometheus' text format by default, or OpenMetrics
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = encode(registry_for(state["collectors"]))
    return Response(body, content_type=content_type, headers={"Cache-Control": "no-store"})
