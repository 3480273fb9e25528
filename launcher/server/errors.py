"""The local API's refusals: ``ApiError`` (an HTTP status and what to tell the client), shaped
as OpenAI's ``{"error": {...}}`` or Anthropic's ``{"type": "error", "error": {...}}``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Anthropic's error types by HTTP status (docs.anthropic.com, "Errors").
ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
}


class ApiError(Exception):
    """A request the API refuses: HTTP ``status`` and an OpenAI-style error object."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """OpenAI's shape (chat completions, completions, responses, models)."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def anthropic_body(self) -> dict[str, Any]:
        """Anthropic's shape (``/v1/messages``)."""
        kind = ANTHROPIC_TYPES.get(self.status, "api_error" if self.status >= 500 else "")
        return {
            "type": "error",
            "error": {"type": kind or "invalid_request_error", "message": self.message},
        }


def unloaded_error() -> ApiError:
    return ApiError(
        503,
        "The model was unloaded (or replaced) while answering. Load it again and retry.",
        type="server_error",
        code="model_not_loaded",
    )


_DOES_NOT_FIT = re.compile(r"\((\d+) tokens\) does not fit in the context \((\d+) tokens\)")


def context_error(message: str) -> ApiError:
    """An engine refusal before any token: ``context_length_exceeded`` when the prompt does
    not fit, worded like OpenAI's (LiteLLM and LangChain match the code, some clients the
    words) with both sizes; else a plain 400."""
    fit = _DOES_NOT_FIT.search(message)
    if fit:
        prompt, n_ctx = fit.groups()
        return ApiError(
            400,
            f"This model's maximum context length is {n_ctx} tokens. However, your messages "
            f"resulted in {prompt} tokens. Shorten the conversation, or load the model with a "
            "larger context.",
            param="messages",
            code="context_length_exceeded",
        )
    return ApiError(400, message, code="request_refused")
