"""Scenario "continuity": the next turn of a ~2,000-token conversation, warm and after its model was stopped.

One router: SmolLM2 with a 4,096-token slot, and gemma; ``max_loaded_models = 1``. After a
cold first turn (the whole conversation prefilled: what every next turn cost before slots
were kept across stops), each round measures three next turns of the same conversation:

- **warm**: the model stayed loaded (shown as *direct*);
- **after unload + load**: ``POST /v1/models/{id}/unload``, then ``load``;
- **after a swap**: a request to gemma evicts SmolLM2 (one model fits), then ``load`` brings
  it back, evicting gemma.

The loads are explicit, so the turns' latencies compare prefill with prefill. Re-processed
tokens are llama-server's own ``timings.prompt_n``. Medians over the rounds; targets: after
either stop, at most 2x the warm turn's tokens and 1.5x its latency.

Then **streams killed mid-answer**: greedy 200-token chat streams, each cut by a SIGKILL of
SmolLM2's llama-server at a random point (proxy/resume/ replays them on the restarted child:
sent again and relayed from the cut): the share completed without an error event (target: all),
and the share whose text equals the uninterrupted greedy answer (target: 90 %, the issue's 18 of
20; continued from their text instead, 65-70 % were).
"""

from __future__ import annotations

import random
import statistics
from pathlib import Path

import httpx

from bench.harness import write_config
from bench.scenarios import Result, Row, Target
from inference_service.config import load_settings
from inference_service.provisioning.llamacpp import configured_binary
from tests.support.conversation import LONG_CONTEXT, TURN_TIMEOUT_S, Conversation, Turn
from tests.support.killed_streams import CHAT, ReadStream, kill_model, long_greedy_chat, read_stream
from tests.support.service import ServiceProcess, running_service

CHAT_MODEL, OTHER_MODEL = "smollm2-135m-instruct", "gemma-3-270m"
TOKENS_RATIO, LATENCY_RATIO = 2.0, 1.5
#: The issue asks 90 % of killed greedy streams to equal the uninterrupted answer.
EQUAL_SHARE = 90.0
KILLED_STREAMS_PER_ROUND, KILLED_TOKENS = 3, 200


def _config(scratch: Path) -> Path:
    settings = load_settings()
    binary = configured_binary(settings)
    if binary is None:
        raise SystemExit("bench: no llama-server binary: run `make setup`")
    models: dict[str, dict[str, object]] = {}
    for model_id, shape in ((CHAT_MODEL, LONG_CONTEXT), (OTHER_MODEL, {"ctx_size": 1024, "parallel": 1})):
        model_path = settings.model_path(settings.models[model_id])
        if not model_path.is_file():
            raise SystemExit(f"bench: {model_path} missing: run `inference-service models pull {model_id}`")
        models[model_id] = {"runtime": "llamacpp", "path": str(model_path), **shape}
    # Each killed stream is a crash of the child within a minute of its start: more than the default 5 restarts.
    top_level = {"max_loaded_models": 1, "kv_cache_dir": str(scratch / "kv-continuity"), "restart_max_attempts": 100}
    return write_config(scratch / "continuity.toml", models, queue_size=16, binary=binary, top_level=top_level)


def _median(turns: list[Turn], field: str) -> float:
    return statistics.median(float(getattr(turn, field)) for turn in turns)


def continuity(rounds: int, scratch: Path) -> Result:
    turns: dict[str, list[Turn]] = {"warm": [], "unload": [], "swap": []}
    with (
        running_service(_config(scratch), scratch / "logs") as service,
        httpx.Client(base_url=service.url, timeout=TURN_TIMEOUT_S) as client,
    ):
        conversation = Conversation(CHAT_MODEL)
        cold = conversation.next_turn(client)
        for _ in range(rounds):
            turns["warm"].append(conversation.next_turn(client))
            client.post(f"/v1/models/{CHAT_MODEL}/unload").raise_for_status()
            client.post(f"/v1/models/{CHAT_MODEL}/load").raise_for_status()
            turns["unload"].append(conversation.next_turn(client))
            other = {"model": OTHER_MODEL, "messages": [{"role": "user", "content": "Hi."}], "max_tokens": 2}
            client.post("/v1/chat/completions", json=other).raise_for_status()  # SmolLM2 is evicted for it
            client.post(f"/v1/models/{CHAT_MODEL}/load").raise_for_status()
            turns["swap"].append(conversation.next_turn(client))
        killed = _killed_streams(service, KILLED_STREAMS_PER_ROUND * rounds)
    result = Result(
        "continuity",
        f"Next turn of a {cold.prompt_tokens}-token conversation: warm (direct) vs after its model was stopped "
        f"(routed), {rounds} rounds, medians",
    )
    warm_tokens, warm_ms = _median(turns["warm"], "prompt_n"), _median(turns["warm"], "seconds") * 1000
    for key, label in (("unload", "after unload + load"), ("swap", "after a swap (max_loaded_models = 1)")):
        tokens, ms = _median(turns[key], "prompt_n"), _median(turns[key], "seconds") * 1000
        result.rows += [
            Row(f"re-processed tokens, {label}", "tokens", warm_tokens, tokens, plot=True),
            Row(f"next-turn latency, {label}", "ms", warm_ms, ms, plot=True),
        ]
        result.targets += [
            Target(f"continuity: tokens {label} / warm", tokens / warm_tokens, "<=", TOKENS_RATIO, "x"),
            Target(f"continuity: latency {label} / warm", ms / warm_ms, "<=", LATENCY_RATIO, "x"),
        ]
    completed, equal = killed
    streams = KILLED_STREAMS_PER_ROUND * rounds
    result.rows += [
        Row("streams killed mid-answer: share completed without an error event", "%", None, completed * 100),
        Row("streams killed mid-answer: share equal to the uninterrupted answer", "%", None, equal * 100),
    ]
    result.targets += [
        Target("continuity: killed streams completed without an error event", completed * 100, ">=", 100, "%"),
        Target("continuity: killed streams equal to the uninterrupted answer", equal * 100, ">=", EQUAL_SHARE, "%"),
    ]
    result.notes = [
        f"the cold first turn (nothing kept) processed {cold.prompt_n} tokens in {cold.seconds * 1000:.0f} ms",
        f"{streams} greedy {KILLED_TOKENS}-token streams, each killed (SIGKILL of llama-server) at a random point",
    ]
    return result


def _killed_streams(service: ServiceProcess, streams: int) -> tuple[float, float]:
    """Greedy chat streams, each cut by a SIGKILL of the model's llama-server at a random token;
    the shares (0-1) completed without an error event, and equal to the uninterrupted answer."""
    body = long_greedy_chat(CHAT_MODEL, KILLED_TOKENS)
    reference = read_stream(service, CHAT, body).text
    rng = random.Random(25)
    completed = equal = 0
    for _ in range(streams):
        cut = rng.randint(1, KILLED_TOKENS - 10)

        def kill_there(read: ReadStream, received: int, cut: int = cut) -> None:
            if received == cut:
                kill_model(service, CHAT_MODEL)

        read = read_stream(service, CHAT, body, kill_there)
        done = [data for _, data in read.events].count("[DONE]") == 1
        completed += read.status == 200 and not read.errors and done
        equal += read.text == reference
    return completed / streams, equal / streams
