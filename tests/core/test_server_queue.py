"""The fair per-model queue on its own: turns alternate between sources, a full queue refuses
at once with a retry delay, cancel and close wake waiters. Pure logic, no model."""

from __future__ import annotations

import pytest

from launcher.errors import ModelBusyError, ModelUnavailableError
from launcher.server.pool import FairQueue, model_id


def _serve_all(queue: FairQueue, first: object) -> list[str]:
    """Release turns one by one; the order in which sources got them."""
    order = []
    holder = first
    while holder is not None:
        queue.release(holder)  # type: ignore[arg-type]
        holder = queue.holder
        if holder is not None:
            order.append(holder.source)
    return order


def test_app_and_api_take_turns_instead_of_first_come_first_served() -> None:
    queue = FairQueue(max_waiting=10)
    first = queue.enqueue("api:127.0.0.1")
    assert queue.holder is first
    for source in ["api:127.0.0.1"] * 3 + ["app", "app"]:
        queue.enqueue(source)
    # Three API requests were queued before the user's chat, yet the chat is served next.
    assert _serve_all(queue, first) == [
        "api:127.0.0.1",
        "app",
        "api:127.0.0.1",
        "app",
        "api:127.0.0.1",
    ]


def test_full_queue_refuses_at_once_with_retry_after() -> None:
    queue = FairQueue(max_waiting=2)
    queue.enqueue("a")
    queue.enqueue("a")
    queue.enqueue("b")
    with pytest.raises(ModelBusyError, match="busy") as info:
        queue.enqueue("c")
    assert info.value.retry_after_s >= 1


def test_cancelled_waiter_leaves_the_queue_and_wakes() -> None:
    queue = FairQueue()
    first = queue.enqueue("a")
    waiting = queue.enqueue("b")
    assert queue.cancel_waiting(waiting)
    assert queue.wait(waiting, timeout=1) and waiting.cancelled
    queue.release(first)
    assert queue.holder is None and queue.waiting() == 0


def test_unloading_wakes_waiters_with_a_clear_error() -> None:
    queue = FairQueue()
    queue.enqueue("a")
    waiting = queue.enqueue("b")
    queue.close("The model was unloaded.")
    with pytest.raises(ModelUnavailableError, match="unloaded"):
        queue.wait(waiting, timeout=1)
    with pytest.raises(ModelUnavailableError):
        queue.enqueue("c")


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/m/gemma-3-270m-q4_k_m.gguf", "gemma-3-270m-q4_k_m"),
        ("/m/Qwen3-32B-Q4_K_M-00001-of-00002.gguf", "Qwen3-32B-Q4_K_M"),
        ("/m/model.bin", "model.bin"),
    ],
)
def test_model_ids_are_file_names(path: str, name: str) -> None:
    assert model_id(path) == name
