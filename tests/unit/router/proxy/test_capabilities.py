"""What a model can do: derived from its runtime and config, overridable, and honoured by routing."""

from __future__ import annotations

from typing import Any

from inference_service.config import ModelConfig, Settings
from inference_service.router.proxy.resolution import ModelResolver
from inference_service.router.proxy.schemas import TaskType


def _model(**fields: Any) -> ModelConfig:
    return ModelConfig(**{"id": "m", "path": "m.gguf", **fields})


def test_a_llamacpp_model_chats_and_completes() -> None:
    assert _model().served_capabilities == ["chat", "completion"]


def test_embeddings_true_makes_an_embeddings_only_model() -> None:
    assert _model(embeddings=True).served_capabilities == ["embeddings"]
    assert _model(runtime="remote", url="http://h", embeddings=True).served_capabilities == ["embeddings"]


def test_rank_pooling_makes_a_reranker() -> None:
    assert _model(embeddings=True, pooling="rank").served_capabilities == ["rerank"]


def test_a_remote_model_is_not_refused_embeddings_only_its_server_knows_about() -> None:
    assert _model(runtime="remote", url="http://h").served_capabilities == ["chat", "completion", "embeddings"]


def test_configured_capabilities_override_the_derived_ones() -> None:
    assert _model(embeddings=True, capabilities=["chat", "embeddings"]).served_capabilities == ["chat", "embeddings"]


def _resolver(**models: dict[str, Any]) -> ModelResolver:
    tables = {model_id: {"path": f"{model_id}.gguf", **table} for model_id, table in models.items()}
    return ModelResolver(Settings(models=tables))  # type: ignore[arg-type]


def test_task_type_never_picks_an_embeddings_model_for_its_role() -> None:
    resolver = _resolver(
        chat={"roles": ["primary"]}, embed={"embeddings": True, "roles": ["fast"]}, small={"roles": ["fast"]}
    )
    assert resolver.for_task(None, TaskType.SIMPLE) == "small"


def test_an_embeddings_default_model_leaves_chat_to_the_first_chat_model() -> None:
    resolver = _resolver(embed={"embeddings": True}, chat={})
    assert resolver.for_task(None, TaskType.GENERAL) == "chat"
    assert resolver.for_task("embed", TaskType.GENERAL) == "embed"  # named explicitly: the route refuses it
