"""The user's own work as a comparison workload: saved chats (each user turn in its context) and
a folder of documents (one prompt per text file from a template); the last tests run them
through ``compare --json`` on real models (Gemma 3 270M and a tiny random-weight llama)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launcher.chats import ChatStore, Conversation
from launcher.cli import main
from launcher.compare_checks import SuiteError
from launcher.compare_plan import CompareRequest
from launcher.compare_workloads import MAX_DOC_CHARS, chats_suite, folder_suite, load_workload
from launcher.paths import AppPaths
from tests.support.gguf_builders import TINY_LLAMA, build_model


def _chat(store: ChatStore, system: str, *turns: tuple[str, str]) -> Conversation:
    conv = Conversation(system_prompt=system)
    for role, text in turns:
        conv.add(role, text)  # type: ignore[arg-type]
    store.save(conv)
    return conv


def test_each_user_turn_of_a_saved_chat_is_a_prompt_with_its_history(app_home: Path) -> None:
    paths = AppPaths.default()
    store = ChatStore(paths.chats_dir)
    trip = _chat(
        store,
        "You plan trips.",
        ("user", "I want to visit Oslo."),
        ("assistant", "Oslo is lovely in June."),
        ("error", "The model host crashed."),  # a note the user saw, never sent to a model
        ("user", "What should I pack?"),
    )
    other = _chat(store, "", ("user", "Hi"))

    suite = chats_suite(paths, [trip.id])
    assert [p.text for p in suite.prompts] == ["I want to visit Oslo.", "What should I pack?"]
    first, second = suite.prompts
    assert first.messages() == [
        {"role": "system", "content": "You plan trips."},
        {"role": "user", "content": "I want to visit Oslo."},
    ]
    assert second.messages()[1:] == [
        {"role": "user", "content": "I want to visit Oslo."},
        {"role": "assistant", "content": "Oslo is lovely in June."},
        {"role": "user", "content": "What should I pack?"},
    ]
    every = load_workload("chats", paths)
    assert len(every.prompts) == 3 and every.description == "3 turns from 2 saved chats"
    assert load_workload(f"chats:{other.id}", paths).prompts[0].system is None
    # chosen by the start of an id or by words of the title, as a CLI user can
    assert len(load_workload(f"chats:{trip.id[:6]}", paths).prompts) == 2
    assert [p.text for p in load_workload("chats:OSLO,hi", paths).prompts][-1] == "Hi"
    with pytest.raises(SuiteError, match="no saved chat matches 'paris'; saved chats: "):
        load_workload("chats:paris", paths)
    # the saved prompts round-trip (a resumed comparison rebuilds them from its file)
    assert type(second).from_json(second.to_json()) == second


def test_no_saved_chats_says_what_to_do(app_home: Path) -> None:
    with pytest.raises(SuiteError, match="no saved chats yet"):
        load_workload("chats", AppPaths.default())


def test_a_folder_becomes_one_prompt_per_text_document(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "notes").mkdir(parents=True)
    (docs / "a.md").write_text("# Minutes\nWe agreed to ship on Friday.")
    (docs / "notes" / "b.txt").write_text("x" * (MAX_DOC_CHARS + 500))
    (docs / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0")  # binary: skipped
    (docs / ".hidden.txt").write_text("secret")  # hidden: skipped
    (docs / "empty.txt").write_text("  \n")

    suite = folder_suite(docs)
    assert [p.id for p in suite.prompts] == ["a.md", "notes/b.txt"]
    assert suite.prompts[0].text.startswith("Summarise the document below")
    assert "--- a.md ---\n# Minutes" in suite.prompts[0].text
    assert suite.prompts[1].text.endswith("[… the rest of the document was cut]")

    mine = load_workload(f"folder:{docs}", template="List the dates in {name}:\n{text}")
    assert (
        mine.prompts[0].text == "List the dates in a.md:\n# Minutes\nWe agreed to ship on Friday."
    )
    with pytest.raises(SuiteError, match="must contain \\{text\\}"):
        folder_suite(docs, "Summarise {name}")
    with pytest.raises(SuiteError, match="\\{name\\} and \\{text\\} only"):
        folder_suite(docs, "{text} as {format}")
    with pytest.raises(SuiteError, match="no text documents"):
        folder_suite(_empty(tmp_path), "{text}")
    # a request carries the template through to the suite
    req = CompareRequest(("a", "b"), suite=f"folder:{docs}", template="Title of {name}? {text}")
    assert req.prompt_suite().prompts[0].text.startswith("Title of a.md?")


def _empty(tmp_path: Path) -> Path:
    folder = tmp_path / "nothing"
    folder.mkdir()
    (folder / "blob.bin").write_bytes(b"\0\1\2")
    return folder


@pytest.mark.slow
def test_compare_on_saved_chats_and_a_folder_from_the_cli(
    gemma_path: Path, app_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = build_model(tmp_path / "tiny-llama.gguf", **TINY_LLAMA)
    store = ChatStore(AppPaths.default().chats_dir)
    conv = _chat(
        store,
        "Be brief.",
        ("user", "My cat is called Miso."),
        ("assistant", "Miso is a lovely name for a cat. " * 8),
        ("user", "What is my cat called?"),
    )
    code = main(["compare", str(gemma_path), str(tiny), "--suite", f"chats:{conv.id}",
                 "--max-tokens", "6", "--ctx", "1024", "--json"])  # fmt: skip
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["suite"] == "chats"
    first, second = (p["id"] for p in data["prompts"])
    for label in (m["label"] for m in data["models"]):
        runs = {r["prompt_id"]: r for r in data["runs"] if r["model"] == label}
        assert runs[first]["error"] is None and runs[second]["error"] is None
        # the second turn was asked with the first turn and its (long) reply before it: even
        # with the shared prefix's KV reused, the reply's tokens were read
        assert runs[second]["prompt_tokens"] > runs[first]["prompt_tokens"] + 40

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "short.txt").write_text("The meeting is on Monday.")
    (docs / "long.txt").write_text("The budget was approved. " * 12)
    code = main(["compare", str(gemma_path), str(tiny), "--suite", f"folder:{docs}",
                 "--template", "Which day? {text}", "--max-tokens", "4", "--ctx", "1024",
                 "--json"])  # fmt: skip
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and [p["id"] for p in data["prompts"]] == ["long.txt", "short.txt"]
    assert data["prompts"][1]["text"] == "Which day? The meeting is on Monday."
    tokens = {
        r["prompt_id"]: r["prompt_tokens"] for r in data["runs"] if r["model"] == "tiny-llama"
    }
    assert tokens["long.txt"] > tokens["short.txt"] + 30


def test_cli_refuses_a_template_without_a_folder(
    app_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compare", "a.gguf", "b.gguf", "--suite", "coding", "--template", "{text}"]) != 0
    assert "--template is for a folder" in capsys.readouterr().err
