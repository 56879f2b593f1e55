"""Mixed precision and the GPU pool, on a real GPU.

Skipped, with the reason, on machines without CUDA (the development machines
and CI have none); run `make test` on a GPU machine to check them.
"""

from __future__ import annotations

import time

import pytest
import requests
import torch

from ml import Classifier, load_pixels
from tasks.pools import visible_gpus
from tests.conftest import database_url, token_for

NO_GPU = "no CUDA GPU on this machine: mixed precision and the GPU pool are checked where one exists"
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_GPU)


def _top1(classifier: Classifier, crops) -> list[int]:
    return [p[0].class_index for start in range(0, len(crops), 64) for p in classifier.predict(crops[start : start + 64])]


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_mixed_precision_top1_agrees_with_fp32_on_the_photos(photos, precision):
    if precision == "bfloat16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16 support")
    full = Classifier("efficientnet-lite0", device="cuda")
    mixed = Classifier("efficientnet-lite0", device="cuda", autocast_dtype=getattr(torch, precision))
    crops = [load_pixels(photo.path, full.spec) for photo in photos]
    same = sum(a == b for a, b in zip(_top1(full, crops), _top1(mixed, crops)))
    print(f"{precision}: top-1 agrees with fp32 on {same}/{len(crops)} photos")
    assert same / len(crops) >= 0.99


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_the_gpu_pool_classifies_a_job_on_the_gpu(django_db_blocker, tmp_path_factory, alice, photos):
    from django.db import connection

    from webapp.stack import Stack, free_port

    with django_db_blocker.unblock():
        env = {
            "DATABASE_URL": database_url(connection.settings_dict),
            "MEDIA_ROOT": str(tmp_path_factory.mktemp("gpu-media")),
            "VQ_MODEL_QUEUES": "efficientnet-lite0=infer.gpu",
        }
    stack = Stack(
        web_port=free_port(), log_dir=tmp_path_factory.mktemp("gpu-logs"), env=env,
        worker_concurrency=0, gpu_ids=visible_gpus()[:1],
    )  # fmt: skip
    with stack:
        session = requests.Session()
        session.headers["Authorization"] = f"Token {token_for(alice)}"
        files = [("images", (p.path.name, p.path.read_bytes())) for p in photos[:40]]
        job_id = session.post(f"{stack.web_url}/api/jobs/", files=files, timeout=60).json()["id"]
        deadline = time.monotonic() + 120
        while (status := session.get(f"{stack.web_url}/api/jobs/{job_id}/", timeout=10).json())["status"] != "done":
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        log = stack.workers[0].log_path.read_text()
    assert status["succeeded"] == 40
    assert "loaded on cuda" in log and "autocast torch.float16" in log
