"""Mixed precision and the GPU pool, on a real GPU.

Skipped, with the reason, on machines without CUDA (the development machines
and CI have none); run `make test` on a GPU machine to check them.
"""

from __future__ import annotations


import pytest
import torch

from ml import Classifier, load_pixels
from tasks.pools import visible_gpus
from tests.live import api_session, stack_on_test_database, wait_for_job

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
    stack = stack_on_test_database(
        django_db_blocker, tmp_path_factory, "gpu",
        env={"VQ_MODEL_QUEUES": "efficientnet-lite0=infer.gpu"},
        worker_concurrency=0, gpu_ids=visible_gpus()[:1],
    )  # fmt: skip
    with stack:
        session = api_session(alice, stack)
        files = [("images", (p.path.name, p.path.read_bytes())) for p in photos[:40]]
        job_id = session.post(f"{stack.web_url}/api/jobs/", files=files, timeout=60).json()["id"]
        status = wait_for_job(session, job_id, timeout=120, stack=stack)
        log = stack.workers[0].log_path.read_text()
    assert status["succeeded"] == 40
    assert "loaded on cuda" in log and "autocast torch.float16" in log
