"""vLLM server mode without a GPU: the early checks both backends go through, and the output mapping.

Run: pytest -q tests/test_vllm_server.py      (a few seconds; a real server needs CUDA and vllm)
"""

import http.server
import os
import socket
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from trl import GRPOConfig

from grpo.cli.commands import main
from grpo.common.errors import UserError
from grpo.generation.vllm_server import check_vllm_setup, rollout_from_server, server_url, wait_for_server

NO_CUDA = not torch.cuda.is_available()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def health_server():
    """A local HTTP server whose /health answers 200, like vLLM's once it is up."""

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def config(tmp_path, **kwargs):
    return GRPOConfig(output_dir=str(tmp_path), report_to=[], bf16=False, use_vllm=True, **kwargs)


def test_server_url_from_fields(tmp_path):
    assert server_url(config(tmp_path, vllm_mode="server", vllm_server_host="10.0.0.5", vllm_server_port=8001)) \
        == "http://10.0.0.5:8001"
    assert server_url(config(tmp_path, vllm_mode="server", vllm_server_base_url="http://gpu0:9000/")) == "http://gpu0:9000"


def test_unreachable_server_is_a_clear_error_after_the_timeout():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    start = time.monotonic()
    with pytest.raises(UserError) as err:
        wait_for_server(url, timeout=1.0, interval=0.2)
    elapsed = time.monotonic() - start
    message = str(err.value)
    assert 1.0 <= elapsed < 10, elapsed  # kept trying for the whole timeout, then stopped
    assert url in message and "vllm_server_timeout" in message and "trl vllm-serve" in message


def test_reachable_server_passes(health_server):
    wait_for_server(health_server, timeout=0.0)  # one try, no error


@pytest.mark.skipif(not NO_CUDA, reason="checks the no-CUDA message")
def test_server_up_but_no_cuda_names_cuda(health_server, tmp_path):
    with pytest.raises(UserError, match="CUDA GPU"):
        check_vllm_setup(config(tmp_path, vllm_mode="server", vllm_server_base_url=health_server))


@pytest.mark.skipif(not NO_CUDA, reason="checks the no-CUDA message")
def test_colocate_without_cuda_names_cuda(tmp_path):
    with pytest.raises(UserError, match="use_vllm needs a CUDA GPU"):
        check_vllm_setup(config(tmp_path, vllm_mode="colocate"))


@pytest.mark.parametrize("backend", ["native", "trl"])
def test_cli_stops_fast_on_an_unreachable_server(backend, tmp_path, capsys):
    url = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    code = main(["train", "--config", "grpo/configs/gsm8k.yaml", "--backend", backend, "--output_dir",
                 str(tmp_path / "run"), "--use_vllm", "true", "--vllm_mode", "server", "--vllm_server_base_url", url,
                 "--vllm_server_timeout", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: vllm_mode: server, but no vLLM server answers at " + url), err
    assert 1.0 <= time.monotonic() - start < 60  # waited vllm_server_timeout, not the default 240 s
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # stopped before any model was loaded


@pytest.mark.skipif(not NO_CUDA, reason="checks the no-CUDA message")
def test_cli_colocate_without_cuda(tmp_path, capsys):
    code = main(["train", "--config", "grpo/configs/gsm8k.yaml", "--backend", "native", "--output_dir",
                 str(tmp_path / "run"), "--use_vllm", "true", "--vllm_mode", "colocate"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: use_vllm needs a CUDA GPU"), err


def test_native_accepts_the_server_fields(tmp_path):
    from grpo.training.native.fields import check_supported

    check_supported(config(tmp_path, vllm_mode="server", vllm_server_host="10.0.0.5", vllm_server_port=8001,
                           vllm_server_timeout=30.0, vllm_group_port=51300))
    with pytest.raises(UserError, match="vllm_tensor_parallel_size"):  # colocated tensor parallelism is TRL's only
        check_supported(config(tmp_path, vllm_tensor_parallel_size=2))


def test_rollout_from_server_output():
    """VLLMClient.generate's dict (prompt-major, 2 prompts x 2 completions) -> Rollout; eos = 3, budget 3 tokens."""
    output = {"completion_ids": [[5, 6, 7], [5, 3], [8, 9, 3], []],
              "logprobs": [[[-0.1], [-0.2], [-0.3]], [[-0.5], [-0.6]], [[-1.0], [-1.1], [-1.2]], []]}
    rollout = rollout_from_server([[1, 2], [4]], output, num_generations=2, max_new_tokens=3, stop_ids=[3])
    assert rollout.completion_ids == [[5, 6, 7], [5, 3], [8, 9, 3], []]
    assert rollout.is_truncated == [True, False, False, False]  # full budget without a stop = "length"
    assert rollout.logprobs == [[-0.1, -0.2, -0.3], [-0.5, -0.6], [-1.0, -1.1, -1.2], []]
    assert rollout.prompt_ids == [[1, 2], [4]]
    with pytest.raises(ValueError, match="3 completions for 2 prompts"):
        rollout_from_server([[1, 2], [4]], {"completion_ids": [[1], [2], [3]]}, 2, 3, [3])


def test_weight_push_streams_tensors_on_the_training_device(tmp_path, monkeypatch):
    """vLLM's pynccl broadcast asserts the device: the push used to stream the policy's CPU tensors as they were.
    ``meta`` stands in for the CUDA device (a device other than the model's)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    import grpo.generation.vllm_server
    from grpo.generation.vllm_server import VLLMServerEngine, make_engine

    streamed = []

    class Client:  # TRL's VLLMClient, as far as sync_weights uses it
        def update_named_params(self, metadata, named_params):
            streamed.extend((name, t.device) for name, t in named_params)

        def reset_prefix_cache(self):
            pass

    engine = VLLMServerEngine.__new__(VLLMServerEngine)  # no server, no CUDA: the parts sync_weights reads
    engine.client, engine.rank, engine.world, engine._metadata = Client(), 0, 1, None
    engine.device = torch.device("meta")
    model = LlamaForCausalLM(LlamaConfig(vocab_size=20, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2))
    engine.sync_weights(model)
    assert len(streamed) == len(engine._metadata) > 0
    assert all(device == torch.device("meta") for _, device in streamed)
    made = []
    monkeypatch.setattr(grpo.generation.vllm_server, "VLLMServerEngine", lambda *args: made.append(args))
    make_engine(config(tmp_path, vllm_mode="server"), "model", 0, 2, torch.device("cuda:1"))
    assert made[0][-3:] == (0, 2, torch.device("cuda:1"))
