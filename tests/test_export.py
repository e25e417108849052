"""Sharing: ``grpo export`` (adapter -> standalone checkpoint), the files ``grpo push`` uploads,
the model card, and the offline push errors. Real weights: a LoRA adapter with random (non-zero)
B matrices on the embedded SmolLM2, so merging visibly changes the outputs.

Run: ``pytest -q tests/test_export.py``. The uploads go through the real ``huggingface_hub.HfApi``
to a small local HTTP server (``LocalHub``) that speaks the three hub routes an upload uses (create
repo, preupload, commit) and keeps what it receives; it is not the Hugging Face Hub (no LFS/Xet
path, no auth), so what is tested is our staging, our calls and our error handling.
"""

import base64
import copy
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from grpo.common.errors import UserError

PROMPT = "Natalia sold clips to 48 of her friends in April, and then half as many in May."


@pytest.fixture(scope="module")
def adapter(smollm2, tmp_path_factory):
    """(peft model, tokenizer, adapter dir) -- adapter_config names the embedded spec as its base."""
    from peft import LoraConfig, get_peft_model

    model, tokenizer = smollm2
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                        task_type="CAUSAL_LM")  # init_lora_weights=False: B is random, so the adapter is not a no-op
    peft_model = get_peft_model(copy.deepcopy(model), config).eval()
    directory = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(directory)
    cfg = json.loads((directory / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "embedded:smollm2-135m-instruct"
    (directory / "adapter_config.json").write_text(json.dumps(cfg))
    return peft_model, tokenizer, directory


class LocalHub:
    """A local HTTP endpoint for ``HF_ENDPOINT``: records created repos and committed files."""

    def __init__(self, fail_commits: bool = False):
        self.repos, self.files, self.requests, self.fail_commits = [], {}, [], fail_commits
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, code, obj):
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                hub.requests.append(("GET", self.path))
                self.reply(404, {"error": "not served"})

            def do_POST(self):
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hub.requests.append(("POST", self.path))
                url = f"http://{self.headers['Host']}"
                if self.path == "/api/repos/create":
                    req = json.loads(data)
                    repo_id = f"{req.get('organization') or 'user'}/{req['name']}"
                    hub.repos.append((repo_id, req.get("visibility")))
                    return self.reply(200, {"url": f"{url}/{repo_id}", "name": repo_id})
                if self.path == "/api/validate-yaml":  # huggingface_hub has the hub check a README's front matter
                    return self.reply(200, {"errors": [], "warnings": []})
                if match := re.fullmatch(r"/api/models/(.+)/preupload/main", self.path):
                    files = json.loads(data)["files"]
                    return self.reply(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                      for f in files]})
                if match := re.fullmatch(r"/api/models/(.+)/commit/main", self.path):
                    if hub.fail_commits:
                        return self.reply(500, {"error": "storage is down"})
                    for line in data.decode().splitlines():
                        item = json.loads(line)
                        if item["key"] == "file":
                            hub.files[(match.group(1), item["value"]["path"])] = base64.b64decode(item["value"]["content"])
                    return self.reply(200, {"commitUrl": f"{url}/{match.group(1)}/commit/{'0' * 40}", "commitOid": "0" * 40})
                self.reply(404, {"error": "not served"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def uploaded(self, repo_id):
        return {path: content for (repo, path), content in self.files.items() if repo == repo_id}


@pytest.fixture
def local_hub(monkeypatch, tmp_path):
    """Online mode pointed at a :class:`LocalHub` (the hub-reachability probe is re-run against it)."""
    import huggingface_hub.constants

    from grpo.modeling.hub import hub_reachable

    hubs = []

    def start(**kwargs):
        hub = LocalHub(**kwargs)
        hubs.append(hub)
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # read once at import
        for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):  # no token unless a test gives one
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
        hub_reachable.cache_clear()
        return hub

    yield start
    hub_reachable.cache_clear()
    for hub in hubs:
        hub.server.shutdown()


def logits(model, tokenizer):
    ids = tokenizer(PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        return model(ids).logits.float()


def test_export_merges_the_adapter_into_a_standalone_checkpoint(adapter, tmp_path):
    from transformers import AutoModelForCausalLM

    from grpo.modeling.export import export

    peft_model, tokenizer, directory = adapter
    dest = export(directory, tmp_path / "merged")
    names = {p.name for p in dest.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "README.md"} <= names
    assert "adapter_config.json" not in names and not any(n.startswith(".") for n in names)
    reloaded = AutoModelForCausalLM.from_pretrained(dest).eval()  # plain transformers, no peft
    with_adapter = logits(peft_model, tokenizer)
    with peft_model.disable_adapter():
        base = logits(peft_model, tokenizer)
    merged = logits(reloaded, tokenizer)
    assert (with_adapter - base).abs().max() > 0.1  # the adapter matters ...
    torch.testing.assert_close(merged, with_adapter, atol=2e-4, rtol=1e-4)  # ... and the export carries it
    card = (dest / "README.md").read_text()
    assert "LoRA adapter merged" in card and "embedded:smollm2-135m-instruct" in card


def test_load_model_merges_an_adapter_whose_base_is_an_embedded_spec(adapter):
    """grpo.modeling.models.load_model resolves ``embedded:`` in adapter_config.json as export does (one reader)."""
    from grpo.modeling.models import load_model

    peft_model, tokenizer, directory = adapter
    model, _ = load_model(str(directory))
    assert not hasattr(model, "peft_config")  # merged into a plain transformers model
    torch.testing.assert_close(logits(model.eval(), tokenizer), logits(peft_model, tokenizer), atol=2e-4, rtol=1e-4)


def test_export_of_a_run_dir_uses_its_adapter_and_dtype(adapter, tmp_path, capsys):
    from safetensors import safe_open

    from grpo.cli.commands import main
    from grpo.runs.run_dir import save_final_checkpoint

    peft_model, tokenizer, _ = adapter
    run = tmp_path / "run"
    save_final_checkpoint(peft_model, tokenizer, run)  # what `grpo train` leaves: checkpoint/ + checkpoint/adapter/
    (run / "README.md").write_text("---\nlibrary_name: transformers\n---\n# run\n\nGRPO-trained with grpo-toolkit\n")
    code = main(["export", "--model", str(run), "--output_dir", str(tmp_path / "out"), "--dtype", "bfloat16"])
    assert code == 0 and "exported:" in capsys.readouterr().out
    with safe_open(str(tmp_path / "out" / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}
    card = (tmp_path / "out" / "README.md").read_text()
    assert str(run / "checkpoint" / "adapter") in card and "## The training run" in card  # the run's card follows


def test_export_refuses_a_directory_that_is_no_model(tmp_path, capsys):
    from grpo.cli.commands import main
    from grpo.modeling.export import find_source

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("hi")
    with pytest.raises(UserError, match="neither a LoRA adapter"):
        find_source(tmp_path / "notes")
    assert main(["export", "--model", str(tmp_path / "missing"), "--output_dir", str(tmp_path / "o")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_push_plans_adapter_and_merged_model_with_the_card(adapter, tmp_path):
    from grpo.common.checkpoint_io import write_json_atomic
    from grpo.config.script_args import ScriptArgs
    from grpo.runs.publish import plan_run_upload, repo_ids
    from grpo.runs.run_dir import save_final_checkpoint, write_model_card

    peft_model, tokenizer, _ = adapter
    run = tmp_path / "run"
    save_final_checkpoint(peft_model, tokenizer, run)
    before = {"n": 8, "accuracy": 0.125, "last_number_accuracy": 0.25, "format_rate": 0.0, "mean_completion_length": 99.0}
    after = {"n": 8, "accuracy": 0.5, "last_number_accuracy": 0.625, "format_rate": 0.875, "mean_completion_length": 60.0}
    write_json_atomic(run / "eval_before.json", before)
    write_json_atomic(run / "eval_after.json", after)
    script = ScriptArgs(model_name_or_path="Qwen/Qwen2.5-0.5B-Instruct", dataset_name="openai/gsm8k", eval_dataset="openai/gsm8k",
                        reward_funcs=["correctness", "soft_format"], reward_kwargs={"correctness": {"extractors": ["hash"]}})
    training = SimpleNamespace(learning_rate=3e-5, max_steps=116, num_generations=5, reward_weights=[1.0, 0.5])
    command = "grpo train --config grpo/configs/gsm8k_qwen_gpu.yaml --learning_rate 3e-05"
    write_model_card(run, script, training, {"base": before, "after GRPO": after}, script.model_name_or_path, command)

    plan = plan_run_upload(run)
    assert repo_ids("me/qwen-gsm8k", plan) == {"adapter": "me/qwen-gsm8k", "merged": "me/qwen-gsm8k-merged"}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "README.md",
            "eval_before.json", "eval_after.json"} <= set(plan["adapter"])
    assert "model.safetensors" not in plan["adapter"]
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md", "eval_after.json"} <= set(plan["merged"])
    assert not any(path.startswith("adapter") for path in plan["merged"])
    assert plan["merged"]["model.safetensors"] == run / "checkpoint" / "model.safetensors"  # read in place, not copied

    def text(content):
        return content.decode() if isinstance(content, bytes) else content.read_text()

    adapter_card, merged_card = text(plan["adapter"]["README.md"]), text(plan["merged"]["README.md"])
    assert "library_name: peft" in adapter_card and "library_name: transformers" in merged_card
    for card in (adapter_card, merged_card):
        assert "base_model: Qwen/Qwen2.5-0.5B-Instruct" in card and "datasets:\n- openai/gsm8k" in card
        assert '`correctness` with `{"extractors": ["hash"]}`' in card and "`soft_format`" in card
        assert "[1.0, 0.5]" in card  # reward weights
        for number in ("12.5%", "50.0%", "62.5%", "87.5%", "99.0", "60.0"):  # before / after
            assert number in card, number
        assert f"```bash\n{command}\n```" in card
    assert set(plan_run_upload(run, push_merged=False)) == {"adapter"}


@pytest.fixture
def finished_run(adapter, tmp_path):
    """A run directory as `grpo train` leaves it (checkpoint/ + checkpoint/adapter/ + a card)."""
    from grpo.runs.run_dir import save_final_checkpoint

    peft_model, tokenizer, _ = adapter
    run = tmp_path / "run"
    save_final_checkpoint(peft_model, tokenizer, run)
    (run / "README.md").write_text("---\nlibrary_name: transformers\n---\n# run\n")
    return run


def test_grpo_push_uploads_the_adapter(finished_run, local_hub, capsys, monkeypatch):
    from grpo.cli.commands import main

    run = finished_run
    hub = local_hub()
    assert main(["push", str(run), "--hub_model_id", "me/only-adapter", "--no_merged"]) == 2  # no token here ...
    assert "no Hugging Face token" in capsys.readouterr().err and not hub.requests
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    assert main(["push", str(run), "--hub_model_id", "me/only-adapter", "--no_merged", "--hub_private_repo"]) == 0
    assert hub.repos == [("me/only-adapter", "private")]  # ... and with one; no merged repo
    files = hub.uploaded("me/only-adapter")
    adapter_dir = run / "checkpoint" / "adapter"
    assert files["adapter_model.safetensors"] == (adapter_dir / "adapter_model.safetensors").read_bytes()
    assert files["adapter_config.json"] == (adapter_dir / "adapter_config.json").read_bytes()
    assert b"library_name: peft" in files["README.md"] and "tokenizer.json" in files
    assert "model.safetensors" not in files


@pytest.mark.slow
def test_push_run_uploads_adapter_and_merged_model(finished_run, tmp_path, local_hub, monkeypatch):
    """Both repos, byte for byte, and ``grpo export --push_to_hub`` (about 0.5 GB each through the local server)."""
    from grpo.cli.commands import main
    from grpo.runs.publish import push_run

    run = finished_run
    hub = local_hub()
    urls = push_run(run, "me/gsm8k-grpo", token="hf_test")
    assert urls == {"adapter": f"{hub.endpoint}/me/gsm8k-grpo", "merged": f"{hub.endpoint}/me/gsm8k-grpo-merged"}
    merged = hub.uploaded("me/gsm8k-grpo-merged")
    assert merged["model.safetensors"] == (run / "checkpoint" / "model.safetensors").read_bytes()
    assert "config.json" in merged and not any(path.startswith("adapter/") for path in merged)
    out = tmp_path / "export"
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    assert main(["export", "--model", str(run), "--output_dir", str(out), "--push_to_hub", "--hub_model_id", "me/exp",
                 "--dtype", "bfloat16"]) == 0
    assert hub.uploaded("me/exp") == {p.name: p.read_bytes() for p in out.iterdir()}


def test_failed_upload_keeps_the_run_and_says_how_to_retry(finished_run, local_hub):
    from grpo.runs.publish import push_run

    run = finished_run
    before = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    local_hub(fail_commits=True)
    with pytest.raises(UserError) as err:
        push_run(run, "me/broken", token="hf_test")
    assert "the run directory is intact" in str(err.value) and f"grpo push {run} --hub_model_id me/broken" in str(err.value)
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*")) == before


def test_push_of_an_unfinished_run_is_refused(tmp_path):
    from grpo.runs.publish import plan_run_upload

    (tmp_path / "run").mkdir()
    with pytest.raises(UserError, match="no finished checkpoint"):
        plan_run_upload(tmp_path / "run")


def test_push_offline_fails_with_the_command_to_push_later(tmp_path, monkeypatch, capsys):
    from grpo.cli.commands import main
    from grpo.runs.publish import push_run

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="HF_HUB_OFFLINE") as err:
        push_run(tmp_path / "run", "me/x")
    assert f"grpo push {tmp_path / 'run'} --hub_model_id me/x" in str(err.value)
    assert main(["export", "--model", str(tmp_path), "--output_dir", str(tmp_path / "o"), "--push_to_hub",
                 "--hub_model_id", "me/x"]) == 2  # refused before any merge work
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_train_with_push_to_hub_offline_stops_before_training(tmp_path, monkeypatch, capsys):
    from grpo.cli.commands import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run = tmp_path / "run"
    code = main(["train", "--config", "grpo/configs/gsm8k.yaml", "--output_dir", str(run), "--push_to_hub", "true",
                 "--hub_model_id", "me/gsm8k"])
    err = capsys.readouterr().err
    assert code == 2 and "push_to_hub is set but HF_HUB_OFFLINE is set" in err
    assert f"grpo push {run} --hub_model_id me/gsm8k" in err
    assert not (run / "eval_before.json").exists() and not (run / "sft_checkpoint").exists()  # nothing was run


@pytest.mark.slow
def test_a_real_run_card_push_and_export(tmp_path, local_hub):
    """A 2-step ``grpo train --push_to_hub`` run: its card holds the exact command (token masked), only
    our final adapter and merged model are pushed (not TRL's checkpoint-N), and ``grpo export`` of the
    run dir gives a checkpoint whose logits equal the run's own merged checkpoint."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from grpo.cli.commands import main

    hub = local_hub()
    run = tmp_path / "run"
    argv = ["train", "--config", "grpo/configs/gsm8k.yaml", "--output_dir", str(run), "--max_steps", "2",
            "--periodic_eval_steps", "0", "--eval_size", "2", "--eval_max_new_tokens", "8", "--warm_start", "false",
            "--num_generations", "2",
            "--per_device_train_batch_size", "2", "--max_completion_length", "8", "--save_steps", "2",
            "--push_to_hub", "true", "--hub_model_id", "me/tiny-run", "--hub_token", "hf_not_a_real_token",
            # a reward of its own (the config's list changes), with the kwargs the card must show
            "--reward_funcs", "correctness", "--reward_weights", "1.0",
            "--reward_kwargs", '{"correctness": {"extractors": ["answer_tag"]}}']
    assert main(argv) == 0
    assert (run / "checkpoint-2").is_dir()  # TRL saved a checkpoint-N ...
    assert hub.repos == [("me/tiny-run", None), ("me/tiny-run-merged", None)]  # ... and did not push it
    assert sum("/commit/" in path for _, path in hub.requests) == 2, hub.requests
    assert not any(path.startswith("checkpoint-") for path in hub.uploaded("me/tiny-run"))
    card = (run / "README.md").read_text()
    assert "hf_not_a_real_token" not in card and "--hub_token '***'" in card
    assert hub.uploaded("me/tiny-run")["README.md"].decode() == card.replace(
        "library_name: transformers", "library_name: peft", 1)
    assert "```bash\ngrpo train --config grpo/configs/gsm8k.yaml --output_dir " + str(run) + " --max_steps 2" in card
    first_line = Path("grpo/configs/gsm8k.yaml").read_text().splitlines()[0]
    assert f"`grpo/configs/gsm8k.yaml` at the time of the run:\n\n```yaml\n{first_line}\n" in card
    assert "| accuracy |" in card and "`correctness` with `{\"extractors\": [\"answer_tag\"]}`" in card
    assert main(["export", "--model", str(run), "--output_dir", str(tmp_path / "export")]) == 0
    tokenizer = AutoTokenizer.from_pretrained(run / "checkpoint")
    exported = logits(AutoModelForCausalLM.from_pretrained(tmp_path / "export").eval(), tokenizer)
    saved = logits(AutoModelForCausalLM.from_pretrained(run / "checkpoint").eval(), tokenizer)
    torch.testing.assert_close(exported, saved, atol=2e-4, rtol=1e-4)
