"""The local API's routes on Starlette, and how a reply travels from a model host to a client.

Routes (each also without the ``/v1`` prefix, as llama-server and LM Studio answer them):
``GET /v1/models[/{id}]``, ``POST /v1/chat/completions``, ``/v1/completions``,
``/v1/messages`` (Anthropic), ``/v1/messages/count_tokens``, ``/v1/responses`` (OpenAI
Responses, stateless), ``/v1/embeddings``, plus ``GET /health`` and llama-server's
``GET /props``. Errors are JSON in the
API's own shape (OpenAI's everywhere, Anthropic's under ``/messages``), 404 and 405 included.

A reply: the route validates the body (``schemas.py`` through the API's mapping module),
resolves the model and returns a :class:`ReplyResponse`. That takes a turn on the model's
``FairQueue`` and iterates the engine's blocking event stream on a worker thread
(:class:`ReplyPump`), which hands each event to the event loop; the response awaits the first
event before the status line, so refusals (prompt too long, model gone) are real 4xx/503s,
then writes the reply whole or as server-sent events through the API's ``Renderer``. While
it runs, a task watches the connection: a client that leaves (while queued or mid-reply)
has its reply cancelled, and the worker drains it, so the host is ready for the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from launcher.engine.events import HostCrashed, ReplyFinished
from launcher.errors import EngineError, ModelBusyError, ModelLoadError, ModelUnavailableError
from launcher.server import anthropic_api as an
from launcher.server import openai_api as oa
from launcher.server import responses_api as ra
from launcher.server.errors import ApiError, context_error, unloaded_error
from launcher.server.reply import GenRequest, Renderer
from launcher.server.schemas import parse_json

if TYPE_CHECKING:
    from launcher.server.hosting import ApiHost
    from launcher.server.pool import SharedModel, TurnStream

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 32 * 2**20
API_SOURCE_PREFIX = "api:"
#: Names the idle models unloaded to make room for the one a request loaded on demand.
EVICTED_HEADER = "X-Spark-Unloaded-Models"
# A parsed request: the engine's request and the renderer for the chosen model's name.
Parsed = tuple[GenRequest, Callable[[str], Renderer]]


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, headers=headers)


# ---------------------------------------------------------------------- the reply pump
class _Raised:
    """The worker's exception, carried to the event loop."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = object()


class ReplyPump:
    """Runs one ``TurnStream`` on a worker thread: waits for the turn (leaving the queue when
    the client leaves or the server stops), iterates the engine's events and hands each to the
    event loop. ``cancel()`` (from the loop) stops the reply; the worker drains it."""

    def __init__(self, api: ApiHost, model: SharedModel, stream: TurnStream) -> None:
        self.api = api
        self.model = model
        self.stream = stream
        self.gone = False  # the client left
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._thread = threading.Thread(target=self._run, name="local-api-reply", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self.gone = True
        self.stream.cancel()

    def _put(self, item: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: the server stopped
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def _run(self) -> None:
        stream = self.stream
        try:
            while not self.model.queue.wait(stream.ticket, timeout=0.25):
                if self.api.stopping or self.gone:
                    stream.cancel()
            if self.api.stopping:
                stream.cancel()
            for event in stream:
                self._put(event)
        except BaseException as exc:
            self._put(_Raised(exc))
        finally:
            stream.close()
            self._put(_END)

    async def next(self) -> Any:
        """The next event; ``None`` once the stream ended; raises what the worker raised."""
        item = await self._queue.get()
        if item is _END:
            self._queue.put_nowait(_END)  # every later call sees the end too
            return None
        if isinstance(item, _Raised):
            raise item.exc
        return item


class ReplyResponse(Response):
    """A generated reply as an ASGI response: whole JSON or a server-sent event stream."""

    def __init__(
        self,
        api: ApiHost,
        rid: int,
        gen: GenRequest,
        model: SharedModel,
        renderer: Renderer,
        source: str,
    ) -> None:
        self.api = api
        self.rid = rid
        self.gen = gen
        self.model = model
        self.renderer = renderer
        self.source = source
        self.background = None
        self._started = False  # the status line went out
        #: Idle models unloaded to make room for this one (loaded on demand): said in a header.
        self.evicted: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._scope = scope
        try:
            if self.gen.kind == "chat":
                stream = self.model.chat(self.gen.messages, self.gen.sampling, source=self.source)
            else:
                stream = self.model.complete(self.gen.prompt, self.gen.sampling, source=self.source)
        except ModelBusyError as exc:
            err = ApiError(
                503,
                str(exc),
                type="server_error",
                code="model_busy",
                headers={"Retry-After": str(exc.retry_after_s)},
            )
            await self._send_error(send, err)
            return
        except ModelUnavailableError as exc:
            err = ApiError(503, str(exc), type="server_error", code="model_not_loaded")
            await self._send_error(send, err)
            return
        pump = ReplyPump(self.api, self.model, stream)
        pump.start()
        finished = False

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    if not finished:
                        pump.cancel()
                    return

        watcher = asyncio.create_task(watch())
        try:
            try:
                first = await self._first_event(pump)
            except ApiError as err:
                await self._send_error(send, err)
                return
            if stream.ticket.cancelled and not stream.started:
                self.api.log.update(
                    self.rid, status=499, error="The client left while waiting.", finished=True
                )
                return
            if self.gen.stream:
                await self._stream(send, pump, first)
            else:
                await self._whole(send, pump, first)
        except Exception as exc:  # a bug must cost one request, never the server
            log.exception("local API reply failed")
            pump.cancel()
            failure = ApiError(
                500, f"Internal error: {type(exc).__name__}: {exc}", type="server_error"
            )
            with contextlib.suppress(Exception):
                if self._started:
                    self.api.log.update(self.rid, status=500, error=failure.message, finished=True)
                    body = self.renderer.stream_error(failure)
                    await send({"type": "http.response.body", "body": body, "more_body": False})
                else:
                    await self._send_error(send, failure)
        finally:
            finished = True
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            while True:  # the worker drains a cancelled reply
                try:
                    if await pump.next() is None:
                        break
                except Exception:
                    continue

    # ------------------------------------------------------------------ pieces
    async def _first_event(self, pump: ReplyPump) -> Any:
        try:
            first = await pump.next()
        except ModelUnavailableError as exc:
            raise ApiError(503, str(exc), type="server_error", code="model_not_loaded") from exc
        except EngineError as exc:
            # Refused by the engine before any token: the prompt does not fit, and the like.
            raise context_error(str(exc)) from exc
        if first is None:
            raise unloaded_error()
        if isinstance(first, HostCrashed):
            raise ApiError(500, str(first.as_error()), type="server_error", code="model_crashed")
        return first

    async def _send_error(self, send: Send, err: ApiError) -> None:
        self._started = True
        self.api.log.update(self.rid, status=err.status, error=err.message, finished=True)
        await _json(err.status, self.renderer.error_body(err), err.headers)(
            self._scope, _no_receive, send
        )

    async def _events(self, pump: ReplyPump, first: Any) -> Any:
        yield first
        while (event := await pump.next()) is not None:
            yield event

    async def _whole(self, send: Send, pump: ReplyPump, first: Any) -> None:
        async for event in self._events(pump, first):
            if isinstance(event, ReplyFinished):
                if pump.gone:
                    self._finished(event, gone=True)
                    return
                if event.metrics.stop_reason == "cancelled":  # unloaded, or the server stops
                    await self._send_error(send, self._interrupted_error())
                    return
                self._finished(event, gone=False)
                self._started = True
                await _json(200, self.renderer.whole(event), self._evicted_headers())(
                    self._scope, _no_receive, send
                )
                return
            if isinstance(event, HostCrashed):
                err = ApiError(
                    500, str(event.as_error()), type="server_error", code="model_crashed"
                )
                await self._send_error(send, err)
                return
        await self._send_error(send, unloaded_error())  # the model was unloaded under it

    async def _stream(self, send: Send, pump: ReplyPump, first: Any) -> None:
        self._started = True
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"no-cache"),
                    (b"x-accel-buffering", b"no"),
                    *((k.lower().encode(), v.encode()) for k, v in self._evicted_headers().items()),
                ],
            }
        )
        self.api.log.update(self.rid, status=200)

        async def write(data: bytes, more: bool = True) -> None:
            if data or not more:
                await send({"type": "http.response.body", "body": data, "more_body": more})

        render = self.renderer
        await write(render.stream_start())
        async for event in self._events(pump, first):
            if isinstance(event, ReplyFinished):
                if event.metrics.stop_reason == "cancelled" and not pump.gone:
                    err = self._interrupted_error()  # unloaded, or the server stops
                    self.api.log.update(self.rid, status=503, error=err.message, finished=True)
                    await write(render.stream_error(err), more=False)
                    return
                self._finished(event, gone=pump.gone)
                await write(render.stream_end(event), more=False)
                return
            if isinstance(event, HostCrashed):
                message = str(event.as_error())
                self.api.log.update(self.rid, status=500, error=message, finished=True)
                err = ApiError(500, message, type="server_error", code="model_crashed")
                await write(render.stream_error(err), more=False)
                return
            if not pump.gone:
                await write(render.stream_event(event))
        err = unloaded_error()
        self.api.log.update(self.rid, status=503, error=err.message, finished=True)
        await write(render.stream_error(err), more=False)

    def _evicted_headers(self) -> dict[str, str]:
        return {EVICTED_HEADER: ", ".join(self.evicted)} if self.evicted else {}

    def _interrupted_error(self) -> ApiError:
        """A reply cancelled on this side: the server is stopping, or the model went away."""
        if self.api.stopping:
            return ApiError(
                503,
                "The local API server is stopping; the reply was cut short. Try again when "
                "it is back on.",
                type="server_error",
                code="server_stopping",
            )
        return unloaded_error()

    def _finished(self, event: ReplyFinished, gone: bool) -> None:
        m = event.metrics
        reply = " ".join(event.text.split())
        if not reply and event.tool_calls:
            reply = ", ".join(f"{c.name}({c.arguments})" for c in event.tool_calls)
        self.api.log.update(
            self.rid,
            status=499 if gone else 200,
            reply=reply if len(reply) <= 200 else reply[:199] + "…",
            prompt_tokens=m.prompt_tokens + m.cached_tokens,
            completion_tokens=m.generated_tokens,
            finish_reason=m.stop_reason,
            ttft_s=m.ttft_s,
            decode_tokens_per_s=m.decode_tokens_per_s,
            error="The client disconnected; generation was stopped." if gone else "",
            finished=True,
        )


async def _no_receive() -> Any:  # a JSON response never reads the request
    raise RuntimeError("not used")


# ---------------------------------------------------------------------- routes
_PREFIX = re.compile(r"^/v1(?=/)")


def _route_path(request: Request) -> str:
    return str(request.url.path).rstrip("/") or "/"


def build_app(api: ApiHost) -> Starlette:
    """The Starlette application serving ``api``'s registry."""
    recorder = api.recorder  # opt-in recording of chat requests (off by default)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise ApiError(400, "Content-Length is not a number.")
            if int(declared) > MAX_BODY_BYTES:
                raise ApiError(413, f"The request body is larger than {MAX_BODY_BYTES} bytes.")
        body = bytearray()
        async for piece in request.stream():  # chunked bodies arrive in pieces
            body += piece
            if len(body) > MAX_BODY_BYTES:
                raise ApiError(413, f"The request body is larger than {MAX_BODY_BYTES} bytes.")
        return bytes(body)

    def check_auth(request: Request, anthropic: bool) -> None:
        if api.authorized(request.headers.get("authorization"), request.headers.get("x-api-key")):
            return
        how = "'x-api-key: KEY'" if anthropic else "'Authorization: Bearer KEY'"
        raise ApiError(
            401,
            f"Incorrect or missing API key. Send {how} with the key set in Spark Launcher "
            "(serve --api-key).",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )

    def refuse(rid: int, err: ApiError, anthropic: bool) -> Response:
        api.log.update(rid, status=err.status, error=err.message, finished=True)
        body = err.anthropic_body() if anthropic else err.body()
        return _json(err.status, body, err.headers)

    def failed(rid: int, exc: Exception, anthropic: bool) -> Response:
        log.exception("local API request failed")
        message = f"Internal error: {type(exc).__name__}: {exc}"
        return refuse(rid, ApiError(500, message, type="server_error"), anthropic)

    def generation(
        parse: Callable[[Any], Parsed], anthropic: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            rid = api.log.start(_client(request), request.method, _route_path(request))
            try:
                raw = await read_body(request)
                check_auth(request, anthropic)
                gen, make_renderer = parse(parse_json(raw))
                model, evicted = await resolve_loading(gen.model)
                api.log.update(rid, model=model.name, stream=gen.stream, prompt=gen.preview())
                recorder.record(_route_path(request), gen, model.name)
            except ApiError as err:
                return refuse(rid, err, anthropic)
            except Exception as exc:  # a bug must cost one request, never the server
                return failed(rid, exc, anthropic)
            source = API_SOURCE_PREFIX + _client(request)
            response = ReplyResponse(api, rid, gen, model, make_renderer(model.name), source)
            response.evicted = evicted
            return response

        return endpoint

    def simple(
        handler: Callable[[Request], Any], *, auth: bool = True, anthropic: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            rid = api.log.start(_client(request), request.method, _route_path(request))
            try:
                if auth:
                    check_auth(request, anthropic)
                result = handler(request)
                if isinstance(result, Awaitable):
                    result = await result
            except ApiError as err:
                return refuse(rid, err, anthropic)
            except Exception as exc:  # a bug must cost one request, never the server
                return failed(rid, exc, anthropic)
            api.log.update(rid, status=200, finished=True)
            return _json(200, result)

        return endpoint

    async def resolve(name: str | None) -> SharedModel:
        return (await resolve_loading(name))[0]

    async def resolve_loading(name: str | None) -> tuple[SharedModel, list[str]]:
        """The model a request names, and the idle models unloaded to make room for it: a
        library model not loaded yet is loaded first when the server loads on demand (in a
        worker thread: loading takes seconds)."""
        on_demand = api.registry.on_demand
        if (
            name
            and on_demand is not None
            and api.registry.get(name) is None
            and await anyio.to_thread.run_sync(lambda: on_demand.knows(name))
        ):
            try:
                model, evicted = await anyio.to_thread.run_sync(lambda: on_demand.get(name))
            except (EngineError, ModelLoadError) as exc:  # does not fit; the file, memory...
                code = (
                    "model_does_not_fit"
                    if isinstance(exc, ModelUnavailableError)
                    else "model_load_failed"
                )
                raise ApiError(503, str(exc), type="server_error", code=code) from exc
            return model, evicted
        return api.resolve_model(name), []

    def models(request: Request) -> Any:
        return oa.model_list(
            [oa.model_entry(m.name, m.created, m.loaded) for m in api.registry.models()]
        )

    def one_model(request: Request) -> Any:
        model = api.registry.get(request.path_params["name"])
        if model is None:
            raise ApiError(404, "No such model is loaded.", code="model_not_found")
        return oa.model_entry(model.name, model.created, model.loaded)

    def health(request: Request) -> Any:
        return {"status": "ok"}

    def props(request: Request) -> Any:
        """llama-server's ``/props`` (agents read the context size there): one model's."""
        model = api.resolve_model(request.query_params.get("model"))
        loaded = model.loaded
        return {
            "model_alias": model.name,
            "model_path": getattr(loaded, "path", ""),
            "default_generation_settings": {"n_ctx": getattr(loaded, "n_ctx", None)},
            "total_slots": getattr(loaded, "n_parallel", 1),
            "chat_template": getattr(loaded, "chat_template", None) or "",
            "modalities": {"vision": False, "audio": False},
        }

    async def embeddings(request: Request) -> Any:
        name, texts, fmt = oa.parse_embeddings(parse_json(await read_body(request)))
        model = await resolve(name)
        source = API_SOURCE_PREFIX + _client(request)
        try:
            result = await anyio.to_thread.run_sync(lambda: model.embed(texts, source=source))
        except ModelBusyError as exc:
            raise ApiError(
                503,
                str(exc),
                type="server_error",
                code="model_busy",
                headers={"Retry-After": str(exc.retry_after_s)},
            ) from exc
        except ModelUnavailableError as exc:
            raise ApiError(503, str(exc), type="server_error", code="model_not_loaded") from exc
        except EngineError as exc:
            raise context_error(str(exc)) from exc
        return oa.embeddings_response(model.name, result.vectors, result.prompt_tokens, fmt)

    async def count_tokens(request: Request) -> Any:
        return await an.count_tokens(api, request, read_body, _client(request))

    def parse_chat(body: Any) -> Parsed:
        gen, options = oa.parse_chat(body)
        return gen, lambda name: oa.OpenAIRenderer(options, name)

    def parse_completion(body: Any) -> Parsed:
        gen, options = oa.parse_completion(body)
        return gen, lambda name: oa.OpenAIRenderer(options, name)

    def parse_messages(body: Any) -> Parsed:
        gen, options = an.parse_messages(body)
        return gen, lambda name: an.AnthropicRenderer(options, name)

    def parse_responses(body: Any) -> Parsed:
        gen, options = ra.parse_responses(body)
        return gen, lambda name: ra.ResponsesRenderer(options, name)

    routes: list[Route] = [Route("/health", simple(health, auth=False), methods=["GET"])]
    table: list[tuple[str, Callable[[Request], Awaitable[Response]], str]] = [
        ("/models", simple(models), "GET"),
        ("/models/{name:path}", simple(one_model), "GET"),
        ("/chat/completions", generation(parse_chat), "POST"),
        ("/completions", generation(parse_completion), "POST"),
        ("/messages", generation(parse_messages, anthropic=True), "POST"),
        ("/messages/count_tokens", simple(count_tokens, anthropic=True), "POST"),
        ("/responses", generation(parse_responses), "POST"),
        ("/embeddings", simple(embeddings), "POST"),
        ("/props", simple(props), "GET"),
    ]
    for path, endpoint, method in table:
        routes.append(Route("/v1" + path, endpoint, methods=[method]))
        routes.append(Route(path, endpoint, methods=[method]))

    async def not_found(request: Request, exc: Exception) -> Response:
        path = _route_path(request)
        rid = api.log.start(_client(request), request.method, path)
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        if status == 405:
            allowed = (exc.headers or {}).get("Allow", "") if isinstance(exc, HTTPException) else ""
            err = ApiError(405, f"Use {allowed or 'another method'} for {path}.")
        else:
            err = ApiError(404, f"There is no {path} here; the API is under /v1.")
        api.log.update(rid, status=err.status, error=err.message, finished=True)
        body = err.anthropic_body() if path.endswith("/messages") else err.body()
        return _json(err.status, body, err.headers)

    middleware = [
        Middleware(
            CORSMiddleware,
            allow_origins=list(api.cors_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["*"],
            max_age=600,
        )
    ]
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={404: not_found, 405: not_found},
    )
