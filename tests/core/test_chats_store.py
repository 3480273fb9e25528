"""Conversations: what the model sees, regenerate, and storage that survives crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from launcher.chats import ChatStore, ChatStoreError, Conversation, title_from
from launcher.paths import AppPaths


def _conversation() -> Conversation:
    conv = Conversation(system_prompt="Be brief.", preset="precise")
    conv.add("user", "What is the capital of France?\nAnswer in one word.")
    conv.add("assistant", "Paris.", model="gemma", metrics={"ttft_s": 0.1, "generated_tokens": 2})
    conv.add("error", "The model stopped unexpectedly.")
    conv.add("user", "And of Italy?")
    return conv


def test_model_sees_system_prompt_and_turns_but_not_error_notes() -> None:
    conv = _conversation()
    assert conv.title == "What is the capital of France? Answer in one word."[:47] + "…"
    assert [m["role"] for m in conv.prompt_messages()] == ["system", "user", "assistant", "user"]
    assert conv.prompt_messages()[0]["content"] == "Be brief."
    assert conv.sampling()["temperature"] == 0.2


def test_regenerate_drops_the_reply_after_the_last_user_message() -> None:
    conv = _conversation()
    conv.add("assistant", "Rome.")
    assert conv.drop_last_reply() == "And of Italy?"
    assert conv.messages[-1].role == "user"
    assert Conversation().drop_last_reply() is None


def test_title_is_one_short_line() -> None:
    assert title_from("  hello\n  world ") == "hello world"
    assert title_from("") == "New chat"
    assert len(title_from("x" * 500)) == 48


def test_saved_conversations_round_trip_and_list_newest_first(app_home: Path) -> None:
    store = ChatStore(AppPaths.default().chats_dir)
    assert store.list() == []
    old, new = _conversation(), Conversation()
    old.updated, new.updated = 100.0, 200.0
    store.save(old)
    store.save(new)
    assert [s.id for s in store.list()] == [new.id, old.id]
    back = store.load(old.id)
    assert back.to_json() == old.to_json()
    assert back.messages[1].metrics == {"ttft_s": 0.1, "generated_tokens": 2}
    store.delete(old.id)
    assert [s.id for s in store.list()] == [new.id]
    with pytest.raises(ChatStoreError, match="no longer exists"):
        store.load(old.id)


def test_damaged_file_is_set_aside_and_others_still_list(tmp_path: Path) -> None:
    store = ChatStore(tmp_path)
    good = _conversation()
    store.save(good)
    bad = Conversation()
    (tmp_path / f"{bad.id}.json").write_text('{"id": "x", "messa', encoding="utf-8")
    with pytest.raises(ChatStoreError, match="damaged"):
        store.load(bad.id)
    assert [s.id for s in store.list()] == [good.id]
    assert list(tmp_path.glob("*.corrupt-*.json"))


def test_hostile_ids_never_leave_the_folder(tmp_path: Path) -> None:
    store = ChatStore(tmp_path)
    conv = Conversation(id="../../escape")
    with pytest.raises(ChatStoreError, match="invalid"):
        store.save(conv)
    assert not (tmp_path.parent.parent / "escape.json").exists()


def test_killed_while_saving_leaves_a_readable_conversation(tmp_path: Path) -> None:
    """A process killed in the middle of saving a growing conversation loses nothing saved."""
    conv = Conversation()
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from launcher.chats import ChatStore, Conversation
        store = ChatStore(Path({str(tmp_path)!r}))
        conv = Conversation(id={conv.id!r})
        conv.add("user", "count")
        reply = conv.add("assistant", "")
        i = 0
        while True:
            reply.content += f"{{i}} " * 200
            store.save(conv)
            i += 1
            if i == 5:
                print("saving", flush=True)
        """
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=root, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "saving"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    back = ChatStore(tmp_path).load(conv.id)
    assert back.messages[0].content == "count"
    assert back.messages[1].content.startswith("0 0 ")
