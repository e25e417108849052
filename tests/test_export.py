"""Sharing: ``grpo export`` (adapter -> standalone checkpoint), the folders ``grpo push`` uploads,
the model card, and the offline push errors. Real weights: a LoRA adapter with random (non-zero)
B matrices on the embedded SmolLM2, so merging visibly changes the outputs.

Run: ``pytest -q tests/test_export.py``. The upload itself (``HfApi.upload_folder``) is not run here:
this machine has no hub; what is tested is everything up to it.
"""

import copy
import json
from types import SimpleNamespace

import pytest
import torch

from grpo.errors import UserError

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


def logits(model, tokenizer):
    ids = tokenizer(PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        return model(ids).logits.float()


def test_export_merges_the_adapter_into_a_standalone_checkpoint(adapter, tmp_path):
    from transformers import AutoModelForCausalLM

    from grpo.export import export

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


def test_export_of_a_run_dir_uses_its_adapter_and_dtype(adapter, tmp_path, capsys):
    from safetensors import safe_open

    from grpo.cli import main
    from grpo.run_dir import save_final_checkpoint

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
    from grpo.cli import main
    from grpo.export import find_source

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("hi")
    with pytest.raises(UserError, match="neither a LoRA adapter"):
        find_source(tmp_path / "notes")
    assert main(["export", "--model", str(tmp_path / "missing"), "--output_dir", str(tmp_path / "o")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_push_stages_adapter_and_merged_folders_with_the_card(adapter, tmp_path):
    from grpo.config import ScriptArgs
    from grpo.hub import repo_ids, stage_run
    from grpo.run_dir import save_final_checkpoint, write_json_atomic, write_model_card

    peft_model, tokenizer, _ = adapter
    run = tmp_path / "run"
    save_final_checkpoint(peft_model, tokenizer, run)
    before = {"n": 8, "accuracy": 0.125, "last_number_accuracy": 0.25, "format_rate": 0.0, "mean_completion_length": 99.0}
    after = {"n": 8, "accuracy": 0.5, "last_number_accuracy": 0.625, "format_rate": 0.875, "mean_completion_length": 60.0}
    write_json_atomic(run / "eval_before.json", before)
    write_json_atomic(run / "eval_after.json", after)
    script = ScriptArgs(model="Qwen/Qwen2.5-0.5B-Instruct", dataset="openai/gsm8k", eval_dataset="openai/gsm8k",
                        reward_funcs=["correctness", "soft_format"], reward_kwargs={"correctness": {"extractors": ["hash"]}})
    training = SimpleNamespace(learning_rate=3e-5, max_steps=116, num_generations=5, reward_weights=[1.0, 0.5])
    command = "grpo train --config grpo/configs/gsm8k_qwen_gpu.yaml --learning_rate 3e-05"
    write_model_card(run, script, training, {"base": before, "after GRPO": after}, script.model, command)

    folders = stage_run(run, tmp_path / "staging")
    adapter_files = {p.name for p in folders["adapter"].iterdir()}
    merged_files = {p.name for p in folders["merged"].iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "README.md",
            "eval_before.json", "eval_after.json"} <= adapter_files
    assert "model.safetensors" not in adapter_files
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md", "eval_after.json"} <= merged_files
    assert "adapter" not in merged_files
    assert repo_ids("me/qwen-gsm8k", folders) == {"adapter": "me/qwen-gsm8k", "merged": "me/qwen-gsm8k-merged"}
    adapter_card = (folders["adapter"] / "README.md").read_text()
    merged_card = (folders["merged"] / "README.md").read_text()
    assert "library_name: peft" in adapter_card and "library_name: transformers" in merged_card
    for card in (adapter_card, merged_card):
        assert "base_model: Qwen/Qwen2.5-0.5B-Instruct" in card and "datasets: [openai/gsm8k]" in card
        assert '`correctness` with `{"extractors": ["hash"]}`' in card and "`soft_format`" in card
        assert "[1.0, 0.5]" in card  # reward weights
        for number in ("12.5%", "50.0%", "62.5%", "87.5%", "99.0", "60.0"):  # before / after
            assert number in card, number
        assert f"```bash\n{command}\n```" in card
    only_adapter = stage_run(run, tmp_path / "staging2", push_merged=False)
    assert set(only_adapter) == {"adapter"}


def test_push_of_an_unfinished_run_is_refused(tmp_path):
    from grpo.hub import stage_run

    (tmp_path / "run").mkdir()
    with pytest.raises(UserError, match="no finished checkpoint"):
        stage_run(tmp_path / "run", tmp_path / "staging")


def test_push_offline_fails_with_the_command_to_push_later(tmp_path, monkeypatch, capsys):
    from grpo.cli import main
    from grpo.hub import push_run

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="HF_HUB_OFFLINE") as err:
        push_run(tmp_path / "run", "me/x")
    assert f"grpo push {tmp_path / 'run'} --hub_model_id me/x" in str(err.value)
    assert main(["export", "--model", str(tmp_path), "--output_dir", str(tmp_path / "o"), "--push_to_hub",
                 "--hub_model_id", "me/x"]) == 2  # refused before any merge work
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_train_with_push_to_hub_offline_stops_before_training(tmp_path, monkeypatch, capsys):
    from grpo.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run = tmp_path / "run"
    code = main(["train", "--config", "grpo/configs/gsm8k.yaml", "--output_dir", str(run), "--push_to_hub", "true",
                 "--hub_model_id", "me/gsm8k"])
    err = capsys.readouterr().err
    assert code == 2 and "push_to_hub is set but HF_HUB_OFFLINE is set" in err
    assert f"grpo push {run} --hub_model_id me/gsm8k" in err
    assert not (run / "eval_before.json").exists() and not (run / "sft_checkpoint").exists()  # nothing was run


@pytest.mark.slow
def test_a_real_run_card_and_export(tmp_path, capsys):
    """A 2-step ``grpo train`` run: its card holds the exact command, and ``grpo export`` of the run dir
    gives a checkpoint whose logits equal the run's own merged checkpoint."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from grpo.cli import main

    run = tmp_path / "run"
    argv = ["train", "--config", "grpo/configs/gsm8k.yaml", "--output_dir", str(run), "--max_steps", "2",
            "--eval_size", "2", "--eval_max_new_tokens", "8", "--warm_start", "false", "--num_generations", "2",
            "--per_device_train_batch_size", "2", "--max_completion_length", "8", "--save_steps", "2"]
    assert main(argv) == 0
    card = (run / "README.md").read_text()
    assert "```bash\ngrpo train --config grpo/configs/gsm8k.yaml --output_dir " + str(run) + " --max_steps 2" in card
    assert "`grpo/configs/gsm8k.yaml` at the time of the run:\n\n```yaml\n# The GSM8K reasoning exercise" in card
    assert "| accuracy |" in card and "`correctness` with `{\"extractors\": [\"answer_tag\"]}`" in card
    assert main(["export", "--model", str(run), "--output_dir", str(tmp_path / "export")]) == 0
    tokenizer = AutoTokenizer.from_pretrained(run / "checkpoint")
    exported = logits(AutoModelForCausalLM.from_pretrained(tmp_path / "export").eval(), tokenizer)
    saved = logits(AutoModelForCausalLM.from_pretrained(run / "checkpoint").eval(), tokenizer)
    torch.testing.assert_close(exported, saved, atol=2e-4, rtol=1e-4)
