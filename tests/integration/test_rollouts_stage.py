"""The RL preflight for real: vLLM's CPU build serves the tiny SFT checkpoint, verl-tool's agent loop plays
the demo questions against our tool server, verl's reward manager scores them with our compute_score.

One preflight run (4 questions x 4 rollouts) is shared by the proofs: the response mask, the token
ids SFT trains on, the reward, GRPO's advantages and a policy-loss backward with verl's core_algos.
The teardown tests start their own runs.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT, launch
from tests.fixtures.browser import browser  # noqa: F401
from tests.fixtures.vllm_cpu import require_vllm_cpu, structured_actions
from tools.rollouts.sample import RAY_TEMP_PREFIX, compose_trainer_config

pytestmark = pytest.mark.slow

PROMPTS, N = 4, 4
# verl-tool's multi-turn wrapper of an observation (mtrl_sep for the user role, Qwen's chat markup).
OBSERVATION_OPEN, OBSERVATION_CLOSE = "<|im_end|>\n<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n"
SERVICE_STARTED = re.compile(r"service (\w+) started \(pid (\d+)\)")


@dataclass
class Preflight:
    """A finished preflight run: its folder, launcher output, rollout records, report and trainer config."""

    run_dir: Path
    output: str
    records: list[dict]
    report: dict
    config: object


def alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def ray_processes() -> list[str]:
    """Command lines of live processes of any preflight's private Ray."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if RAY_TEMP_PREFIX in cmdline and proc.name.isdigit() and alive(int(proc.name)):
            found.append(cmdline)
    return found


def service_pids(output: str) -> dict[str, int]:
    """The pid of every service the launcher started, by name."""
    return {name: int(pid) for name, pid in SERVICE_STARTED.findall(output)}


@pytest.fixture(scope="module")
def preflight(tiny_sft_run: Path) -> Preflight:
    """`rollouts recipe=tiny` on the demo questions, its actions sampled within the action grammar."""
    require_vllm_cpu()
    done = launch("rollouts", "recipe=tiny", f"run_root={tiny_sft_run}", "name=proof", f"rollouts.prompts={PROMPTS}",
                  f"rollouts.n={N}", structured_actions("rollouts"), timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    run_dir = tiny_sft_run / "rollouts" / "tiny" / "proof"
    records = [json.loads(line) for line in (run_dir / "rollouts" / "rollouts.jsonl").read_text().splitlines()]
    overrides = (run_dir / "rl" / "trainer_overrides.txt").read_text().splitlines()
    return Preflight(run_dir, output, records, json.loads((run_dir / "rollouts" / "report.json").read_text()),
                     compose_trainer_config(overrides))


@pytest.fixture(scope="module")
def tokenizer(preflight: Preflight):
    """The policy's tokenizer."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(preflight.config.actor_rollout_ref.model.path)


def segments(mask: list[int]) -> list[tuple[int, int, int]]:
    """Runs of equal mask bits as (bit, start, end)."""
    runs, start = [], 0
    for position in range(1, len(mask) + 1):
        if position == len(mask) or mask[position] != mask[start]:
            runs.append((mask[start], start, position))
            start = position
    return runs


def test_report_counts_what_the_records_hold(preflight: Preflight) -> None:
    """16 rollouts in 4 groups, each with real tool calls; the report's rates are the records' own."""
    records, report = preflight.records, preflight.report
    assert len(records) == PROMPTS * N and report["groups"] == PROMPTS and report["n"] == N
    assert sorted({r["group"] for r in records}) == list(range(PROMPTS))
    assert "rollouts starts from" in preflight.output and "(the model of SFT run" in preflight.output
    calls = [call for record in records for call in record["tool_calls"]]
    assert any(call["obs"] for call in calls), "no rollout got an observation back"
    assert report["valid_action_rate"] == pytest.approx(sum(c["valid_action"] for c in calls) / len(calls))
    assert report["answer_rate"] == pytest.approx(sum(r["reward"]["answered"] for r in records) / len(records))
    assert report["turns"]["mean"] == pytest.approx(sum(r["num_turns"] for r in records) / len(records))
    for key in ("policy", "tool", "reward", "generation_wall"):
        assert report["time_s"][key] > 0
    # Every request the tool server answered is in the per-kind table, with the server's own time.
    by_kind = report["tool_time_by_kind"]
    assert sum(row["calls"] for row in by_kind.values()) == len(calls)
    assert by_kind["get_caption"]["calls"] > 0 and by_kind["get_caption"]["ms_mean"] > 0, by_kind
    assert (preflight.run_dir / "rollouts" / "report.png").stat().st_size > 0
    assert "| GRPO groups with all rewards equal" in (preflight.run_dir / "rollouts" / "report.md").read_text()


def test_response_mask_is_zero_exactly_on_the_observations(preflight: Preflight, tokenizer) -> None:
    """Every 0-run decodes to one observation the tool server returned, wrapped as a user turn; 1-runs are actions."""
    checked = 0
    for record in preflight.records:
        runs = segments(record["response_mask"])
        generated = [run for run in runs if run[0] == 1]
        observed = [run for run in runs if run[0] == 0]
        calls = record["tool_calls"]
        assert len(observed) == len(calls), record["stop_reason"]
        for (_, start, end), call in zip(observed, calls, strict=True):
            text = tokenizer.decode(record["response_ids"][start:end])
            assert text == OBSERVATION_OPEN + call["obs"] + OBSERVATION_CLOSE
            checked += 1
        for (_, start, end), call in zip(generated, calls, strict=False):
            assert tokenizer.decode(record["response_ids"][start:end]).endswith(call["action"])
        assert sum(record["response_mask"]) == record["metrics"]["traj_actions_length"]
    assert checked > PROMPTS * N / 2


def test_rollout_ids_are_the_ids_sft_trains_on(preflight: Preflight, tokenizer) -> None:
    """An answered rollout, rebuilt as an SFT sample and encoded by LLaMA-Factory's template, gives its token ids."""
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    from tools.builders.sft_format import sharegpt_sample

    template = get_template_and_fix_tokenizer(tokenizer, DataArguments(template="qwen3_nothink"))
    prompts = prompt_messages(preflight)
    compared = 0
    for record in preflight.records:
        if record["stop_reason"] != "tool_signaled_done" or not record["reward"]["answered"]:
            continue
        calls = record["tool_calls"]
        exchanges = [(call["action"], call["obs"]) for call in calls[:-1]] + [(calls[-1]["action"], None)]
        system, user = prompts[record["question_id"]]
        sample = sharegpt_sample(system, user, exchanges, "user")
        turns = [{"role": {"human": "user", "gpt": "assistant", "user": "user"}.get(m["from"], m["from"]),
                  "content": m["value"]} for m in sample["messages"][1:]]
        sft_ids = [token for source, target in template.encode_multiturn(tokenizer, turns, system)
                   for token in source + target]
        assert record["prompt_ids"] + canonical(record, tokenizer)[:len(sft_ids) - len(record["prompt_ids"])] \
            == sft_ids, record["question_id"]
        compared += 1
    assert compared > 0


def canonical(record: dict, tokenizer) -> list[int]:
    """The response ids with each generated run re-tokenized as the tokenizer encodes its text.

    Sampling under a grammar may pick another split of the same text into tokens; SFT trains the
    tokenizer's own split, so actions are compared as text, and everything else token for token.
    """
    ids = []
    for bit, start, end in segments(record["response_mask"]):
        piece = record["response_ids"][start:end]
        ids += tokenizer.encode(tokenizer.decode(piece), add_special_tokens=False) if bit else piece
    return ids


def prompt_messages(preflight: Preflight) -> dict[str, tuple[str, str]]:
    """Each question's system and user prompt, from the RL parquet the preflight read."""
    import pyarrow.parquet as pq

    table = pq.read_table(preflight.config.data.train_files).to_pylist()
    return {row["extra_info"]["question_id"]: (row["prompt"][0]["content"], row["prompt"][1]["content"])
            for row in table}


def test_each_reward_is_compute_score_of_the_decoded_text(preflight: Preflight) -> None:
    """Our compute_score on the text verl decoded, with the preset's kwargs, gives the recorded reward."""
    import pyarrow.parquet as pq

    from rewards.score import compute_score

    table = pq.read_table(preflight.config.data.train_files).to_pylist()
    rows = {row["extra_info"]["question_id"]: row for row in table}
    kwargs = dict(preflight.config.custom_reward_function.reward_kwargs)
    for record in preflight.records:
        row = rows[record["question_id"]]
        expected = compute_score(row["data_source"], record["text"], row["reward_model"]["ground_truth"],
                                 row["extra_info"], **kwargs)
        assert record["score"] == pytest.approx(expected["score"])
        assert record["reward"] == pytest.approx(expected)


def test_advantages_are_grpo_per_group(preflight: Preflight) -> None:
    """(score - group mean) / (group std + 1e-6), the std unbiased, as GRPO defines it."""
    import statistics

    groups: dict[int, list[dict]] = {}
    for record in preflight.records:
        groups.setdefault(record["group"], []).append(record)
    for members in groups.values():
        scores = [member["score"] for member in members]
        mean, std = statistics.fmean(scores), statistics.stdev(scores)
        for member in members:
            assert member["advantage"] == pytest.approx((member["score"] - mean) / (std + 1e-6), abs=1e-5)
    flat = sum(len({round(m["score"], 9) for m in members}) == 1 for members in groups.values())
    assert preflight.report["flat_group_rate"] == pytest.approx(flat / len(groups))


def test_grpo_policy_loss_backward_ignores_masked_tokens(preflight: Preflight, tokenizer) -> None:
    """verl's policy loss over these rollouts on the policy's weights: gradient flows, never from mask-0 tokens."""
    import torch
    from transformers import AutoModelForCausalLM
    from verl.trainer.ppo.core_algos import get_policy_loss_fn

    model = AutoModelForCausalLM.from_pretrained(preflight.config.actor_rollout_ref.model.path,
                                                 torch_dtype=torch.float32)
    records = [r for r in preflight.records if 0 in r["response_mask"]][:4]
    width = max(len(r["response_ids"]) for r in records)
    log_probs, masks, advantages = [], [], []
    for record in records:
        ids = torch.tensor([record["prompt_ids"] + record["response_ids"]])
        logits = model(input_ids=ids).logits[0, len(record["prompt_ids"]) - 1:-1]
        chosen = torch.log_softmax(logits, -1).gather(-1, ids[0, len(record["prompt_ids"]):, None])[:, 0]
        pad = width - len(record["response_ids"])
        log_probs.append(torch.nn.functional.pad(chosen, (0, pad)))
        masks.append(torch.tensor(record["response_mask"] + [0] * pad, dtype=torch.float32))
        advantages.append(torch.full((width,), record["advantage"] or 1.0))
    log_prob = torch.stack(log_probs)
    log_prob.retain_grad()
    mask = torch.stack(masks)
    loss_fn = get_policy_loss_fn(preflight.config.actor_rollout_ref.actor.policy_loss.loss_mode)
    loss = loss_fn(old_log_prob=log_prob.detach(), log_prob=log_prob, advantages=torch.stack(advantages),
                   response_mask=mask, loss_agg_mode=preflight.config.actor_rollout_ref.actor.loss_agg_mode,
                   config=preflight.config.actor_rollout_ref.actor)[0]
    loss.backward()
    assert torch.all(log_prob.grad[mask == 0] == 0)
    assert torch.any(log_prob.grad[mask == 1] != 0)
    assert any(p.grad is not None and torch.any(p.grad != 0) for p in model.parameters())


def test_services_and_ray_are_gone_after_the_stage(preflight: Preflight) -> None:
    """The policy server, the tool server and the preflight's Ray are all stopped when the stage ends."""
    pids = service_pids(preflight.output)
    assert set(pids) == {"tool_server", "policy"}
    assert not [name for name, pid in pids.items() if alive(pid)]
    assert ray_processes() == []


def test_sigterm_stops_the_servers_and_ray(tiny_sft_run: Path) -> None:
    """SIGTERM while rollouts are sampled: exit 143, and no server or Ray process is left."""
    require_vllm_cpu()
    process = subprocess.Popen([sys.executable, "-m", "launch", "rollouts", "recipe=tiny", f"run_root={tiny_sft_run}",
                                "name=sigterm", "rollouts.prompts=2", structured_actions("rollouts")],
                               cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = []
    for line in process.stdout:
        output.append(line)
        if "step rollouts:" in line:
            break
    # Ray and verl-tool's worker start within seconds of the step; stop the run while they live.
    time.sleep(12)
    process.send_signal(signal.SIGTERM)
    output.append(process.communicate(timeout=120)[0])
    text = "".join(output)
    assert process.returncode == 143, text[-4000:]
    pids = service_pids(text)
    assert set(pids) == {"tool_server", "policy"}
    assert not [name for name, pid in pids.items() if alive(pid)]
    assert ray_processes() == []


def test_a_policy_server_that_never_gets_ready_fails_naming_its_log(tiny_sft_run: Path) -> None:
    """A policy that is not ready in time fails the stage with its log named; nothing is left running."""
    require_vllm_cpu()
    done = launch("rollouts", "recipe=tiny", f"run_root={tiny_sft_run}", "name=slow", "rollouts.ready_timeout_s=3")
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "service policy not ready after" in output and "logs/policy.0.log" in output
    assert not [name for name, pid in service_pids(output).items() if alive(pid)]


def group_dom(opened) -> list[dict]:
    """Each rollout of the open group page: its advantage, reward, visits and clue bands, read from the DOM."""
    return opened.page.eval_on_selector_all("#detail-view .timeline-row", """boxes => boxes.map(box => ({
        advantage: box.querySelector('.advantage') ? Number(box.querySelector('.advantage').textContent.split(' ')[1])
                                                   : null,
        score: Number(box.querySelector("[data-reward='score']").textContent.split(' ')[1]),
        visits: box.querySelectorAll('.visit').length, clues: box.querySelectorAll('.clue').length}))""")


def check_groups(opened, groups: list[list[dict]]) -> None:
    """The page shows each GRPO group with its rollouts' rewards, advantages, visits and clue bands."""
    from tests.fixtures.browser import row_count

    assert row_count(opened) == len(groups)
    for position, members in enumerate(groups):
        opened.show(position)
        shown = group_dom(opened)
        assert [rollout["advantage"] for rollout in shown] == pytest.approx([m["advantage"] for m in members], abs=2e-3)
        assert [rollout["score"] for rollout in shown] == pytest.approx([m["score"] for m in members], abs=2e-3)
        assert [rollout["visits"] for rollout in shown] == [m["reward"]["served_calls"] for m in members]
        assert [rollout["clues"] for rollout in shown] == [len(m["extra_info"]["clue_intervals"]) for m in members]
        flat = len({round(m["score"], 9) for m in members}) == 1
        assert opened.page.eval_on_selector_all("#detail-view .zero-variance", "n => n.length") == int(flat)
    assert opened.network_requests() == [] and opened.errors == []


def grouped(records: list[dict]) -> list[list[dict]]:
    """The records in their GRPO groups, in group order."""
    groups: dict[int, list[dict]] = {}
    for record in records:
        groups.setdefault(record["group"], []).append(record)
    return [groups[key] for key in sorted(groups)]


def test_the_preflight_writes_its_view(preflight: Preflight, browser) -> None:  # noqa: F811
    """The run's rollouts/view.html: one row per GRPO group, each rollout's reward, advantage, visits and clues."""
    page_file = preflight.run_dir / "rollouts" / "view.html"
    assert page_file.is_file(), preflight.output[-3000:]
    with browser.open(page_file) as opened:
        check_groups(opened, grouped(preflight.records))
        opened.show(0)
        opened.screenshot("viewer-group.png", full_page=True)


def test_an_rl_dump_shows_its_groups_with_grpo_advantages(preflight: Preflight, tokenizer, tmp_path: Path,
                                                           browser) -> None:  # noqa: F811
    """A dump written by verl's own `_dump_generations` from these rollouts: the RL data joined from the run's
    config, the turns parsed from text decoded with special tokens, advantages recomputed as verl's GRPO does."""
    from types import SimpleNamespace

    from verl.trainer.ppo.ray_trainer import RayPPOTrainer

    records = [member for members in grouped(preflight.records) for member in members]
    keys = sorted(records[0]["reward"])
    extra = {key: [record["reward"][key] for record in records] for key in keys}
    extra.update(tool_interact_info=[record["tool_calls"] for record in records],
                 traj_stop_reason=[record["stop_reason"] for record in records])
    run = tmp_path / "rl_run"
    RayPPOTrainer._dump_generations(
        SimpleNamespace(global_steps=3),
        [tokenizer.decode(record["prompt_ids"], skip_special_tokens=False) for record in records],
        [tokenizer.decode(record["response_ids"], skip_special_tokens=False) for record in records],
        [r["ground_truth"] for r in records], [r["score"] for r in records], extra, str(run / "rollouts"))
    data = [str(path) for path in (preflight.config.data.train_files, preflight.config.data.val_files)]
    (run / "config.yaml").write_text(json.dumps({"rl": {"algorithm": "grpo", "data": {"train_files": data[0],
                                                                                      "val_files": data[1]}}}))
    done = subprocess.run([sys.executable, "-m", "launch", "view", str(run)], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with browser.open(run / "rollouts" / "view-step3.html") as opened:
        check_groups(opened, grouped(preflight.records))
    alone = subprocess.run([sys.executable, "-m", "launch", "view", str(run / "rollouts" / "3.jsonl"),
                            "--data", data[0], "--data", data[1], "--output", str(tmp_path / "alone.html")],
                           cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert alone.returncode == 0 and (tmp_path / "alone.html").stat().st_size > 0, alone.stderr
