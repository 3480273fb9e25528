"""A model with a chat template in its GGUF: the template is rendered (sandboxed Jinja) and
the metrics say so. The model is the real Gemma 3 270M with a Gemma-style template spliced
into a copy of its header."""

from __future__ import annotations

import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher.engine import EngineClient, EngineParams, ReplyFinished, Sampling, Token
from launcher.errors import EngineError

GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<start_of_turn>{{ role }}\n{{ message['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def _with_chat_template(src: Path, dst: Path, template: str) -> None:
    """Copy ``src`` adding ``tokenizer.chat_template`` as its first metadata entry.

    Hand-written because ``gguf-new-metadata`` (and ``GGUFReader``) take over a minute on this
    262k-token vocabulary: this bumps the KV count in the fixed 24-byte preamble, inserts one
    string entry after it and copies the rest as bytes. The entry is padded (inside a Jinja
    comment) to a multiple of the 32-byte data alignment, so tensor data stays aligned.
    """

    def entry(text: str) -> bytes:
        key, value = b"tokenizer.chat_template", text.encode()
        return b"".join(
            (struct.pack("<Q", len(key)), key, struct.pack("<IQ", 8, len(value)), value)
        )

    pad = -len(entry(template + "{##}")) % 32
    kv = entry(template + "{#" + " " * pad + "#}")
    assert len(kv) % 32 == 0
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        head = bytearray(fin.read(24))  # magic, version, tensor count, KV count
        assert head[:4] == b"GGUF"
        (n_kv,) = struct.unpack_from("<Q", head, 16)
        struct.pack_into("<Q", head, 16, n_kv + 1)
        fout.write(head)
        fout.write(kv)
        shutil.copyfileobj(fin, fout, 1 << 24)


@pytest.fixture(scope="module")
def templated(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineClient]:
    out = tmp_path_factory.mktemp("templated") / "gemma-with-template.gguf"
    _with_chat_template(gemma_path, out, GEMMA_TEMPLATE)
    client = EngineClient()
    client.load(out, EngineParams(n_ctx=512, n_threads=1))
    yield client
    client.unload()
    out.unlink()


def test_the_gguf_chat_template_is_used_and_reported(templated: EngineClient) -> None:
    assert templated.loaded is not None
    assert "<start_of_turn>" in (templated.loaded.chat_template or "")
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    events = list(templated.chat(messages, Sampling(max_tokens=24, temperature=0)))
    done = events[-1]
    assert isinstance(done, ReplyFinished)
    assert done.metrics.template == "gguf chat template"
    text = "".join(e.text for e in events if isinstance(e, Token))
    assert text == done.text
    # Turn markers are control tokens: they end the reply, they never show up as text.
    assert "<end_of_turn>" not in text and "<start_of_turn>" not in text


def test_a_template_error_is_reported_and_the_model_stays_usable(
    templated: EngineClient,
) -> None:
    # Gemma's template refuses a system role: like llama.cpp, the system prompt is folded
    # into the first user turn instead of failing the chat.
    events = list(
        templated.chat(
            [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "y"}],
            Sampling(max_tokens=4),
        )
    )
    assert isinstance(events[-1], ReplyFinished)
    # A conversation the template refuses in every form is an error that names its reason.
    two_users = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(EngineError, match="roles must alternate"):
        list(templated.chat(two_users))
    events = list(templated.chat([{"role": "user", "content": "Hi"}], Sampling(max_tokens=4)))
    assert isinstance(events[-1], ReplyFinished)
