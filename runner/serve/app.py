"""The HTTP side of `runbook serve` (Starlette): POST /hooks/NAME, GET /healthz, GET /metrics. Every
refusal is JSON with a reason; the alerts and their outcomes are in the store before the 202."""
from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runner.definition.service import Hook
from runner.serve.formats import parse_body
from runner.serve.hooks import Intake
from runner.serve.log import log
from runner.serve.metrics import Metrics

MAX_BODY = 1024 * 1024
DRAINED = 8 * MAX_BODY


class Service:
    """What the handlers need: the hooks with their tokens, the intake, the metrics, a wake-up for workers."""

    def __init__(self, hooks: Mapping[str, Hook], tokens: Mapping[str, str], intake: Intake, metrics: Metrics,
                 wake: Callable[[], None]) -> None:
        self.hooks, self.tokens, self.intake, self.metrics, self.wake = hooks, tokens, intake, metrics, wake


def build_app(service: Service) -> Starlette:
    async def hook(request: Request) -> Response:
        return await _hook(service, request)

    async def healthz(_request: Request) -> Response:
        try:
            service.intake.store.ping()
        except Exception as exc:
            return JSONResponse({"status": "unavailable", "reason": f"the store does not answer ({exc.__class__.__name__})"}, 503)
        return JSONResponse({"status": "ok", "store": service.intake.store.backend})

    async def metrics(_request: Request) -> Response:
        return Response(service.metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8")

    routes = [Route("/hooks/{name}", hook, methods=["POST"]), Route("/healthz", healthz, methods=["GET"]),
              Route("/metrics", metrics, methods=["GET"])]
    return Starlette(routes=routes, exception_handlers={HTTPException: _refusal})  # type: ignore[dict-item]


async def _refusal(_request: Request, exc: HTTPException) -> Response:
    reasons = {404: "no such endpoint", 405: "method not allowed here"}
    return JSONResponse({"error": reasons.get(exc.status_code, str(exc.detail))}, exc.status_code,
                        headers=dict(exc.headers or {}))


def _error(service: Service, status: int, reason: str, **extra: str) -> Response:
    service.metrics.requests_refused.labels(str(status)).inc()
    log("hook-refused", status=status, reason=reason)
    return JSONResponse({"error": reason}, status, headers=extra or None)


async def _hook(service: Service, request: Request) -> Response:
    name = request.path_params["name"]
    hook = service.hooks.get(name)
    if hook is None:
        return _error(service, 404, f"no hook named {name[:64]!r} in runbook.toml [hooks]")
    if not _authorized(request.headers.get("authorization", ""), service.tokens[name]):
        return _error(service, 401, "missing or wrong bearer token (Authorization: Bearer ...)",
                      **{"WWW-Authenticate": "Bearer"})
    body = await _body(request)
    if body is None:
        return _error(service, 413, f"the body is over {MAX_BODY} bytes")
    try:
        alerts = parse_body(hook.format, body)
    except ValueError as exc:
        return _error(service, 400, f"not a {hook.format} body: {exc}")
    outcomes = []
    for alert in alerts:
        outcome = service.intake.admit(name, alert)
        service.metrics.alert(name, outcome.outcome)
        log("alert", hook=name, fingerprint=alert.fingerprint, status=alert.status, outcome=outcome.outcome,
            run=outcome.run, reason=outcome.reason)
        outcomes.append(outcome.to_dict())
    if any(o["outcome"] == "queued" for o in outcomes):
        service.wake()
    return JSONResponse({"alerts": outcomes}, 202)


def _authorized(header: str, token: str) -> bool:
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


async def _body(request: Request) -> bytes | None:
    """The body, or None when it is over MAX_BODY. A body declared up to DRAINED long is read to its end
    (and dropped) so that the client, still sending, gets the 413 rather than a reset connection."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > DRAINED:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > DRAINED:
            return None
        if size <= MAX_BODY:
            chunks.append(chunk)
    return b"".join(chunks) if size <= MAX_BODY else None
