from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from tasks.pools import visible_gpus
from webapp.stack import Stack


class Command(BaseCommand):
    help = (
        "Start the GPU pool in the foreground: one Celery worker per visible GPU, each pinned with "
        "CUDA_VISIBLE_DEVICES, threads pool, consuming the GPU queue. Stops them all on Ctrl-C or "
        "when any of them dies. Point REDIS_URL and DATABASE_URL at the shared broker and database."
    )

    def add_arguments(self, parser):
        parser.add_argument("--gpus", default=None, help="comma-separated GPU ids (default: every visible GPU)")
        parser.add_argument("--threads", type=int, default=settings.VQ_GPU_WORKER_THREADS,
                            help="tasks in flight per GPU worker")

    def handle(self, gpus, threads, **options):
        gpu_ids = [g.strip() for g in gpus.split(",") if g.strip()] if gpus else visible_gpus()
        if not gpu_ids:
            raise CommandError("no GPU is visible (CUDA_VISIBLE_DEVICES / nvidia-smi); pass --gpus to choose")
        stack = Stack(
            web_port=None,
            worker_concurrency=0,
            gpu_ids=gpu_ids,
            gpu_threads=threads,
            gpu_queue=settings.VQ_GPU_QUEUE,
        )
        stack.start(timeout=180)
        self.stdout.write(self.style.SUCCESS(
            f"GPU pool up: {len(gpu_ids)} worker(s) on {settings.VQ_GPU_QUEUE}, GPUs {','.join(gpu_ids)}, "
            f"{threads} tasks in flight each. Ctrl-C stops them."
        ))
        raise SystemExit(stack.wait())
