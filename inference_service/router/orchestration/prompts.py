"""The instructions each stage gets. Kept together so they can be tuned in one place."""

from __future__ import annotations

from typing import Any

Messages = list[dict[str, Any]]


def question_of(messages: Messages) -> str:
    """The last user message, which every stage is ultimately answering."""
    for message in reversed(messages):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return str(message["content"])
    return ""


def critique(messages: Messages, answer: str) -> Messages:
    return [
        {
            "role": "system",
            "content": "You are a strict reviewer. List the concrete problems in the answer "
            "(errors, omissions, unclear parts) and how to fix each. Be brief.",
        },
        {"role": "user", "content": f"Question:\n{question_of(messages)}\n\nAnswer to review:\n{answer}"},
    ]


def revise(messages: Messages, answer: str, review: str) -> Messages:
    return [
        *messages,
        {"role": "assistant", "content": answer},
        {"role": "user", "content": f"A reviewer said:\n{review}\n\nWrite the improved final answer only."},
    ]


def reconcile(messages: Messages, answers: list[tuple[str, str]], task: str) -> Messages:
    listed = "\n\n".join(f"Answer from {model}:\n{text}" for model, text in answers)
    return [
        *messages[:-1],
        {"role": "user", "content": f"{question_of(messages)}\n\nSeveral assistants answered:\n\n{listed}\n\n{task}"},
    ]


def refine(messages: Messages, draft: str) -> Messages:
    return [
        *messages,
        {"role": "assistant", "content": draft},
        {
            "role": "user",
            "content": "Improve this draft: fix mistakes and make it complete. Reply with the improved answer only.",
        },
    ]


def validate(messages: Messages, candidate: str) -> Messages:
    return [
        *messages,
        {"role": "assistant", "content": candidate},
        {
            "role": "user",
            "content": "Check the answer above for correctness and return the final, corrected answer only.",
        },
    ]
