"""Operating the service: /healthz, /readyz and /metrics (see middleware.py)."""
