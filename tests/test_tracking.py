"""report_to wandb / trackio / tensorboard (grpo/runs/tracking.py): offline by default, logs under output_dir.

Run: pytest tests/test_tracking.py            (fast: env rules + a 3-step native run of a tiny random Llama)
     pytest -m slow tests/test_tracking.py    (SmolLM2 on both backends, grpo sft, one recipe; ~1-2 min each)

Every run happens in a subprocess: trackio reads TRACKIO_DIR once, when first imported, so an
in-process run would write wherever the first import pointed. What a run logged is read back with
each library's own reader: ``wandb leet inspect --json`` (the .wandb transaction log of an offline
run), trackio's SQLiteStorage, tensorboard's EventAccumulator.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from grpo.common.errors import UserError
from grpo.runs import tracking

REPO = Path(__file__).resolve().parents[1]
TINY_RUN = """
import sys
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
from test_native import config, dataset, tiny_model, tiny_tokenizer, word_reward
from grpo.config.script_args import ScriptArgs
from grpo.runs import tracking
from grpo.runs.run_dir import MetricsLogger
from grpo.training.native import train
from grpo.training.native.plan import build_plan
out = sys.argv[1]
args = config(out, report_to="wandb,trackio,tensorboard", max_steps=3, logging_steps=2, run_name="tiny",
              project="grpo-tracking-test")
script_args = ScriptArgs(backend="native", lora_r=7)
tracker = tracking.open_trackers(tracking.configure(args, native=True), args, script_args)
train(tiny_model(), tiny_tokenizer(), dataset(), [word_reward], build_plan(args, script_args), MetricsLogger(out),
      tracker=tracker)
"""
TRACKIO_READER = """
import json, sys
from trackio.sqlite_storage import SQLiteStorage as S
project = sys.argv[1]
print(json.dumps({r: {"config": S.get_run_config(project, r), "logs": S.get_logs(project, r)} for r in S.get_runs(project)},
                 default=str))
"""


def clean_env(**extra) -> dict:
    """The test process's environment without any tracker settings (so the defaults are what runs)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "TRACKIO_", "TENSORBOARD_"))}
    return {**env, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **extra}


def run(argv: list[str], timeout=900, **env) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *argv], cwd=REPO, env=clean_env(**env), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def wandb_run(wandb_dir: Path) -> dict:
    """{"history": [row, ...], "summary": {...}, "config": {...}, "dir": run dir} of the only offline run."""
    runs = sorted(wandb_dir.glob("offline-run-*"))
    assert len(runs) == 1, runs
    records = run(["-m", "wandb", "leet", "inspect", "--json", str(runs[0])], timeout=120).stdout
    summary = json.loads(run(["-m", "wandb", "leet", "inspect", "--summary", "--json", str(runs[0])], timeout=120).stdout)
    history = [r["history"]["item"] for r in map(json.loads, records.splitlines()) if r["type"] == "history"]
    return {"history": history, "summary": summary, "config": summary["config"], "dir": runs[0]}


def wandb_tables(run_: dict) -> list[dict]:
    """Every logged ``completions`` table, in order, read from the media files the history rows point to."""
    paths = [row["completions.path"] for row in run_["history"] if "completions.path" in row]
    return [json.loads((run_["dir"] / "files" / p).read_text()) for p in paths]


def trackio_runs(trackio_dir: Path, project: str) -> dict:
    assert (trackio_dir / f"{project}.db").exists(), list(trackio_dir.iterdir())
    return json.loads(run(["-c", TRACKIO_READER, project], timeout=120, TRACKIO_DIR=str(trackio_dir)).stdout)


def tensorboard_events(out: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    dirs = sorted({p.parent for p in out.glob("runs/*/events.out.tfevents.*")})
    assert len(dirs) == 1, dirs
    events = EventAccumulator(str(dirs[0]), size_guidance={"tensors": 0, "scalars": 0})
    events.Reload()
    return events


def tb_text(events, tag: str) -> list[tuple[int, str]]:
    return [(e.step, e.tensor_proto.string_val[0].decode()) for e in events.Tensors(f"{tag}/text_summary")]


def metrics_jsonl(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def check_scalars_everywhere(out: Path, wandb_: dict, trackio_logs: list[dict], events) -> list[str]:
    """Each reward metric of metrics.jsonl is in all three trackers with the same value; returns the reward names."""
    logged = metrics_jsonl(out)
    names = sorted({k.split("/")[1] for row in logged for k in row if k.startswith("rewards/") and k.endswith("/mean")})
    assert names
    for row in logged:
        for key in [f"rewards/{n}/{s}" for n in names for s in ("mean", "std")] + ["reward", "loss"]:
            if row.get(key) is None:
                continue
            tagged = f"train/{key}"
            assert any(h.get(tagged) == pytest.approx(row[key]) for h in wandb_["history"]), (tagged, row["step"])
            assert any(t.get(tagged) == pytest.approx(row[key]) for t in trackio_logs), (tagged, row["step"])
            assert (row["step"], pytest.approx(row[key])) in [(e.step, e.value) for e in events.Scalars(tagged)], tagged
    return names


# ---------------------------------------------------------------------------- environment rules (no run)


@pytest.fixture
def env(monkeypatch):
    for key in [k for k in os.environ if k.startswith(("WANDB_", "TRACKIO_", "TENSORBOARD_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setattr(tracking, "_set_by_us", {})
    return monkeypatch


def grpo_config(tmp_path, report_to, **kw):
    from trl import GRPOConfig

    return GRPOConfig(output_dir=str(tmp_path / "run"), report_to=report_to, bf16=False, use_cpu=True, **kw)


def test_report_to_spellings():
    assert tracking.requested("none") == [] and tracking.requested(None) == [] and tracking.requested([None]) == []
    assert tracking.requested("wandb, tensorboard") == ["wandb", "tensorboard"]
    assert tracking.requested(["trackio", "none"]) == ["trackio"]
    assert tracking.requested("all") == ["wandb", "trackio", "tensorboard"]
    assert tracking.requested(["mlflow"]) == ["mlflow"]  # the TRL backend hands it to the HF Trainer
    with pytest.raises(UserError, match="report_to='mlflow'.*native backend.*--backend trl"):
        tracking.requested(["wandb", "mlflow"], native=True)


def test_wandb_is_offline_unless_asked_and_logs_land_in_output_dir(env, tmp_path, caplog):
    args = grpo_config(tmp_path, "wandb,tensorboard", project="exp")
    parsed = args.report_to
    report_to = tracking.configure(args)
    assert report_to == ["wandb", "tensorboard"] and args.report_to == parsed  # the parsed config is left as it was
    trainer_args = tracking.trainer_args(args, report_to)
    assert trainer_args.report_to == ["wandb", "tensorboard"]  # a list the HF Trainer understands
    assert os.environ["WANDB_MODE"] == "offline"
    assert os.environ["WANDB_DIR"] == str((tmp_path / "run").resolve()) and (tmp_path / "run").is_dir()
    assert os.environ["WANDB_PROJECT"] == "exp"
    assert Path(os.environ["TENSORBOARD_LOGGING_DIR"]).parent == (tmp_path / "run" / "runs").resolve()
    assert "offline mode" in caplog.text and "wandb sync" in caplog.text
    assert trainer_args.log_completions and trainer_args.num_completions_to_print == 0  # TRL's table on, console quiet
    assert not args.log_completions and args.num_completions_to_print is None
    # a second run in the same process moves the directory we chose; the user's choices always stay
    tracking.configure(grpo_config(tmp_path / "b", "wandb"))
    assert os.environ["WANDB_DIR"] == str((tmp_path / "b" / "run").resolve())
    env.setenv("WANDB_DIR", "/elsewhere")
    env.setenv("WANDB_MODE", "online")
    tracking.configure(grpo_config(tmp_path, "wandb"))
    assert os.environ["WANDB_DIR"] == "/elsewhere" and os.environ["WANDB_MODE"] == "online"


def test_an_api_key_means_the_user_asked_to_upload(env, tmp_path):
    env.setenv("WANDB_API_KEY", "x" * 40)
    tracking.configure(grpo_config(tmp_path, "wandb"))
    assert "WANDB_MODE" not in os.environ


def test_trackio_dir_and_no_table_switch_without_a_table_tracker(env, tmp_path):
    args = grpo_config(tmp_path, "tensorboard")
    assert tracking.configure(args) == ["tensorboard"]
    assert not tracking.trainer_args(args, ["tensorboard"]).log_completions
    assert "WANDB_MODE" not in os.environ and "TRACKIO_DIR" not in os.environ
    args = grpo_config(tmp_path, ["trackio"], log_completions=True, num_completions_to_print=3)
    report_to = tracking.configure(args)
    assert os.environ["TRACKIO_DIR"] == str((tmp_path / "run" / "trackio").resolve())
    assert tracking.trainer_args(args, report_to).num_completions_to_print == 3  # the user's own setting is kept
    assert tracking.configure(grpo_config(tmp_path, "none")) == []


def test_native_refuses_an_integration_it_does_not_implement(tmp_path, capsys):
    from grpo.cli.commands import main

    code = main(["train", "--config", "grpo/configs/gsm8k.yaml", "--periodic_eval_steps", "0", "--backend", "native",
                 "--report_to", "mlflow",
                 "--output_dir", str(tmp_path / "run")])
    assert code == 2
    assert "report_to='mlflow'" in capsys.readouterr().err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_completions_table_columns_and_markdown_escaping():
    table = tracking.completions_table(4, [[{"role": "user", "content": "2+2?"}], "plain"],
                                       [[{"role": "assistant", "content": "<answer>\n4</answer>"}], "a|b"],
                                       {"correctness": [1.0, float("nan")]}, [0.7, -0.7])
    assert list(table) == ["step", "prompt", "completion", "correctness", "advantage"]
    assert table["prompt"] == ["user: 2+2?", "plain"] and table["step"] == [4, 4]
    text = tracking._markdown(table)
    assert "&lt;answer&gt;<br>4&lt;/answer&gt;" in text and "a\\|b" in text
    assert len(text.splitlines()) == 4  # header, rule, one line per completion


# ---------------------------------------------------------------------------- a real (tiny) native run


def test_native_run_logs_metrics_config_and_table_to_all_three(tmp_path):
    out = tmp_path / "run"
    proc = run(["-c", TINY_RUN.format(tests=str(REPO / "tests")), str(out)], timeout=300)
    assert "offline mode" in proc.stderr and "wandb sync" in proc.stderr  # the one line saying how to upload
    logged = metrics_jsonl(out)
    assert [row["step"] for row in logged] == [2, 3]  # logging_steps=2, and the final step

    wandb_ = wandb_run(out / "wandb")
    assert wandb_["summary"]["state"] == "finished" and wandb_["summary"]["name"] == "tiny"
    assert wandb_["config"]["script_args"]["lora_r"] == 7 and wandb_["config"]["logging_steps"] == 2
    trackio_ = trackio_runs(out / "trackio", "grpo-tracking-test")["tiny"]
    assert trackio_["config"]["script_args"]["lora_r"] == 7
    events = tensorboard_events(out)
    assert check_scalars_everywhere(out, wandb_, trackio_["logs"], events) == ["word_reward"]

    # the completions table: only at step 2 (a multiple of logging_steps), one row per completion (8)
    (table,) = wandb_tables(wandb_)
    assert table["columns"] == ["step", "prompt", "completion", "word_reward", "advantage"]
    rows = [dict(zip(table["columns"], r)) for r in table["data"]]
    assert len(rows) == 8 and {r["step"] for r in rows} == {2}
    for group in (rows[:4], rows[4:]):  # group-relative advantages are centred in each group of G=4
        assert len({r["prompt"] for r in group}) == 1
        assert sum(r["advantage"] for r in group) == pytest.approx(0.0, abs=1e-5)
        best = max(group, key=lambda r: r["word_reward"])
        assert best["advantage"] == max(r["advantage"] for r in group)
    (tracked,) = [t["completions"] for t in trackio_["logs"] if "completions" in t]
    assert tracked["_value"] == rows
    (step, text), = tb_text(events, "completions")
    assert step == 2 and text.count("\n") == 1 + 8 and "word_reward | advantage" in text
    assert json.loads(tb_text(events, "args")[0][1])["script_args"]["lora_r"] == 7


# ---------------------------------------------------------------------------- SmolLM2, CLI, both backends


TRAIN = ["-m", "grpo.cli", "train", "--config", "grpo/configs/gsm8k.yaml", "--max_steps", "2", "--eval_size", "0",
         "--periodic_eval_steps", "0",
         "--warm_start", "false", "--num_generations", "2", "--per_device_train_batch_size", "2",
         "--gradient_accumulation_steps", "1",
         "--max_completion_length", "12", "--logging_steps", "1", "--report_to", "wandb,trackio,tensorboard",
         "--project", "gsm8k-test", "--run_name", "short",
         # rewards of its own (the config's list changes): the names asserted below
         "--reward_funcs", "xml_count,correctness", "--reward_weights", "1.0", "1.0", "--reward_kwargs", "{}"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["native", "trl"])
def test_grpo_train_logs_metrics_config_and_table(tmp_path, backend):
    out = tmp_path / backend
    proc = run([*TRAIN, "--backend", backend, "--output_dir", str(out)])
    assert "offline mode" in proc.stderr
    wandb_ = wandb_run(out / "wandb")
    assert wandb_["config"]["script_args"]["backend"] == backend and wandb_["config"]["num_generations"] == 2
    trackio_ = trackio_runs(out / "trackio", "gsm8k-test")["short"]
    assert trackio_["config"]["script_args"]["backend"] == backend
    events = tensorboard_events(out)
    names = check_scalars_everywhere(out, wandb_, trackio_["logs"], events)
    assert {"accuracy_reward", "xmlcount_reward"} <= set(names)

    tables = wandb_tables(wandb_)
    assert {row[0] for t in tables for row in t["data"]} == {1, 2}  # a table at each logging step
    for table in tables:
        assert table["columns"] == ["step", "prompt", "completion", *names_in_order(out), "advantage"]
        assert len(table["data"]) == 2 and all(math.isfinite(row[-1]) for row in table["data"])
    assert len([t for t in trackio_["logs"] if "completions" in t]) >= 2
    assert [step for step, _ in tb_text(events, "completions")] == [1, 2]
    if backend == "trl":  # TRL's own copy of each table
        assert sorted(p.name for p in (out / "completions").glob("*.parquet")) == [
            "completions_00001.parquet", "completions_00002.parquet"]


def names_in_order(out: Path) -> list[str]:
    """Reward names in reward_funcs order, as samples.jsonl records them."""
    sample = json.loads((out / "samples.jsonl").read_text().splitlines()[0])
    return list(sample["rewards"])


@pytest.mark.slow
def test_grpo_sft_reports_to_wandb_and_tensorboard(tmp_path):
    out = tmp_path / "sft"
    run(["-m", "grpo.cli", "sft", "--config", "grpo/configs/gsm8k.yaml", "--eval_size", "0", "--sft_examples", "4",
         "--sft_batch_size", "2", "--report_to", "wandb,tensorboard", "--output_dir", str(out)])
    wandb_ = wandb_run(out / "wandb")  # the run directory, not out/sft
    assert wandb_["summary"]["name"] == "sft-sft" and wandb_["summary"]["state"] == "finished"
    losses = [h["train/loss"] for h in wandb_["history"] if "train/loss" in h]
    assert losses and all(math.isfinite(v) for v in losses)
    events = tensorboard_events(out)  # out/runs/<date>_<host>-sft-sft, not out/sft/runs
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx(losses)


@pytest.mark.slow
def test_a_recipe_reports_to_wandb_and_tensorboard(tmp_path):
    out = tmp_path / "ner"
    run(["-m", "grpo.cli", "recipe", "token_classification", "--config", "recipes/configs/token_classification.yaml",
         "--max_steps", "2", "--max_train_samples", "16", "--max_eval_samples", "8", "--logging_steps", "1",
         "--report_to", "wandb,tensorboard", "--output_dir", str(out)])
    assert (out / "model.safetensors").exists()  # the checkpoint swap keeps the tracker directories
    wandb_ = wandb_run(out / "wandb")
    assert wandb_["config"]["max_steps"] == 2
    losses = [h["train/loss"] for h in wandb_["history"] if "train/loss" in h]
    assert len(losses) == 2
    assert [e.value for e in tensorboard_events(out).Scalars("train/loss")] == pytest.approx(losses)
