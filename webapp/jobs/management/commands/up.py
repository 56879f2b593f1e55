import os

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from ml import available_models
from tasks.pools import cpu_cores, cpu_pool_size, visible_gpus
from webapp.stack import Stack


class Command(BaseCommand):
    help = (
        "Run web (127.0.0.1:8000), the worker pools and Flower (127.0.0.1:5555) in the foreground until "
        "Ctrl-C: a CPU pool, and one GPU worker per visible GPU when there is one."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--flower-port", type=int, default=5555)
        parser.add_argument("--concurrency", type=int, default=settings.VQ_WORKER_CONCURRENCY,
                            help="processes in the CPU pool (0: one per core)")

    def handle(self, port, flower_port, concurrency, **options):
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        gpu_ids = visible_gpus() if settings.VQ_GPU_POOL != "off" else []
        env = {}
        if gpu_ids and "VQ_MODEL_QUEUES" not in os.environ:
            # GPUs here and no routing chosen: every model goes to the GPU pool.
            env["VQ_MODEL_QUEUES"] = ",".join(f"{name}={settings.VQ_GPU_QUEUE}" for name in available_models())
        stack = Stack(
            web_port=port,
            flower_port=flower_port,
            worker_concurrency=cpu_pool_size(concurrency, cpu_cores()),
            queues=settings.VQ_CPU_QUEUE,
            gpu_ids=gpu_ids,
            gpu_threads=settings.VQ_GPU_WORKER_THREADS,
            gpu_queue=settings.VQ_GPU_QUEUE,
            env=env,
            beat=True,
            share_broker=True,
        )
        stack.start(timeout=180)
        gpu_line = f"  gpu     {len(gpu_ids)} worker(s), GPUs {','.join(gpu_ids)}\n" if gpu_ids else ""
        flower_auth = (
            "basic auth on" if stack.flower_has_password else "no password: set FLOWER_BASIC_AUTH=user:password"
        )
        self.stdout.write(self.style.SUCCESS(
            f"\nVisionQueue is up:\n"
            f"  web     {stack.web_url}/   (sign up there; admin at /admin/, API at /api/jobs/)\n"
            f"  flower  http://127.0.0.1:{flower_port}/   ({flower_auth})\n"
            f"  broker  {stack.redis_url}{'  (embedded)' if stack.redis else ''}\n"
            f"  cpu     {stack.worker_concurrency} prefork process(es) on {settings.VQ_CPU_QUEUE}\n"
            f"{gpu_line}"
            f"Press Ctrl-C to stop.\n"
        ))
        failure = stack.wait()
        self.stdout.write("VisionQueue stopped: every process it started has exited.")
        raise SystemExit(failure)
