"""The CUDA path of the shared training loop: bf16 autocast, the loss summed on the device, the
best state kept on the host, and a checkpoint trained on a GPU that serves on a CPU.

CI has no GPU, so these tests skip there. They run where CUDA is, with only torch and pytest
installed: ``pytest -m gpu tests/training/test_cuda.py``.
"""

from __future__ import annotations

import math

import pytest
import torch

from training.config import TrainConfig
from training.loo import load_loo_split
from training.recommender import Recommender, load_checkpoint
from training.train import train_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (no GPU on this machine)"),
]

NEURAL = ["sasrec", "hstu", "bert4rec", "gru4rec"]


@pytest.fixture
def loo_split(tmp_path, amazon_file):
    return load_loo_split(amazon_file(tmp_path / "Tiny.txt", n_users=200), max_len=10)


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**({"epochs": 8, "batch_size": 32, "lr": 3e-3, "patience": 10, "progress": False,
                           "device": "cuda"} | kw))


@pytest.mark.parametrize("name", NEURAL)
def test_trains_under_bf16_on_cuda_and_serves_on_cpu(settings, loo_split, tmp_path, name):
    path = tmp_path / f"{name}.pt"
    result = train_model(settings, loo_split, name, _cfg(), model_config={"d_model": 32}, checkpoint_path=path)
    assert result.device.startswith("cuda")
    losses = [row["train_loss"] for row in result.history]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    assert result.test_metrics["n_examples"] == len(loo_split.test_examples)

    checkpoint = load_checkpoint(path)
    # The checkpoint is written from host copies: a CPU-only server loads it as it is.
    assert all(t.device.type == "cpu" for t in checkpoint["state_dict"].values())
    assert checkpoint["train"]["device"].startswith("cuda") and checkpoint["train"]["bf16"] is True

    # Inference is fp32 on both devices, so they rank alike; bf16 was for training steps only.
    cpu, gpu = Recommender(checkpoint, device="cpu"), Recommender(checkpoint, device="cuda")
    histories = torch.randint(1, len(cpu.item_ids) + 1, (16, 10))  # [B, L]
    histories[:4, :5] = 0  # left-padded rows
    on_cpu, on_gpu = cpu.score(histories), gpu.score(histories).cpu()  # [B, N + 1] x2
    assert torch.allclose(on_cpu[:, 1:], on_gpu[:, 1:], rtol=1e-3, atol=1e-3)
    for row in range(len(histories)):
        history = [cpu.item_ids[i - 1] for i in histories[row].tolist() if i]
        assert [i for i, _ in cpu.recommend(history, k=5)] == [i for i, _ in gpu.recommend(history, k=5)]


def test_bf16_is_a_setting_and_fp32_on_cuda_trains_too(settings, loo_split, tmp_path):
    result = train_model(settings, loo_split, "sasrec", _cfg(bf16=False, epochs=3), model_config={"d_model": 32},
                         checkpoint_path=tmp_path / "fp32.pt")
    assert load_checkpoint(tmp_path / "fp32.pt")["train"]["bf16"] is False
    assert all(math.isfinite(row["train_loss"]) for row in result.history)


def test_resume_on_cuda_continues_the_run(settings, loo_split, tmp_path):
    # GPU kernels (embedding backward, index_add) are not bit-deterministic, so a resumed run is
    # compared on its bookkeeping and on finishing the epochs, not on identical weights as on CPU.
    train_model(settings, loo_split, "sasrec", _cfg(epochs=2), model_config={"d_model": 32},
                checkpoint_path=tmp_path / "part.pt")
    resumed = train_model(settings, loo_split, "sasrec", _cfg(epochs=4), model_config={"d_model": 32},
                          checkpoint_path=tmp_path / "resumed.pt", resume_from=tmp_path / "part.pt")
    assert resumed.epochs_run == 4 and [row["epoch"] for row in resumed.history] == [1, 2, 3, 4]
    assert all(math.isfinite(row["train_loss"]) for row in resumed.history)
