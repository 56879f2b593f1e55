from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "webapp.jobs"
    label = "jobs"
    verbose_name = "Recognition jobs"

    def ready(self):
        # Connects the signal that removes a deleted job's files.
        from webapp.jobs import retention  # noqa: F401
