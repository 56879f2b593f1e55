"""WSGI entry point for gunicorn: `gunicorn webapp.wsgi`."""

import os
import resource

from django.core.wsgi import get_wsgi_application


def allow_open_files_up_to_the_hard_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; return the new soft limit.

    A large upload streams each file to its own temporary file, held open
    until the request ends: a 5,000-image job needs 5,000 descriptors, and the
    usual soft limit of 1,024 would turn it into a server error.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


allow_open_files_up_to_the_hard_limit()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

application = get_wsgi_application()
