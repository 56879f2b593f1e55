"""Run the stuck-item reaper once (workers also run it every VQ_REAPER_INTERVAL seconds)."""

from django.core.management.base import BaseCommand

from tasks.reaper import reap


class Command(BaseCommand):
    help = "Requeue or fail items stuck in `running`, and resend queued items whose broker messages were lost."

    def handle(self, *args, **options):
        report = reap(use_lock=False)
        self.stdout.write(
            f"requeued {report.requeued}, failed {report.failed}, cancelled {report.cancelled}; "
            f"jobs sent again: {len(report.resent_jobs)}"
        )
