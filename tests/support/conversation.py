"""A long chat conversation, continued turn by turn, with llama-server's own account of each turn's prefill.

llama-server answers every completion with ``timings``: ``prompt_n`` is how many prompt
tokens it had to process, ``cache_n`` how many it found already in the slot. A turn whose
conversation prefix the slot holds processes only the new messages; the same turn after
the slot was lost processes the whole conversation again. So ``prompt_n`` is the robust
proof of a cache hit (latencies are for the bench).

The text is deterministic (seeded), plain words the tokenizer maps to about one token each.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import httpx

_STORY = (
    "the river keeps moving past the old mill while children play near the bridge and the baker "
    "opens his shop early every morning to sell bread to travellers who arrive from the hills"
)
_WORDS = _STORY.split(" ")


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "."


@dataclass(frozen=True)
class Turn:
    """One answered turn: the reply and llama-server's prefill counts for it."""

    reply: str
    prompt_n: int  # prompt tokens processed for this turn
    cache_n: int  # prompt tokens found in the slot's cache
    prompt_tokens: int  # the whole prompt
    seconds: float  # the response time, as the client saw it


@dataclass
class Conversation:
    """A chat history of about ``turns`` x 160 words (~2,000 tokens for 11 turns with SmolLM2)."""

    model: str
    turns: int = 11
    seed: int = 7
    messages: list[dict[str, str]] = field(default_factory=list)
    asked: int = 0

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self.messages = [{"role": "system", "content": "You are a patient assistant who answers briefly."}]
        for _ in range(self.turns):
            self.messages.append({"role": "user", "content": _sentence(rng, 120)})
            self.messages.append({"role": "assistant", "content": _sentence(rng, 40)})

    def next_turn(self, client: httpx.Client, max_tokens: int = 8, **options: Any) -> Turn:
        """Ask the next question, add the answer to the history (as a client would) and return the turn."""
        self.asked += 1
        self.messages.append({"role": "user", "content": f"Question {self.asked}: what comes next in the story?"})
        body: dict[str, Any] = {
            "model": self.model,
            "messages": self.messages,
            "max_tokens": max_tokens,
            "temperature": 0,
            **options,
        }
        response = client.post("/v1/chat/completions", json=body)
        response.raise_for_status()
        answer = response.json()
        reply = answer["choices"][0]["message"]["content"] or ""
        self.messages.append({"role": "assistant", "content": reply})
        timings = answer["timings"]
        return Turn(
            reply=reply,
            prompt_n=int(timings["prompt_n"]),
            cache_n=int(timings.get("cache_n", 0)),
            prompt_tokens=int(answer["usage"]["prompt_tokens"]),
            seconds=response.elapsed.total_seconds(),
        )


#: A ~2,000-token conversation needs a slot of 4,096 (prompt, replies and the turns the tests add).
LONG_CONTEXT = {"ctx_size": 4096, "parallel": 1}
#: Prefill of ~2,000 tokens on a contended 2-core machine: minutes, not seconds.
TURN_TIMEOUT_S = 600.0


def warm_turn(conversation: Conversation, client: httpx.Client) -> Turn:
    """A turn with the conversation's prefix in the slot: the one before it puts it there (cold only the first time)."""
    conversation.next_turn(client)
    return conversation.next_turn(client)


def assert_prefix_kept(warm: Turn, after: Turn) -> None:
    """The acceptance bound: the turn after a stop processes at most twice the warm turn's prompt tokens."""
    assert after.prompt_n <= 2 * warm.prompt_n, (
        f"after the stop {after.prompt_n} of {after.prompt_tokens} prompt tokens were processed again "
        f"(warm turn: {warm.prompt_n}): the conversation's prefix was not kept"
    )
