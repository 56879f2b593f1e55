"""The Celery application. Configuration lives in celeryconfig.py."""

import os

from celery import Celery

# Celery's Django fix-up sees this and calls django.setup() in each worker.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

app = Celery("visionqueue")
app.config_from_object("celeryconfig")
