"""Which configured model a request means: ids, aliases, gateway prefixes, roles."""

from __future__ import annotations

from inference_service.config import Settings
from inference_service.router.proxy.schemas import ROLE_FOR_TASK, TaskType
from inference_service.router.serving.errors import APIError, not_found
from inference_service.router.tenancy import keys


class ModelResolver:
    def __init__(self, settings: Settings) -> None:
        self._prefixes = tuple(settings.model_prefixes)
        self._names: dict[str, str] = {}
        for model in settings.models.values():
            self._names[model.id] = model.id
            for alias in model.aliases:
                self._names[alias] = model.id
        self._roles = {model_id: list(model.roles) for model_id, model in settings.models.items()}
        self._chat = [model_id for model_id, model in settings.models.items() if "chat" in model.served_capabilities]
        self._default = self._names.get(settings.default_model or "") or next(iter(settings.models), None)

    @property
    def default(self) -> str | None:
        return self._default

    def resolve(self, name: str | None) -> str:
        """Canonical id for ``name``; a missing name means the configured default model."""
        if name is None or name == "":
            if self._default is None:
                raise APIError(400, "no model given and no default_model configured", param="model")
            return self._default
        bare = name
        for prefix in self._prefixes:
            if bare.startswith(prefix):
                bare = bare[len(prefix) :]
                break
        try:
            return self._names[bare]
        except KeyError:
            available = ", ".join(filter(keys.current().may_use, self._roles))  # never the models of other keys
            raise not_found(f"The model '{name}' does not exist. Available: {available}") from None

    def usable(self, name: str, task_type: TaskType = TaskType.GENERAL) -> str:
        """The id of the model ``name`` means (:meth:`for_task`), if the request's key may use it.

        The one resolution of every route that names a model for the key (the model and log
        endpoints, ``/v1/events``, Ollama's): the same 404 ``model_not_found`` for a name nobody
        configured, the same 403 ``permission_denied`` for a model outside the key's ``models`` -
        each in its API's envelope, which the exception handler chooses by path.
        """
        model_id = self.for_task(name, task_type)
        keys.check_model(model_id)
        return model_id

    def is_default_request(self, name: str | None) -> bool:
        """True when the client did not pick a specific model (nothing, or the default)."""
        return name in (None, "") or self.resolve(name) == self._default

    def with_role(self, role: str) -> list[str]:
        return [model_id for model_id, roles in self._roles.items() if role in roles]

    def chat_capable(self, model_ids: list[str]) -> list[str]:
        return [model_id for model_id in model_ids if model_id in self._chat]

    def for_task(self, requested: str | None, task_type: TaskType) -> str:
        """The requested model, or - when the client left the choice to us - a chat model whose
        role fits the task, else the default if it chats, else the first chat model."""
        model_id = self.resolve(requested)
        if task_type != TaskType.GENERAL and self.is_default_request(requested):
            candidates = self.chat_capable(self.with_role(ROLE_FOR_TASK[task_type]))
            if candidates and model_id not in candidates:
                return candidates[0]
        if requested in (None, "") and model_id not in self._chat and self._chat:
            return self._chat[0]  # no model named and the default cannot chat
        return model_id
