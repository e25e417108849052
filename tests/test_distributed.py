"""Tests for grpo/common/distributed.py: every collective runs on the device it is given, with that device's backend.

No second process and no GPU: ``torch.distributed``'s collectives are replaced by recording stand-ins,
and the device is ``meta`` (a device other than the CPU tensors' own, which is what NCCL needs checked).
Run: pytest tests/test_distributed.py   (under a second)
"""

import torch
import torch.distributed as dist

from grpo.common.distributed import all_gather_cat, all_sum, init_distributed

META = torch.device("meta")


def test_collectives_receive_tensors_on_the_given_device(monkeypatch):
    seen = []
    monkeypatch.setattr(dist, "all_reduce", lambda x, *a, **k: seen.append(("all_reduce", x.device)))
    monkeypatch.setattr(dist, "all_gather", lambda parts, x, *a, **k: seen.append(
        ("all_gather", x.device, *(p.device for p in parts))))
    total = all_sum(torch.ones(3), 2, META)  # a CPU tensor, as the native loop used to hand over
    gathered = all_gather_cat(torch.ones(2, 1), 2, META)
    assert seen == [("all_reduce", META), ("all_gather", META, META, META)]
    assert total.device == META and gathered.device == META and gathered.shape == (4, 1)
    seen.clear()
    one = torch.ones(2)
    assert all_sum(one, 1, META) is one and all_gather_cat(one, 1, META) is one and seen == []  # one process


def test_the_backend_follows_the_training_device_not_the_machine(monkeypatch):
    """`use_cpu` on a CUDA machine used to join NCCL and then hand it CPU tensors."""
    from grpo.common.distributed import backend_for

    assert backend_for("cuda:1") == "nccl" and backend_for(torch.device("cuda")) == "nccl"
    assert backend_for("cpu") == "gloo"
    joined = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: bool(joined))
    monkeypatch.setattr(dist, "init_process_group", lambda backend, *a, **k: joined.append(backend))
    monkeypatch.setattr(dist, "get_rank", lambda *a: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda *a: 2)
    assert init_distributed(torch.device("cpu")) == (1, 2) and joined == ["gloo"]
    joined.clear()
    init_distributed(torch.device("cuda:0"))
    assert joined == ["nccl"]
