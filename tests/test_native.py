"""Native GRPO loop on a tiny random Llama (seconds), plus one slow run on the embedded SmolLM2.

Run: pytest tests/test_native.py            (fast)
     pytest tests/test_native.py -m slow    (SmolLM2-135M, two steps, ~1-2 min on 2 cores)
"""

import json
import logging
import math

import pytest
import torch

from grpo.common.errors import UserError
from grpo.runs.run_dir import MetricsLogger

TRL_NAMES = ["reward", "reward_std", "rewards/word_reward/mean", "rewards/word_reward/std", "entropy",
             "completions/mean_length", "completions/clipped_ratio", "clip_ratio/low_mean", "clip_ratio/high_mean",
             "clip_ratio/region_mean", "frac_reward_zero_std", "loss", "grad_norm", "learning_rate", "step_time"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<eos>", "<unk>"] + [f"w{i}" for i in range(17)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def tiny_model(seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=20, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, pad_token_id=0, eos_token_id=1,
                      bos_token_id=None)
    return LlamaForCausalLM(cfg)


def dataset(n=8):
    from datasets import Dataset

    return Dataset.from_dict({"prompt": [f"w{3 + i % 10} w{4 + i % 7}" for i in range(n)],
                              "answer": [str(i) for i in range(n)]})


def word_reward(completions, **kwargs):
    """Mean index of the completion's words (w12 -> 12) / 16: varies across samples, so advantages are non-zero."""
    return [sum(int(w[1:]) for w in c.split()) / max(1, len(c.split())) / 16 for c in completions]


def config(tmp_path, **overrides):
    from trl import GRPOConfig

    values = dict(output_dir=str(tmp_path), report_to=[], use_cpu=True, bf16=False, gradient_checkpointing=False,
                  per_device_train_batch_size=4, gradient_accumulation_steps=2, num_generations=4,
                  max_completion_length=6, learning_rate=5e-3, max_steps=2, logging_steps=1, save_steps=0,
                  seed=7, temperature=1.0)
    values.update(overrides)
    return GRPOConfig(**values)


def run(tmp_path, model=None, script_args=None, reward_funcs=(word_reward,), **overrides):
    from grpo.training.native import train
    from grpo.training.native.plan import build_plan

    model = model or tiny_model()
    log = MetricsLogger(tmp_path)
    train(model, tiny_tokenizer(), dataset(), list(reward_funcs), build_plan(config(tmp_path, **overrides), script_args),
          log)
    return model, log.read()


def test_two_steps_lower_the_loss_on_a_fixed_batch(tmp_path):
    # num_iterations=2: step 2 re-optimises step 1's generation batch (stored old log-probs)
    _, metrics = run(tmp_path, num_iterations=2, loss_type="grpo")
    assert [m["step"] for m in metrics] == [1, 2]
    assert metrics[1]["loss"] < metrics[0]["loss"]
    assert "reward" not in metrics[1]  # no new generation on the second iteration, as TRL


def test_logs_trl_metric_names_and_samples(tmp_path):
    _, metrics = run(tmp_path, beta=0.04)
    for name in TRL_NAMES + ["kl"]:
        assert name in metrics[0], name
    assert metrics[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # policy == reference before the first update
    assert metrics[1]["kl"] > 0.0
    assert metrics[0]["completions/placeholder_reasoning_rate"] == 0.0  # ours: no <reasoning> block in these words
    samples = [json.loads(x) for x in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 * 8 and "word_reward" in samples[0]["rewards"]
    gold = dict(zip(dataset()["prompt"], dataset()["answer"]))  # each line carries its own row's answer
    assert all(sample["answer"] == gold[sample["prompt"]] for sample in samples)


def test_weights_change_and_every_loss_type_runs(tmp_path):
    for loss_type in ("grpo", "bnpo", "dr_grpo", "dapo"):
        model = tiny_model()
        before = [p.detach().clone() for p in model.parameters()]
        run(tmp_path / loss_type, model=model, loss_type=loss_type, max_steps=1, importance_sampling_level="sequence"
            if loss_type == "grpo" else "token", mask_truncated_completions=loss_type == "bnpo")
        assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters())), loss_type


def test_lora_reference_is_the_model_with_adapters_disabled(tmp_path):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_model(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    base_before = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    _, metrics = run(tmp_path, model=model, beta=0.1, max_steps=2)
    assert metrics[0]["kl"] == pytest.approx(0.0, abs=1e-6) and metrics[1]["kl"] > 0
    assert all(torch.equal(p, base_before[n]) for n, p in model.named_parameters() if not p.requires_grad)


class InterruptAt:
    """A reward that raises KeyboardInterrupt on its n-th call (one call per generation), like Ctrl-C."""

    __name__ = "word_reward"

    def __init__(self, n):
        self.n, self.calls = n, 0

    def __call__(self, completions, **kwargs):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return word_reward(completions)


def test_ctrl_c_then_resume_matches_uninterrupted_run(tmp_path):
    full_model, full = run(tmp_path / "full", max_steps=4, save_steps=2)
    # interrupted during step 4's rollout: checkpoint-2 by save_steps, checkpoint-3 by the interrupt
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", max_steps=4, save_steps=2, reward_funcs=[InterruptAt(4)])
    assert sorted(p.name for p in (tmp_path / "cut").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    assert (tmp_path / "cut" / "checkpoint-3" / "model.safetensors").exists()
    resumed_model, resumed = run(tmp_path / "cut", model=tiny_model(seed=1), max_steps=4, save_steps=2,
                                 resume_from_checkpoint="latest")
    assert [m["step"] for m in resumed] == [1, 2, 3, 4]
    for a, b in zip(full, resumed):
        for key in a:
            if key != "step_time":
                assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key)
    for p, q in zip(full_model.parameters(), resumed_model.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_nonfinite_loss_skips_the_update(tmp_path, monkeypatch, caplog):
    import grpo.training.native.loop as native

    real = native.grpo_loss
    monkeypatch.setattr(native, "grpo_loss", lambda *a, **k: (lambda out: (out[0] * math.nan, out[1]))(real(*a, **k)))
    model = tiny_model()
    before = [p.detach().clone() for p in model.parameters()]
    with caplog.at_level(logging.WARNING, logger="grpo.training.native.loop"):
        _, metrics = run(tmp_path, model=model, max_steps=1)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert metrics[0]["nonfinite_skipped"] == 1.0 and "skipping the update" in caplog.text


def test_zero_spread_warning_and_dynamic_sampling(tmp_path, caplog):
    from grpo.config.script_args import ScriptArgs

    def constant(completions, **kwargs):
        return [1.0] * len(completions)

    with caplog.at_level(logging.WARNING, logger="grpo.training.diagnostics"):
        _, metrics = run(tmp_path / "flat", reward_funcs=[constant], max_steps=3)
    assert all(m["frac_reward_zero_std"] == 1.0 for m in metrics)
    assert "No learning signal" in caplog.text
    args = ScriptArgs(dynamic_sampling=True, dynamic_sampling_max_retries=2)
    _, metrics = run(tmp_path / "dyn", reward_funcs=[constant], script_args=args, max_steps=1)
    assert metrics[0]["dynamic_sampling/rounds"] == 2.0  # every retry spent, batch kept full


def test_refuses_unsupported_settings(tmp_path):
    from grpo.training.native.fields import check_supported

    check_supported(config(tmp_path))
    with pytest.raises(UserError, match="max_tool_calling_iterations"):
        check_supported(config(tmp_path, max_tool_calling_iterations=2))
    with pytest.raises(UserError, match="loss_type='ppo'"):
        check_supported(config(tmp_path, loss_type="ppo"))


@pytest.mark.slow
def test_two_steps_on_embedded_smollm2(tmp_path):
    from grpo.modeling.models import EMBEDDED_SMOLLM2, apply_lora, load_model
    from grpo.training.native import train
    from grpo.training.native.plan import build_plan

    model, tok = load_model(EMBEDDED_SMOLLM2)
    model = apply_lora(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    log = MetricsLogger(tmp_path)
    args = config(tmp_path, per_device_train_batch_size=4, gradient_accumulation_steps=1, num_generations=4,
                  max_completion_length=16, learning_rate=1e-4, num_iterations=2, bf16=True)

    def length_reward(completions, **kwargs):
        return [len(c[0]["content"]) / 50 for c in completions]

    from datasets import Dataset
    data = Dataset.from_dict({"prompt": [[{"role": "user", "content": "Count to five."}]] * 2})
    train(model, tok, data, [length_reward], build_plan(args), log)
    metrics = log.read()
    assert len(metrics) == 2 and metrics[1]["loss"] < metrics[0]["loss"]
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters() if p.requires_grad)


def test_conversational_prompts_and_pipeline_sample_recorder(tmp_path):
    from datasets import Dataset

    from grpo.training.native import train
    from grpo.training.native.plan import build_plan

    tok = tiny_tokenizer()
    tok.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    data = Dataset.from_dict({"prompt": [[{"role": "user", "content": f"w{3 + i} w4"}] for i in range(4)],
                              "answer": [str(3 + i) for i in range(4)]})
    seen = []

    def chat_reward(completions, prompts=None, **kwargs):
        seen.append((completions[0], prompts[0]))
        return [word_reward([c[0]["content"]])[0] for c in completions]

    class Recorder:  # what grpo.runs.run_dir.SampleRecorder offers the native backend
        def __init__(self):
            self.flushed, self.recorded = [], []

        def record(self, prompts, completions, rewards_by_name, columns):
            self.recorded.append((prompts[0], completions[0], list(rewards_by_name)))
            self.last = prompts, columns

        def flush(self, step):
            self.flushed.append(step)

    log, recorder = MetricsLogger(tmp_path), Recorder()
    train(tiny_model(), tok, data, [chat_reward], build_plan(config(tmp_path)), log, recorder)
    completion, prompt = seen[0]
    assert completion[0]["role"] == "assistant" and prompt[0]["role"] == "user"
    assert recorder.flushed == [1, 2] and not (tmp_path / "samples.jsonl").exists()
    assert recorder.recorded[0][:2] == (prompt, completion) and recorder.recorded[0][2] == ["chat_reward"]
    # each completion's dataset row travels with it (samples.jsonl's gold columns), in the same order
    prompts, columns = recorder.last
    assert len(columns) == len(prompts) == 8
    assert all(p[0]["content"] == f"w{c['answer']} w4" and "prompt" not in c for p, c in zip(prompts, columns))


def test_shared_prompt_forward_equals_one_forward_per_row():
    from peft import LoraConfig, get_peft_model

    from grpo.maths.logprobs import token_logprobs
    from grpo.training.native.experience import collate, completion_logps

    model = get_peft_model(tiny_model(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():  # non-zero adapters so their gradient flows through both paths
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    completions = [[8, 9], [3, 4, 5, 1], [9], [7, 7, 7], [1]]  # 3 for prompt 0, 2 for prompt 1
    batch = collate([[5, 6, 7], [4, 9]], [0, 0, 0, 1, 1], completions, [False] * 5, None, torch.zeros(5), 0, False)
    logps, _ = completion_logps(model, batch, 0.7, lambda: torch.autocast("cpu", enabled=False))
    (logps * batch.completion_mask).sum().backward()
    shared = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    # reference: every row as one left-padded [prompt, completion] sequence through model.forward
    p_ids, p_mask = batch.prompt_ids[batch.prompt_index], batch.prompt_mask[batch.prompt_index]
    ids = torch.cat([p_ids, batch.completion_ids], 1)
    attn = torch.cat([p_mask, batch.completion_attention_mask], 1)
    logits = model(input_ids=ids, attention_mask=attn, position_ids=(attn.cumsum(-1) - 1).clamp(min=0)).logits
    ref, _ = token_logprobs(logits[:, p_ids.shape[1] - 1 : -1], batch.completion_ids, 0.7)
    (ref * batch.completion_mask).sum().backward()
    m = batch.completion_mask.bool()
    assert torch.allclose(logps[m], ref[m], atol=1e-5)
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert torch.allclose(shared[n], p.grad, atol=1e-5), n


def test_use_vllm_goes_to_the_vllm_engine(tmp_path, monkeypatch):
    """On CPU the engine refuses with its own UserError; with a stand-in engine the loop uses its rollouts."""
    import grpo.generation.vllm_engine
    from grpo.generation.sampler import generate

    check_calls = []

    class FakeEngine:
        def __init__(self, model_path, *args, **kwargs):
            check_calls.append(model_path)

        def generate(self, model, tokenizer, prompt_ids, seed=None, **kwargs):
            kwargs.pop("generator")
            return generate(model, tokenizer, prompt_ids, generator=torch.Generator().manual_seed(seed), **kwargs)

    if not torch.cuda.is_available():
        with pytest.raises(UserError):
            run(tmp_path / "cpu", use_vllm=True, max_steps=1)
    monkeypatch.setattr(grpo.generation.vllm_engine, "VLLMEngine", FakeEngine)
    _, metrics = run(tmp_path / "fake", use_vllm=True, max_steps=1)
    assert len(check_calls) == 1 and metrics[0]["completions/mean_length"] > 0


class OffsetEngine:
    """A stand-in vLLM engine: our sampler's rollouts, with every log-prob reported 0.5 nats low."""

    def __init__(self, *args, **kwargs):
        pass

    def generate(self, model, tokenizer, prompt_ids, seed=None, **kwargs):
        from grpo.generation.sampler import generate

        kwargs.pop("generator")
        out = generate(model, tokenizer, prompt_ids, generator=torch.Generator().manual_seed(seed), **kwargs)
        out.logprobs = [[lp - 0.5 for lp in row] for row in out.logprobs]
        return out


def test_vllm_importance_sampling_correction_weights_the_loss(tmp_path, monkeypatch):
    """token_truncate weights every token by e^0.5 here, so the dapo loss of the same rollouts is
    e^0.5 times the uncorrected one; switched off, only the log-prob gap is logged."""
    import grpo.generation.vllm_engine

    monkeypatch.setattr(grpo.generation.vllm_engine, "VLLMEngine", OffsetEngine)
    common = dict(use_vllm=True, max_steps=1, loss_type="dapo", vllm_importance_sampling_mode="token_truncate")
    _, on = run(tmp_path / "on", **common)
    _, off = run(tmp_path / "off", vllm_importance_sampling_correction=False, **common)
    assert on[0]["sampling/sampling_logp_difference/mean"] == pytest.approx(0.5, abs=1e-3)
    assert on[0]["sampling/importance_sampling_ratio/mean"] == pytest.approx(math.exp(0.5), rel=1e-3)
    assert off[0]["sampling/sampling_logp_difference/mean"] == pytest.approx(0.5, abs=1e-3)
    assert "sampling/importance_sampling_ratio/mean" not in off[0]
    assert abs(off[0]["loss"]) > 1e-4
    assert on[0]["loss"] == pytest.approx(math.exp(0.5) * off[0]["loss"], rel=1e-3)


def test_bf16_rollouts_log_the_gap_and_correct_on_request(tmp_path):
    from grpo.config.script_args import ScriptArgs

    _, plain = run(tmp_path / "plain", bf16=True, max_steps=1)
    assert 0 < plain[0]["sampling/sampling_logp_difference/mean"] < 0.5  # bf16 copy vs the policy under autocast
    assert "sampling/importance_sampling_ratio/mean" not in plain[0]
    _, fixed = run(tmp_path / "fixed", bf16=True, max_steps=2, reward_weights=[2.0],
                   script_args=ScriptArgs(sampler_importance_sampling_correction=True))
    assert len(fixed) == 2 and all(0 < m["sampling/importance_sampling_ratio/mean"] <= 3.0 for m in fixed)
    _, fp32 = run(tmp_path / "fp32", max_steps=1)  # the sampler ran the policy itself: nothing to correct
    assert not any(k.startswith("sampling/") for k in fp32[0])


# ---------------------------------------------------------------------------- the training device (issue 14)


def test_train_moves_the_model_to_the_training_device(tmp_path):
    """It used to train wherever the model happened to be (a CUDA user's model stayed on the CPU)."""
    model, moves = tiny_model(), []
    move = model.to

    def recording_to(*args, **kwargs):
        moves.append(torch.device(args[0]))
        return move(*args, **kwargs)

    model.to = recording_to  # an instance attribute shadows nn.Module.to
    run(tmp_path / "plain", model=model, max_steps=1)
    assert moves == [torch.device("cpu")]  # training_args.device
    moves.clear()
    model.hf_device_map = {"": "cpu"}  # a bitsandbytes device_map load is already on its device and stays there
    run(tmp_path / "mapped", model=model, max_steps=1)
    assert moves == []


def test_collectives_and_the_sampler_get_tensors_on_the_training_device(tmp_path, monkeypatch):
    """A recording stand-in for a 2-process group (this process plays both ranks: all_gather hands its own tensor
    back twice, all_reduce doubles, broadcast keeps): every tensor given to a collective, and the sampler's generator,
    is on the device."""
    import torch.distributed as dist

    import grpo.generation.sampler
    import grpo.training.native.loop

    seen, generators, sample = [], [], grpo.generation.sampler.generate

    def all_reduce(x, *args, **kwargs):
        seen.append(("all_reduce", x.device))
        x.mul_(2)

    def all_gather(parts, x, *args, **kwargs):
        seen.append(("all_gather", x.device, *(p.device for p in parts)))
        for p in parts:
            p.copy_(x)

    def broadcast(x, *args, **kwargs):
        seen.append(("broadcast", x.device))

    def recording_generate(model, *args, generator=None, **kwargs):
        generators.append((generator.device, next(model.parameters()).device))
        return sample(model, *args, generator=generator, **kwargs)

    monkeypatch.setattr(dist, "all_reduce", all_reduce)
    monkeypatch.setattr(dist, "all_gather", all_gather)
    monkeypatch.setattr(dist, "broadcast", broadcast)
    monkeypatch.setattr(grpo.training.native.loop, "init_distributed", lambda device: (0, 2))
    monkeypatch.setattr(grpo.generation.sampler, "generate", recording_generate)
    _, metrics = run(tmp_path, max_steps=2, loss_type="dapo")
    assert len(metrics) == 2 and all(math.isfinite(m["loss"]) for m in metrics)
    cpu = torch.device("cpu")
    assert {name for name, *_ in seen} == {"all_reduce", "all_gather", "broadcast"}
    assert all(d == cpu for _, *devices in seen for d in devices)
    assert generators and all(g == m == cpu for g, m in generators)


def test_padded_widths_leave_logprobs_and_gradients_unchanged():
    """pad_to_multiple_of rounds both widths up (bounded shapes for oneDNN on CPU); the padding is masked out."""
    from peft import LoraConfig, get_peft_model

    from grpo.training.native.experience import collate, completion_logps

    model = get_peft_model(tiny_model(seed=2), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    completions = [[8, 9], [3, 4, 5, 1], [9], [7, 7, 7, 7, 7]]
    results = {}
    for multiple in (1, 8):
        batch = collate([[5, 6, 7], [4, 9]], [0, 0, 1, 1], completions, [False] * 4, None, torch.zeros(4), 0, False,
                        pad_to_multiple_of=multiple)
        logps, _ = completion_logps(model, batch, 0.7, lambda: torch.autocast("cpu", enabled=False))
        (logps * batch.completion_mask).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        model.zero_grad()
        results[multiple] = (batch, logps.detach(), grads)
    (exact, logps1, grads1), (padded, logps8, grads8) = results[1], results[8]
    assert exact.prompt_ids.shape[1] == 3 and exact.completion_ids.shape[1] == 5
    assert padded.prompt_ids.shape[1] == 8 and padded.completion_ids.shape[1] == 8
    assert padded.completion_mask[:, 5:].sum() == 0 and torch.equal(padded.completion_mask[:, :5], exact.completion_mask)
    assert torch.allclose(logps8[:, :5][exact.completion_mask.bool()], logps1[exact.completion_mask.bool()], atol=1e-5)
    for n in grads1:
        assert torch.allclose(grads1[n], grads8[n], atol=1e-5), n


def test_pad_to_multiple_of_defaults_to_32_on_cpu_and_can_be_turned_off(tmp_path):
    from grpo.common.hardware import CPU_PAD_TO_MULTIPLE_OF
    from grpo.training.native.plan import build_plan

    assert build_plan(config(tmp_path)).pad_to_multiple_of == CPU_PAD_TO_MULTIPLE_OF == 32  # use_cpu, TRL's auto = None
    assert build_plan(config(tmp_path, pad_to_multiple_of=1)).pad_to_multiple_of == 1
    with pytest.raises(UserError, match="pad_to_multiple_of"):
        build_plan(config(tmp_path, pad_to_multiple_of=0))


def test_trl_backend_pads_the_same_way_on_cpu_and_leaves_the_parsed_config_alone(tmp_path):
    from grpo.training.trl_backend import trainer_config

    parsed = config(tmp_path, push_to_hub=False)
    assert parsed.pad_to_multiple_of is None  # TRL's "auto" pads only on Neuron
    given = trainer_config(parsed, ["tensorboard"])
    assert given.pad_to_multiple_of == 32 and given.report_to == ["tensorboard"] and not given.push_to_hub
    assert parsed.pad_to_multiple_of is None and parsed.report_to != ["tensorboard"]
    assert trainer_config(config(tmp_path, pad_to_multiple_of=1), []).pad_to_multiple_of == 1  # off, as asked
    assert trainer_config(config(tmp_path, pad_to_multiple_of=64), []).pad_to_multiple_of == 64
