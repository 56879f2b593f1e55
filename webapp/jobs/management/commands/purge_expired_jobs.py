from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils.translation import ngettext

from webapp.jobs.retention import purge_expired_jobs, sweep_orphan_files


class Command(BaseCommand):
    help = (
        "Delete jobs older than VQ_RETENTION_DAYS with their files, and files whose job is gone. "
        "Celery beat runs the same daily; use this from cron when no beat runs."
    )

    def handle(self, **options):
        purged = purge_expired_jobs()
        orphans = sweep_orphan_files()
        retention = f"{settings.VQ_RETENTION_DAYS} days" if settings.VQ_RETENTION_DAYS > 0 else "off"
        jobs = ngettext("%d job", "%d jobs", purged) % purged
        files = ngettext("%d orphaned file", "%d orphaned files", orphans) % orphans
        self.stdout.write(f"purged {jobs} (retention {retention}) and {files}")
