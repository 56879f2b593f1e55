from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from webapp.stack import Stack


class Command(BaseCommand):
    help = "Run web (127.0.0.1:8000), worker and Flower (127.0.0.1:5555) in the foreground until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--flower-port", type=int, default=5555)
        parser.add_argument("--concurrency", type=int, default=settings.VQ_WORKER_CONCURRENCY,
                            help="worker processes in the CPU pool")

    def handle(self, port, flower_port, concurrency, **options):
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        stack = Stack(web_port=port, flower_port=flower_port, worker_concurrency=concurrency, beat=True)
        stack.start(timeout=120)
        flower_auth = (
            "basic auth on" if stack.flower_has_password else "no password: set FLOWER_BASIC_AUTH=user:password"
        )
        self.stdout.write(self.style.SUCCESS(
            f"\nVisionQueue is up:\n"
            f"  web     {stack.web_url}/   (sign up there; admin at /admin/, API at /api/jobs/)\n"
            f"  flower  http://127.0.0.1:{flower_port}/   ({flower_auth})\n"
            f"  broker  {stack.redis_url}{'  (embedded)' if stack.redis else ''}\n"
            f"Press Ctrl-C to stop.\n"
        ))
        raise SystemExit(stack.wait())
