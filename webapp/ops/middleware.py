"""Serve /healthz, /readyz and /metrics ahead of the rest of the stack.

It sits first in MIDDLEWARE so that these answers skip the ALLOWED_HOSTS check
(kubelets and Prometheus call the pod's IP), the HTTPS redirect, sessions and
authentication: a probe stays cheap and works before anyone has logged in.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpResponse, JsonResponse

from webapp.ops import health, metrics


class OpsEndpointsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.routes = {"/healthz": self.healthz, "/readyz": self.readyz, "/metrics": self.metrics}

    def __call__(self, request):
        route = self.routes.get(request.path_info.rstrip("/") or "/")
        if route is None:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            return HttpResponse(status=405, headers={"Allow": "GET, HEAD"})
        response = route(request)
        response["Cache-Control"] = "no-store"
        return response

    @staticmethod
    def healthz(request):
        """The process is alive and serving; nothing else is checked."""
        return JsonResponse({"status": "ok"})

    @staticmethod
    def readyz(request):
        """200 when the database, the broker and (by default) a worker answer; 503 naming the failed check."""
        checks = health.readiness()
        ready = all(checks.values())
        body = {
            "status": "ready" if ready else "not ready",
            "checks": {name: "ok" if passed else "failing" for name, passed in checks.items()},
        }
        response = JsonResponse(body, status=200 if ready else 503)
        # health.py already logged why; keep Django from adding an ERROR line per probe.
        response._has_been_logged = True
        return response

    @staticmethod
    def metrics(request):
        token = settings.VQ_METRICS_TOKEN
        if token and not hmac.compare_digest(request.headers.get("Authorization", ""), f"Bearer {token}"):
            return HttpResponse(status=401, headers={"WWW-Authenticate": "Bearer"})
        payload, content_type = metrics.exposition()
        return HttpResponse(payload, content_type=content_type)
