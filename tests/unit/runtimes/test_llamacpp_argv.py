"""The llama-server command line the supervisor spawns, flag by flag."""

from __future__ import annotations

from pathlib import Path

from inference_service.config import ModelConfig
from inference_service.runtimes.llamacpp import build_argv, device_environment, embedding_pooling
from tests.support.gguf import write_gguf

BINARY = Path("/opt/llama/bin/llama-server")
GGUF = Path("/models/qwen2.5-7b-instruct-q4_k_m.gguf")


def test_gpu_config_produces_the_exact_llama_server_flags() -> None:
    model = ModelConfig(
        id="qwen-7b",
        path=GGUF,
        ctx_size=8192,
        parallel=4,
        n_gpu_layers=35,
        main_gpu=1,
        tensor_split=[3, 1],
        flash_attn=True,
    )
    assert build_argv(BINARY, model, GGUF, 41001) == [
        "/opt/llama/bin/llama-server",
        "--model",
        "/models/qwen2.5-7b-instruct-q4_k_m.gguf",
        "--host",
        "127.0.0.1",
        "--port",
        "41001",
        "--alias",
        "qwen-7b",
        "--ctx-size",
        "8192",
        "--parallel",
        "4",
        "--metrics",
        "--slots",
        "--cache-ram",
        "256",
        "--n-gpu-layers",
        "35",
        "--main-gpu",
        "1",
        "--tensor-split",
        "3,1",
        "--flash-attn",
        "on",
    ]


def test_unset_gpu_options_add_no_flags() -> None:
    argv = build_argv(BINARY, ModelConfig(id="cpu", path=GGUF), GGUF, 41002)
    assert not {"--n-gpu-layers", "--main-gpu", "--tensor-split", "--flash-attn", "--embeddings"} & set(argv)


def test_prompt_cache_is_bounded_by_cache_ram_mb_and_0_disables_it() -> None:
    bounded = build_argv(BINARY, ModelConfig(id="cpu", path=GGUF, cache_ram_mb=64), GGUF, 41007)
    disabled = build_argv(BINARY, ModelConfig(id="cpu", path=GGUF, cache_ram_mb=0), GGUF, 41008)
    assert bounded[bounded.index("--cache-ram") + 1] == "64"
    assert disabled[disabled.index("--cache-ram") + 1] == "0"


def test_flash_attn_false_is_passed_as_off() -> None:
    argv = build_argv(BINARY, ModelConfig(id="cpu", path=GGUF, flash_attn=False), GGUF, 41003)
    assert argv[argv.index("--flash-attn") + 1] == "off"


def test_fractional_tensor_split_keeps_its_precision() -> None:
    argv = build_argv(BINARY, ModelConfig(id="split", path=GGUF, tensor_split=[0.6, 0.4]), GGUF, 41004)
    assert argv[argv.index("--tensor-split") + 1] == "0.6,0.4"


def test_embeddings_flag_and_extra_args_come_last_in_order() -> None:
    model = ModelConfig(id="embed", path=GGUF, embeddings=True, extra_args=["--pooling", "mean", "--threads", "2"])
    assert build_argv(BINARY, model, GGUF, 41005)[-5:] == ["--embeddings", "--pooling", "mean", "--threads", "2"]


def test_embeddings_pooling_is_passed_after_the_embeddings_flag() -> None:
    model = ModelConfig(id="embed", path=GGUF, embeddings=True)
    assert build_argv(BINARY, model, GGUF, 41006, pooling="mean")[-3:] == ["--embeddings", "--pooling", "mean"]


def test_configured_pooling_wins_over_the_gguf(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "cls.gguf", {"bert.pooling_type": 2})
    assert embedding_pooling(ModelConfig(id="embed", path=path, embeddings=True, pooling="last"), path) == "last"


def test_a_gguf_without_pooling_gets_mean(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "chat.gguf", {"llama.context_length": 2048})
    assert embedding_pooling(ModelConfig(id="embed", path=path, embeddings=True), path) == "mean"


def test_a_gguf_declaring_pooling_keeps_its_own(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "cls.gguf", {"bert.pooling_type": 2})
    assert embedding_pooling(ModelConfig(id="embed", path=path, embeddings=True), path) is None


def test_a_chat_model_gets_no_pooling(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "chat.gguf", {})
    assert embedding_pooling(ModelConfig(id="chat", path=path), path) is None


def test_a_pinned_replica_sees_only_its_gpus_and_makes_the_first_its_main_one() -> None:
    model = ModelConfig(id="qwen-7b", path=GGUF, n_gpu_layers=99, replicas=2, replica_devices=[[0], [2, 3]])
    second = model.replica(1)
    argv = build_argv(BINARY, second, GGUF, 41002)
    assert argv[argv.index("--main-gpu") + 1] == "0"
    assert device_environment(second) == {"CUDA_VISIBLE_DEVICES": "2,3"}
    assert device_environment(model.replica(0)) == {"CUDA_VISIBLE_DEVICES": "0"}


def test_replicas_without_devices_are_not_pinned() -> None:
    model = ModelConfig(id="qwen-7b", path=GGUF, replicas=2).replica(1)
    assert "--main-gpu" not in build_argv(BINARY, model, GGUF, 41002)
    assert device_environment(model) == {}
