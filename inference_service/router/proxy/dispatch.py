"""Send one request to one model: admission, on-demand loading, the upstream call, metrics.

Both the HTTP routes and the orchestration modes go through :class:`Dispatcher`, so
every upstream call - a client's or an orchestration stage's - is admitted, counted
and protected the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Collection
from typing import Any

from inference_service.config import Settings
from inference_service.events import MODEL_STATE
from inference_service.router.observability import activity, tracing
from inference_service.router.observability.metrics import Metrics
from inference_service.router.proxy.admission import AdmissionQueue, QueueFull, QueueTimeout, retry_after_s
from inference_service.router.proxy.affinity import affinity_of
from inference_service.router.proxy.filters import apply_filters
from inference_service.router.proxy.upstream import (
    ReplyTooLarge,
    UpstreamClient,
    UpstreamReply,
    UpstreamUnreachable,
)
from inference_service.router.proxy.upstream_stream import UpstreamStream
from inference_service.router.proxy.usage import usage_of
from inference_service.router.proxy.values import check_values
from inference_service.router.serving.errors import (
    APIError,
    map_supervisor_errors,
    not_found,
    service_unavailable,
    upstream_error,
    upstream_error_of,
)
from inference_service.router.tenancy import keys
from inference_service.router.tenancy.ledger import UsageLedger
from inference_service.runtimes.base import Endpoint
from inference_service.supervisor import Affinity, ModelState, Supervisor, UnknownModel

logger = logging.getLogger(__name__)

#: Refusals a fallback model may answer instead: the model failed, can never fit, or its queue is full.
FALLBACK_REASONS = frozenset({"model_unavailable", "insufficient_capacity", "queue_full"})
#: How long a runtime that dropped a call may take to be seen as down by the supervisor (its
#: process's exit is noticed within milliseconds); past it the retry goes out anyway - to a
#: runtime that only dropped the connection and still serves.
CRASH_NOTICE_S = 5.0
#: The model that took the current request (a fallback's id when one stepped in); the routes send it as a header.
served_model_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("served_model", default=None)
SERVED_MODEL_HEADER = "X-Inference-Model"


def served_model_headers() -> dict[str, str]:
    """``X-Inference-Model`` for the response of a request the dispatcher just admitted."""
    served = served_model_var.get()
    return {SERVED_MODEL_HEADER: served} if served else {}


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        supervisor: Supervisor,
        upstream: UpstreamClient,
        metrics: Metrics,
        ledger: UsageLedger | None = None,
    ) -> None:
        """``ledger``: where each call's usage is counted for its key (None: nowhere, for tests)."""
        self.supervisor = supervisor
        self.upstream = upstream
        self.metrics = metrics
        self.ledger = ledger
        supervisor.events.listen(metrics.observe_event)
        self.queues: dict[str, AdmissionQueue] = {}
        self.configure_queues(settings)

    def configure_queues(self, settings: Settings, restarting: Collection[str] = ()) -> None:
        """One admission queue per model; on a config reload, existing queues take the new limits
        at once (requests holding or awaiting a slot keep it) and removed models' queues go.
        Routing (runtimes, fallbacks), request filters and value bounds, the resume settings and which
        models prefill take the new config at once too.

        A ``restarting`` model's queue keeps its limits until the next call, once its new process
        serves: raised now, they would send waiting requests to the old process being drained.
        """
        self._runtimes = {model_id: model.runtime for model_id, model in settings.models.items()}
        self._replicated = any(model.replicas > 1 for model in settings.models.values())
        self.fallbacks = {model_id: settings.fallback_chain(model_id) for model_id in settings.models}
        self._filters = {model_id: model.filters for model_id, model in settings.models.items()}
        self._models, self._max_logprobs = settings.models, settings.max_logprobs
        self.resume_streams, self.resume_max_attempts = settings.resume_streams, settings.resume_max_attempts
        self.resume_replay_max_tokens = settings.resume_replay_max_tokens
        # llama-server continues a final assistant message unless told not to; other runtimes may not.
        self.prefilling = frozenset(
            model_id
            for model_id, model in settings.models.items()
            if model.runtime == "llamacpp" and "--no-prefill-assistant" not in model.extra_args
        )
        for model_id, model in settings.models.items():
            parallel = model.total_concurrency
            max_queue = model.queue_size if model.queue_size is not None else settings.queue_size
            timeout_s = model.queue_timeout_s or settings.queue_timeout_s
            queue = self.queues.get(model_id)
            if queue is None:
                self.queues[model_id] = AdmissionQueue(parallel=parallel, max_queue=max_queue, timeout_s=timeout_s)
            elif model_id not in restarting:
                queue.configure(parallel, max_queue, timeout_s)
        for model_id in set(self.queues) - set(settings.models):
            del self.queues[model_id]

    async def _admit(
        self, stack: contextlib.AsyncExitStack, model_id: str, path: str, body: dict[str, Any], priority: int
    ) -> tuple[str, Endpoint]:
        """Admit the request to ``model_id`` or, if that model cannot take it, to its first fallback that can.

        A fallback steps in only when the model itself refuses - it is ``failed``, can never
        fit (507), or its queue is full - never for the client's own errors (4xx) and never
        once an upstream has answered; and only a model the request's key may use.
        Every call - any API's, an orchestration stage's - has its values checked here, against
        the model that would serve it, before it is admitted (see values.py): 400 ``invalid_value``.
        Returns the id of the model that took the request.
        """
        affinity = affinity_of(body) if self._replicated else None  # the replica of a model that has several
        first_refusal: APIError | None = None
        tenant = keys.current()
        priority = min(priority, tenant.max_priority)  # what the client asks, up to what its key allows
        fallbacks = self.fallbacks.get(model_id, ())
        if tenant.models is not None:
            fallbacks = [fallback for fallback in fallbacks if tenant.may_use(fallback)]
        for candidate in (model_id, *fallbacks):
            attempt = contextlib.AsyncExitStack()
            try:
                if (model := self._models.get(candidate)) is not None:  # a removed one: _admit_one's 404
                    check_values(model, path, body, self._max_logprobs)
                with map_supervisor_errors():
                    endpoint = await self._admit_one(attempt, candidate, priority, tenant, affinity)
            except APIError as error:
                await attempt.aclose()
                if error.code not in FALLBACK_REASONS:
                    raise
                first_refusal = first_refusal or error
                logger.info("model %s refused (%s); trying its fallbacks", candidate, error.code)
                continue
            except BaseException:  # cancelled (a hang-up, a cancel request): give back lease and slot now, not at GC
                await attempt.aclose()
                raise
            await stack.enter_async_context(attempt)
            if candidate != model_id:
                assert first_refusal is not None
                self.metrics.fallbacks.labels(model_id, candidate, first_refusal.code).inc()
            served_model_var.set(candidate)
            return candidate, endpoint
        assert first_refusal is not None
        raise first_refusal

    async def _admit_one(
        self,
        stack: contextlib.AsyncExitStack,
        model_id: str,
        priority: int,
        tenant: keys.Tenant,
        affinity: Affinity | None = None,
    ) -> Endpoint:
        """Claim the model, wait for a slot, then for the model to be ready; a full queue or a timeout
        becomes an API error (the supervisor's refusals pass on, for :func:`map_supervisor_errors`).

        The lease comes first, so a request still queued for a slot already counts as
        demand for its model (it is not evicted from under its queue). Waiting for a slot
        and for the model (a load, or capacity held by other models) share one deadline:
        the model's ``queue_timeout_s``. ``tenant``: the key the request acts for - which models it
        may use, and its share of a busy model against other keys' requests.
        """
        keys.check_model(model_id, tenant)  # before the lease: a model the key may not use is never woken
        queue = self.queues.get(model_id)
        if queue is None:  # removed by a config reload after the request was resolved
            raise not_found(f"The model '{model_id}' does not exist")
        deadline = time.monotonic() + queue.timeout_s
        lease = await stack.enter_async_context(self.supervisor.lease(model_id, priority, affinity))
        depth = self.metrics.queue_depth.labels(model_id)
        depth.inc()
        try:
            with tracing.admission(model_id, priority, queue.waiting):
                await stack.enter_async_context(
                    queue.slot(priority, deadline - time.monotonic(), tenant.name, tenant.weight)
                )
            endpoint = lease.ready_now()
            if endpoint is None:
                with tracing.model_loads(self.supervisor, [model_id]):
                    endpoint = await asyncio.wait_for(lease.ready(), max(deadline - time.monotonic(), 0.0))
        except QueueFull as error:
            self.metrics.rejected.labels(model_id, "queue_full").inc()
            raise service_unavailable(
                f"model {model_id!r} is busy: {error}", "queue_full", self._retry_after(model_id)
            ) from None
        except (QueueTimeout, TimeoutError):
            self.metrics.rejected.labels(model_id, "queue_timeout").inc()
            message = (
                f"model {model_id!r} is busy: waited {queue.timeout_s:g}s for a slot and the model (queue_timeout_s)"
            )
            raise service_unavailable(message, "queue_timeout", self._retry_after(model_id)) from None
        finally:
            depth.dec()
        if lease.replica is not None:  # known once served: a queued request may have moved to another replica
            self.metrics.replica_requests.labels(model_id, str(lease.replica)).inc()
        in_flight = self.metrics.in_flight.labels(model_id)
        in_flight.inc()
        stack.callback(in_flight.dec)
        stack.callback(queue.observe_service, time.monotonic())
        if self.ledger is not None:
            stack.enter_context(self.ledger.call(model_id))
        return endpoint

    @contextlib.asynccontextmanager
    async def admitted(self, model_id: str, priority: int = 2) -> AsyncIterator[Endpoint]:
        """Hold an admitted slot of exactly ``model_id`` (no fallback): for a call the caller makes itself
        (the ``/upstream`` pass-through), so it waits its turn and counts as in flight like any other."""
        async with contextlib.AsyncExitStack() as stack:
            with map_supervisor_errors():
                endpoint = await self._admit_one(stack, model_id, priority, keys.current())
            yield endpoint

    def _upstream_call(
        self, model_id: str, endpoint: Endpoint, path: str, body: dict[str, Any]
    ) -> tuple[dict[str, Any], tracing.CallHandle]:
        """The body as ``model_id``'s runtime gets it - its own name for the model, its filters applied -
        and the call's span. What the filters changed is noted on the span and the request's activity
        record (access line, ``request`` event). A model removed by a reload meanwhile has none."""
        upstream = {**body, "model": endpoint.model_name}
        filters = self._filters.get(model_id)
        changed = apply_filters(filters, path, upstream).describe() if filters is not None else []
        if changed and (record := activity.current()) is not None:
            record.add_filtered(model_id, changed)
        runtime = self._runtimes.get(model_id, "unknown")
        return upstream, tracing.upstream_call(model_id, runtime, endpoint, path, upstream, changed)

    def _retry_after(self, model_id: str) -> int:
        """Retry-After for a refused request: see :func:`retry_after_s` for the formula."""
        queue = self.queues[model_id]
        status = self.supervisor.status(model_id)
        loading_s = 0.0 if status.state == ModelState.LOADED else (status.last_load_s or queue.default_load_s)
        return retry_after_s(
            queue.waiting + queue.active, queue.parallel or max(queue.active, 1), queue.service_s, loading_s
        )

    async def post(
        self, model_id: str, path: str, body: dict[str, Any], priority: int = 2, request_id: str | None = None
    ) -> UpstreamReply:
        """A non-streaming call; upstream error statuses are returned, not raised.

        A runtime that died before answering gets the call once more (``resume_streams``):
        generation is stateless, so the restarted model - or a fallback, if it is given up -
        answers it afresh, and the client sees one answer.
        """
        try:
            return await self._post_once(model_id, path, body, priority, request_id)
        except _DiedBeforeAnswering as died:
            if not self.resume_streams or self.resume_max_attempts < 1:
                raise died.error from None
            if not await self.until_replaced(died.model_id, died.endpoint):
                raise died.error from None
            logger.warning("%s; sending the call again", died.error.message)
            try:
                reply = await self._post_once(model_id, path, body, priority, request_id)
            except (_DiedBeforeAnswering, APIError) as failure:  # died again, or nothing could take it
                self.metrics.stream_resumes.labels(model_id, "failed").inc()
                raise (failure.error if isinstance(failure, _DiedBeforeAnswering) else failure) from None
            self.metrics.stream_resumes.labels(model_id, "resumed").inc()
            activity.note(resumes=1)
            return reply

    async def _post_once(
        self, model_id: str, path: str, body: dict[str, Any], priority: int, request_id: str | None
    ) -> UpstreamReply:
        async with contextlib.AsyncExitStack() as stack:
            model_id, endpoint = await self._admit(stack, model_id, path, body, priority)
            upstream, call = self._upstream_call(model_id, endpoint, path, body)
            with call:
                try:
                    reply = await self.upstream.post(endpoint, path, upstream, request_id)
                except UpstreamUnreachable as error:
                    raise _DiedBeforeAnswering(_did_not_answer(model_id, error), model_id, endpoint) from None
                except ReplyTooLarge as error:
                    message = (
                        f"model {model_id!r} answered too much: {error}; ask for less (tokens, logprobs) or stream it"
                    )
                    raise APIError(502, message, type="upstream_error", code="reply_too_large") from None
                call.replied(reply.status, reply.body)
        if reply.status == 200:
            self.record_usage(model_id, usage_of(reply.body))  # not reply.json(): see usage.py
        else:
            self.call_failed(model_id)
        return reply

    async def until_replaced(self, model_id: str, endpoint: Endpoint) -> bool:
        """Wait until the supervisor no longer hands out ``endpoint``, a runtime that dropped a call.

        False at once if the supervisor stopped that runtime on purpose (a drain the call outlasted):
        a retry would load again what the stop took away. Else the router may see the drop before the
        supervisor sees the exit, and a retry sent meanwhile would go to the dead port; once the model
        restarts (or fails) the retry's admission waits for it or a fallback. Bounded by CRASH_NOTICE_S.
        """
        if self._stopped_at(model_id, endpoint):
            return False
        if not self._serves_at(model_id, endpoint):
            return True
        subscription = self.supervisor.events.subscribe(models=[model_id], types=[MODEL_STATE])
        try:
            async with asyncio.timeout(CRASH_NOTICE_S):
                while self._serves_at(model_id, endpoint):
                    await subscription.next()
        except TimeoutError:
            logger.info("model %s still serves at %s: retrying there", model_id, endpoint.base_url)
        finally:
            self.supervisor.events.unsubscribe(subscription)
        return True

    def _stopped_at(self, model_id: str, endpoint: Endpoint) -> bool:
        try:
            return self.supervisor.stopped_at(model_id, endpoint)
        except UnknownModel:  # removed by a reload: stopped on purpose
            return True

    def _serves_at(self, model_id: str, endpoint: Endpoint) -> bool:
        """Whether a replica of ``model_id`` still serves at ``endpoint`` (a model removed meanwhile does not)."""
        try:
            return self.supervisor.serves_at(model_id, endpoint)
        except UnknownModel:
            return False

    def call_failed(self, model_id: str) -> None:
        """A call that ended badly without an exception through its admission (an error status; a
        stream that broke mid-way): an error in the key's ledger."""
        if self.ledger is not None:
            self.ledger.failed(model_id)

    def record_usage(self, model_id: str, usage: object) -> None:
        """A runtime's reported ``usage`` of one call: the metrics, and the key's ledger."""
        prompt, completion = self.metrics.record_usage(model_id, usage)
        if self.ledger is not None and (prompt or completion):
            self.ledger.tokens(model_id, prompt, completion)

    async def complete(
        self, model_id: str, path: str, body: dict[str, Any], priority: int = 2, request_id: str | None = None
    ) -> dict[str, Any]:
        """A non-streaming call whose JSON answer is needed; any upstream error is raised as APIError."""
        reply = await self.post(model_id, path, body, priority, request_id)
        try:
            payload = reply.json()
        except ValueError:
            raise APIError(502, f"model {model_id!r} returned a non-JSON body", type="upstream_error") from None
        if reply.status != 200:
            raise upstream_error(reply.status, payload)
        if not isinstance(payload, dict):
            raise APIError(502, f"model {model_id!r} returned JSON that is not an object", type="upstream_error")
        return payload

    async def open_stream(
        self, model_id: str, path: str, body: dict[str, Any], priority: int = 2, request_id: str | None = None
    ) -> UpstreamStream:
        """Start a streaming call. Errors before the first byte raise APIError; the returned
        stream holds the admission slot and the model's lease until it is closed (``async with``)."""
        stack = contextlib.AsyncExitStack()
        try:
            model_id, endpoint = await self._admit(stack, model_id, path, body, priority)
            upstream, call = self._upstream_call(model_id, endpoint, path, body)
            stack.callback(call.end)  # the CLIENT span lasts as long as the stream
            with call.current():
                try:
                    response = await self.upstream.open_stream(endpoint, path, upstream, request_id)
                except UpstreamUnreachable as error:
                    raise _did_not_answer(model_id, error) from None
                stack.callback(response.close)
                call.replied(response.status)
                if response.status != 200:
                    raise upstream_error_of(response.status, await self.upstream.error_body(response))
        except BaseException as error:  # passed on, so the key's ledger counts an error, as post() does
            await stack.__aexit__(type(error), error, error.__traceback__)
            raise
        runtime = self._runtimes.get(model_id, "unknown")
        return UpstreamStream(model_id, runtime, endpoint, response, stack, self.metrics, call, self)


def _did_not_answer(model_id: str, error: UpstreamUnreachable) -> APIError:
    """The 503 for a call whose runtime could not be reached or dropped it before answering."""
    return service_unavailable(f"model {model_id!r} did not answer: {error}", "upstream_unavailable", 1)


class _DiedBeforeAnswering(Exception):
    """A non-streamed call's runtime dropped it: the 503 to answer, unless a retry answers instead."""

    def __init__(self, error: APIError, model_id: str, endpoint: Endpoint) -> None:
        super().__init__(error.message)
        self.error, self.model_id, self.endpoint = error, model_id, endpoint
