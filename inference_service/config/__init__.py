"""Settings and the model registry.

Everything a deployment can tune lives here, in one validated object. Sources, highest
priority first: keyword arguments (the CLI), ``INFERENCE_*`` environment variables, then
the TOML file (``--config``, ``INFERENCE_CONFIG`` or ``config.toml`` at the repo root).
Any problem becomes a :class:`ConfigError` carrying one line that names the key, so
start-up can fail cleanly instead of with a traceback.

The package: ``fields`` (types, reload classes, ConfigError), ``models`` (``[[models]]``), ``filters`` (a model's
request filters), ``keys`` (``[keys.*]``), ``tables`` (presets, runtimes, tracing), ``settings`` (``Settings``),
``loading`` (file to Settings).
"""

from __future__ import annotations

from inference_service.config.fields import (
    CACHE_DIR as CACHE_DIR,
)
from inference_service.config.fields import (
    DEFAULT_CONFIG_PATH as DEFAULT_CONFIG_PATH,
)
from inference_service.config.fields import (
    LIVE as LIVE,
)
from inference_service.config.fields import (
    MAX_LLAMACPP_SLOTS as MAX_LLAMACPP_SLOTS,
)
from inference_service.config.fields import (
    REPO_ROOT as REPO_ROOT,
)
from inference_service.config.fields import (
    RESTART as RESTART,
)
from inference_service.config.fields import (
    STARTUP as STARTUP,
)
from inference_service.config.fields import (
    Capability as Capability,
)
from inference_service.config.fields import (
    ConfigError as ConfigError,
)
from inference_service.config.fields import (
    OnReload as OnReload,
)
from inference_service.config.fields import (
    PoolingType as PoolingType,
)
from inference_service.config.fields import (
    Role as Role,
)
from inference_service.config.fields import (
    RuntimeKind as RuntimeKind,
)
from inference_service.config.fields import (
    on_reload as on_reload,
)
from inference_service.config.filters import (
    CAP_KEY as CAP_KEY,
)
from inference_service.config.filters import (
    RequestFilters as RequestFilters,
)
from inference_service.config.loading import (
    config_path_from_env as config_path_from_env,
)
from inference_service.config.loading import (
    load_settings as load_settings,
)
from inference_service.config.models import (
    ModelConfig as ModelConfig,
)
from inference_service.config.models import (
    ModelSource as ModelSource,
)
from inference_service.config.settings import (
    Settings as Settings,
)
from inference_service.config.tables import (
    LlamaCppRuntimeConfig as LlamaCppRuntimeConfig,
)
from inference_service.config.tables import (
    OllamaRuntimeConfig as OllamaRuntimeConfig,
)
from inference_service.config.tables import (
    PresetConfig as PresetConfig,
)
from inference_service.config.tables import (
    RemoteRuntimeConfig as RemoteRuntimeConfig,
)
from inference_service.config.tables import (
    RuntimesConfig as RuntimesConfig,
)
from inference_service.config.tables import (
    TracingConfig as TracingConfig,
)
