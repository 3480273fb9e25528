"""A reply that used tools is stored as the model saw it (assistant ``tool_calls``, one ``tool``
message per call, the answer) and sent again on the next turn, also after a reload; a chat's
tool settings are saved with it; a turn's numbers count every round."""

from __future__ import annotations

import json
from pathlib import Path

from launcher.chats import ChatStore, ChatTools, Conversation
from launcher.engine.events import ReplyMetrics
from launcher.tools.loop import TurnMetrics, turn_summary


def _call(call_id: str, name: str = "add", arguments: str = '{"a": 2, "b": 3}') -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_tool_calls_and_results_are_saved_and_resent(tmp_path: Path) -> None:
    store = ChatStore(tmp_path)
    conv = Conversation(system_prompt="")
    conv.add("user", "What is 2 plus 3?")
    conv.add("assistant", "", model="gemma", tool_calls=[_call("c1")])
    conv.add("tool", "5", tool_call_id="c1", name="add", tool_status="ok", server="calc")
    conv.add("error", "a note the model never sees")
    conv.add("assistant", "It is 5.", model="gemma", metrics={"rounds": 2, "tool_calls": 1})
    conv.tools = ChatTools(servers=["calc"], disabled=["calc/slow"], max_rounds=2,
                           tool_choice="required", timeout_s=5)  # fmt: skip
    store.save(conv)
    again = store.load(conv.id)
    assert again.tools == conv.tools
    assert again.tools.tool_enabled("calc", "add") and not again.tools.tool_enabled("calc", "slow")
    assert again.tool_result("c1") is not None and again.tool_result("c1").server == "calc"
    sent = again.prompt_messages()
    assert sent == [
        {"role": "user", "content": "What is 2 plus 3?"},
        {"role": "assistant", "content": None, "tool_calls": [_call("c1")]},
        {"role": "tool", "tool_call_id": "c1", "name": "add", "content": "5"},
        {"role": "assistant", "content": "It is 5."},
    ]
    json.dumps(sent)  # plain JSON for the engine's pipe


def test_a_call_without_a_stored_result_gets_one_saying_so() -> None:
    conv = Conversation(system_prompt="")
    conv.add("user", "Add.")
    conv.add("assistant", "Let me add.", tool_calls=[_call("c1"), _call("c2")])
    conv.add("tool", "5", tool_call_id="c1", name="add")
    conv.add("user", "Well?")
    roles = [(m["role"], m.get("tool_call_id")) for m in conv.prompt_messages()]
    assert roles == [("user", None), ("assistant", None), ("tool", "c1"), ("tool", "c2"),
                     ("user", None)]  # fmt: skip
    assert "stopped" in conv.prompt_messages()[3]["content"]


def test_old_files_and_bad_tool_settings_load_with_tools_off() -> None:
    conv = Conversation.from_json({"id": "a" * 32, "messages": []})
    assert conv.tools == ChatTools() and not conv.tools.active
    bad = ChatTools.from_json({"servers": "calc", "max_rounds": "x", "tool_choice": "rm -rf",
                               "timeout_s": -1})  # fmt: skip
    assert bad == ChatTools()


def _metrics(ttft: float, generated: int, decode_s: float, stop: str) -> ReplyMetrics:
    return ReplyMetrics(ttft_s=ttft, prompt_tokens=100, prefill_s=0.5, prefill_tokens_per_s=200,
                        generated_tokens=generated, decode_s=decode_s,
                        decode_tokens_per_s=(generated - 1) / decode_s, stop_reason=stop,
                        template="t")  # type: ignore[arg-type]  # fmt: skip


def test_a_turns_numbers_count_every_round() -> None:
    m = TurnMetrics(rounds=2, tool_calls=1, prompt_tokens=200, generated_tokens=31, model_s=3.0,
                    tools_s=0.25, replies=(_metrics(0.4, 11, 1.0, "tool_calls"),
                                           _metrics(0.1, 20, 2.0, "eos")))  # fmt: skip
    s = turn_summary(m)
    assert s["ttft_s"] == 0.4  # the first round: what the user waited for
    assert s["generated_tokens"] == 31 and s["prompt_tokens"] == 200
    assert s["decode_tokens_per_s"] == (10 + 19) / 3.0
    assert s["prefill_tokens_per_s"] == 200 / 1.0
    assert (s["rounds"], s["tool_calls"], s["tools_s"], s["stop_reason"]) == (2, 1, 0.25, "eos")
