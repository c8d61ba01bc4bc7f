"""Attachments (DESIGN §7): images, PDFs and audio from URLs, data: URLs and files below the files root;
the files root as a security boundary (nothing of a refused step is sent); pricing, caching, the fake."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import zlib
from pathlib import Path

import pytest
import yaml

from runner.api import load_pipeline
from runner.chat.catalog import ModelInfo, bundled_catalog
from runner.chat.request import request_plugins
from runner.check.rules import lint
from runner.fake import FakeOpenRouter
from runner.fake.parts import media_cost
from runner.fake.server import mock_transport
from runner.run.budget import worst_case_cost
from runner.run.dryrun import estimate
from runner.run.files import FilesRoot
from runner.run.inputs import InputItem
from runner.settings import RunOptions

from .conftest import EXAMPLES, ROOT, TEST_KEY, invoke, write_pipeline

MODEL = "google/gemini-2.5-flash"  # pricing.image 0.001238 in the bundled catalogue


def png(width: int = 1, colour: bytes = b"\x00\x00\x00") -> bytes:
    """A valid PNG of `width` x 1 pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" + colour * width)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 28


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


INSPECT = f"""
name: inspect
defaults:
  model: {MODEL}
steps:
  inspect:
    prompt: "What is in these?"
    attachments:
      - "{{{{ input.photo }}}}"
      - "{{{{ input.more | default([]) }}}}"
      - {{file: "{{{{ input.scan | default(none) }}}}", type: pdf}}
"""


@pytest.fixture
def root(tmp_path) -> Path:
    """The files root, with a photo, a PDF and a recording; a secret lives next to it, outside."""
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    (folder / "photo.png").write_bytes(png())
    (folder / "sub" / "claim.pdf").write_bytes(PDF)
    (folder / "scan").write_bytes(PDF)  # no extension: `type: pdf` tells
    (folder / "voice.wav").write_bytes(WAV)
    (tmp_path / "secret.png").write_bytes(png(2))
    return folder


def run_record(pipeline, record, root, *, fake=None, settings=None, max_mb=20.0):
    fake = fake or FakeOpenRouter()
    options = RunOptions(files_root=str(root), max_attachment_mb=max_mb)

    async def go():
        async with pipeline.session(settings, transport=mock_transport(fake), options=options) as session:
            return await session.run(record)

    return asyncio.run(go()), fake


@pytest.fixture
def inspect(tmp_path, settings):
    return load_pipeline(write_pipeline(tmp_path, INSPECT))


def user_parts(body: dict) -> list[dict]:
    return body["messages"][-1]["content"]


def test_files_urls_and_data_urls_become_parts_after_the_prompt(inspect, root, settings):
    record = {
        "photo": "photo.png",
        "more": ["https://example.com/dent.jpg", data_url("image/png", png(3)), "sub/claim.pdf"],
        "scan": "scan",
    }
    result, fake = run_record(inspect, record, root, settings=settings)
    assert result.status == "ok", result.error
    (body,) = fake.chat_bodies()
    parts = user_parts(body)
    assert parts[0] == {"type": "text", "text": "What is in these?"}
    assert parts[1] == {"type": "image_url", "image_url": {"url": data_url("image/png", png())}}
    assert parts[2] == {"type": "image_url", "image_url": {"url": "https://example.com/dent.jpg"}}
    assert parts[3] == {"type": "image_url", "image_url": {"url": data_url("image/png", png(3))}}
    assert parts[4] == {
        "type": "file",
        "file": {"filename": "claim.pdf", "file_data": data_url("application/pdf", PDF)},
    }
    assert parts[5] == {"type": "file", "file": {"filename": "scan", "file_data": data_url("application/pdf", PDF)}}
    assert len(parts) == 6


def test_audio_is_sent_inline_and_an_audio_url_is_refused(tmp_path, root, settings):
    pipeline = load_pipeline(
        write_pipeline(
            tmp_path,
            f"name: a\nsteps:\n  listen:\n    model: {MODEL}\n    prompt: Transcribe.\n"
            '    attachments: ["{{ input.clip }}"]\n',
        )
    )
    result, fake = run_record(pipeline, {"clip": "voice.wav"}, root, settings=settings)
    assert result.status == "ok", result.error
    assert user_parts(fake.chat_bodies()[0])[1] == {
        "type": "input_audio",
        "input_audio": {"data": base64.b64encode(WAV).decode(), "format": "wav"},
    }
    inline, fake = run_record(pipeline, {"clip": data_url("audio/x-wav", WAV + b"\x01")}, root, settings=settings)
    assert inline.status == "ok" and user_parts(fake.chat_bodies()[0])[1]["input_audio"]["format"] == "wav"
    refused, fake = run_record(pipeline, {"clip": "https://example.com/a.mp3"}, root, settings=settings)
    assert refused.error.kind == "attachment_error" and "does not fetch audio URLs" in refused.error.message
    assert fake.chat_requests == 0


def test_pdf_engine_sends_the_file_parser_plugin(tmp_path, root, settings):
    pipeline = load_pipeline(
        write_pipeline(
            tmp_path,
            f"name: p\ndefaults:\n  pdf_engine: cloudflare-ai\nsteps:\n  read:\n    model: {MODEL}\n"
            '    prompt: Summarise.\n    attachments: ["sub/claim.pdf"]\n',
        )
    )
    result, fake = run_record(pipeline, {}, root, settings=settings)
    assert result.status == "ok", result.error
    assert fake.chat_bodies()[0]["plugins"] == [{"id": "file-parser", "pdf": {"engine": "cloudflare-ai"}}]


def test_pdf_engine_merges_into_the_steps_own_plugins():
    web = {"id": "web", "max_results": 3}
    assert request_plugins([web], "mistral-ocr") == [web, {"id": "file-parser", "pdf": {"engine": "mistral-ocr"}}]
    own = {"id": "file-parser", "pdf": {"engine": "native"}}
    assert request_plugins([own], "mistral-ocr") == [own]  # the step's own entry wins, named once
    assert request_plugins([{"id": "file-parser"}], "native") == [{"id": "file-parser", "pdf": {"engine": "native"}}]
    assert request_plugins([], None) == []


BOUNDARY = f"""
name: boundary
steps:
  look:
    model: {MODEL}
    prompt: Describe it.
    attachments:
      - "{{{{ input.path | default(none) }}}}"
      - {{file: "{{{{ input.image | default(none) }}}}", type: image}}
      - {{file: "{{{{ input.pdf | default(none) }}}}", type: pdf}}
"""


def _outside_tricks(tmp_path: Path, root: Path) -> list[tuple[dict, str]]:
    """(the record, words its refusal must contain)."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa.png").write_bytes(png())  # even named like an image
    (home / ".ssh" / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    (root / "link.png").symlink_to(tmp_path / "secret.png")
    (root / "sub" / "up").symlink_to(tmp_path)
    outside = "leads outside the files root"
    return [
        ({"path": "../secret.png"}, outside),
        ({"path": "sub/../../secret.png"}, outside),
        ({"path": "sub/up/secret.png"}, outside),  # a symlinked folder leading out
        ({"path": "link.png"}, outside),  # a symlink leading out
        ({"path": str(tmp_path / "secret.png")}, outside),  # an absolute path elsewhere
        ({"path": "/etc/passwd"}, "cannot tell the type"),
        ({"image": "/etc/passwd"}, outside),
        ({"pdf": "/etc/passwd"}, outside),
        ({"image": "../../../../../../../../etc/passwd"}, outside),
        ({"path": str(home / ".ssh" / "id_rsa.png")}, outside),
        ({"pdf": str(home / ".ssh" / "id_rsa")}, outside),
        ({"image": "~/.ssh/id_rsa"}, "no file '~/.ssh/id_rsa' below the files root"),  # `~` is not expanded
        ({"path": "~/.ssh/id_rsa.png"}, "no file"),
        ({"path": "%2e%2e/secret.png"}, "no file '%2e%2e/secret.png'"),  # nor URL-decoded
        ({"path": "..%2fsecret.png"}, "no file"),
        ({"pdf": "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd"}, "no file"),
        ({"path": "file:///etc/passwd"}, "is a file: URL"),
        ({"path": "FILE://localhost/etc/passwd.png"}, "is a FILE: URL"),
        ({"image": "file:/etc/passwd"}, "is a file: URL"),
        ({"path": "missing.png"}, "no file 'missing.png'"),
        ({"path": "notes.txt"}, "cannot tell the type"),
        ({"path": "photo.png", "pdf": "photo.png"}, "is an image, not a PDF"),
        ({"path": "sub"}, "cannot tell the type"),
        ({"image": "sub"}, "is not a regular file"),
        ({"path": "photo.png\x00.pdf"}, "NUL"),
        ({"path": 42}, "not int"),
    ]


def test_the_files_root_is_a_boundary_and_a_refused_step_sends_nothing(tmp_path, root, settings):
    pipeline = load_pipeline(write_pipeline(tmp_path, BOUNDARY))
    for record, words in _outside_tricks(tmp_path, root):
        result, fake = run_record(
            pipeline, {**record, "image": record.get("image", "photo.png")}, root, settings=settings
        )
        assert result.status == "failed", record
        assert result.error.kind == "attachment_error", (record, result.error)
        assert words in result.error.message and "step 'look'" in result.error.message, (record, result.error.message)
        assert fake.chat_requests == 0 and fake.chat_bodies() == [], f"{record!r}: a request was sent"
        assert "PRIVATE KEY" not in result.error.message and "root:" not in result.error.message
    good, fake = run_record(
        pipeline, {"path": "photo.png", "image": "sub/../photo.png", "pdf": str(root / "scan")}, root, settings=settings
    )
    assert good.status == "ok" and fake.chat_requests == 1  # inside the root, absolute or not


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("data:image/png;base64,not*base64", "not valid base64"),
        ("data:image/png;base64,AAA", "not valid base64"),
        ("data:text/plain;base64,aGVsbG8=", "a data: URL of type 'text/plain'"),
        ("data:image/png,rawbytes", "not a base64 data: URL"),
        (data_url("image/png", b"\xff\xd8\xff\xe0 jpeg bytes"), "says image/png but holds image/jpeg"),
        (data_url("image/png", b"just text"), "does not hold an image"),
        ("", "the attachment is empty"),
    ],
)
def test_bad_data_urls_are_refused_before_anything_is_sent(inspect, root, settings, value, words):
    result, fake = run_record(inspect, {"photo": value}, root, settings=settings)
    assert result.error.kind == "attachment_error" and words in result.error.message
    assert fake.chat_requests == 0


def test_a_file_whose_bytes_are_not_its_type_or_too_large_is_refused(inspect, root, settings):
    (root / "fake.png").write_text("root:x:0:0:root:/root:/bin/bash\n")
    result, fake = run_record(inspect, {"photo": "fake.png"}, root, settings=settings)
    assert "does not hold an image" in result.error.message and fake.chat_requests == 0
    (root / "big.png").write_bytes(png(2000))
    size = (root / "big.png").stat().st_size
    result, fake = run_record(inspect, {"photo": "big.png"}, root, settings=settings, max_mb=(size - 1) / 1e6)
    assert "over the" in result.error.message and "MB limit for one attachment" in result.error.message
    assert fake.chat_requests == 0
    result, fake = run_record(inspect, {"photo": "big.png"}, root, settings=settings, max_mb=size / 1e6)
    assert result.status == "ok" and fake.chat_requests == 1


def test_the_cache_key_covers_the_files_bytes(inspect, root, settings):
    fake = FakeOpenRouter()
    first, _ = run_record(inspect, {"photo": "photo.png"}, root, fake=fake, settings=settings)
    again, _ = run_record(inspect, {"photo": "photo.png"}, root, fake=fake, settings=settings)
    assert (first.status, again.status, fake.chat_requests) == ("ok", "ok", 1)  # same bytes: from the cache
    (root / "photo.png").write_bytes(png(1, b"\xff\x00\x00"))  # same name, another picture
    changed, _ = run_record(inspect, {"photo": "photo.png"}, root, fake=fake, settings=settings)
    assert changed.status == "ok" and fake.chat_requests == 2


def test_the_fake_checks_and_prices_the_parts():
    fake = FakeOpenRouter(on_chat_body=lambda body: None)  # some bodies below are wrong on purpose
    info = next(model for model in fake.models if model["id"] == MODEL)

    def ask(content) -> tuple[int, dict]:
        body = {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 50}
        headers = {"Authorization": f"Bearer {TEST_KEY}"}
        response = asyncio.run(fake.handle("POST", "chat/completions", {}, headers, json.dumps(body).encode()))
        return response.status, response.body

    plain_status, plain = ask([{"type": "text", "text": "hi"}])
    image = {"type": "image_url", "image_url": {"url": data_url("image/png", png())}}
    image_status, priced = ask([{"type": "text", "text": "hi"}, image])
    assert plain_status == image_status == 200
    extra = priced["usage"]["cost"] - plain["usage"]["cost"]
    assert (
        extra >= float(info["pricing"]["image"]) and priced["usage"]["prompt_tokens"] > plain["usage"]["prompt_tokens"]
    )
    for bad, words in [
        ({"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}, "not valid base64"),
        ({"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}}, "unsupported image type"),
        ({"type": "file", "file": {"filename": "a", "file_data": "data:text/html;base64,AAAA"}}, "unsupported file"),
        ({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "midi"}}, "unsupported audio format"),
        ({"type": "hologram"}, "unknown content part type"),
    ]:
        status, body = ask([{"type": "text", "text": "hi"}, bad])
        assert status == 400 and words in body["error"]["message"], (bad, body)


def test_the_budget_and_the_dry_run_price_images_and_pdfs(inspect, root):
    info = ModelInfo.from_api(
        {"id": MODEL, "pricing": {"prompt": "0.000001", "completion": "0", "image": "0.01"}, "context_length": 1}
    )
    text = {"model": MODEL, "max_tokens": 1, "messages": [{"role": "user", "content": "look"}]}
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    with_image = {**text, "messages": [{"role": "user", "content": [{"type": "text", "text": "look"}, image]}]}
    assert worst_case_cost(with_image, info) - worst_case_cost(text, info) >= 0.01
    linked = {"type": "file", "file": {"filename": "a.pdf", "file_data": "https://example.com/a.pdf"}}
    with_link = {**text, "messages": [{"role": "user", "content": [{"type": "text", "text": "look"}, linked]}]}
    fake_tokens, _ = media_cost(with_link, {})
    assert (worst_case_cost(with_link, info) - worst_case_cost(text, info)) / info.prompt_price >= fake_tokens

    catalog = bundled_catalog()
    files = FilesRoot(root)

    def high(record) -> float:
        result = estimate(inspect.spec, inspect.renderer, catalog, [InputItem(1, record)], inspect.check_input, files)
        assert not result.attachment_problems, result.attachment_problems
        return result.high_usd

    image_price = catalog.models[MODEL].image_price
    assert image_price > 0
    one, two = high({"photo": "photo.png"}), high({"photo": "photo.png", "more": ["photo.png"]})
    assert two - one >= image_price
    (root / "long.pdf").write_bytes(PDF + b"%" * 30_000)
    assert high({"photo": "photo.png", "scan": "long.pdf"}) - one > 30_000 / 4 * catalog.models[MODEL].prompt_price

    refused = estimate(
        inspect.spec, inspect.renderer, catalog, [InputItem(7, {"photo": "../secret.png"})], inspect.check_input, files
    )
    assert refused.rows[0].calls == 0 and "record 7" in refused.attachment_problems[0]


def test_validate_warns_when_the_model_does_not_take_the_attachments(tmp_path):
    text_only = "meta-llama/llama-3.1-8b-instruct"
    pipeline = load_pipeline(
        write_pipeline(
            tmp_path,
            f"name: v\nsteps:\n  look:\n    model: {text_only}\n    fallback_models: [anthropic/claude-haiku-4.5]\n"
            '    prompt: Describe.\n    attachments: ["{{ input.photo }}.png", {file: "{{ input.doc }}", type: pdf}]\n'
            f"  guess:\n    model: {text_only}\n    prompt: Guess.\n    attachments: ['{{{{ input.any }}}}']\n"
            f"  fine:\n    model: {MODEL}\n    prompt: Fine.\n    attachments: ['{{{{ input.any }}}}', a.wav]\n",
        )
    )
    warnings = [f.message for f in lint(pipeline.spec, pipeline.graph, bundled_catalog()) if f.severity == "warning"]
    about = [message for message in warnings if "does not take" in message]
    assert any(f"'{text_only}' does not take image input" in m and "step 'look'" in m for m in about)
    assert any(f"'{text_only}' does not take pdf input" in m for m in about)
    assert any("'anthropic/claude-haiku-4.5' does not take pdf input" in m and "file-parser" in m for m in about)
    assert not any("claude-haiku-4.5' does not take image" in m for m in about)
    assert any("step 'guess'" in m and "image, pdf or audio" in m for m in about)
    assert not any("step 'fine'" in m for m in about)


def test_a_bad_attachment_type_is_a_load_error(tmp_path, capsys, monkeypatch):
    path = write_pipeline(
        tmp_path,
        f"name: x\nsteps:\n  a:\n    model: {MODEL}\n    prompt: p\n    attachments: [{{file: a, type: video}}]\n",
    )
    result = invoke(capsys, monkeypatch, "validate", str(path))
    assert result.code == 2 and "attachments" in result.err + result.out


def test_the_cli_files_root_defaults_to_the_inputs_folder_or_the_current_one(tmp_path, root, monkeypatch, capsys):
    path = write_pipeline(tmp_path, INSPECT)
    (root / "records.jsonl").write_text(
        json.dumps({"photo": "photo.png"}) + "\n" + json.dumps({"photo": "../secret.png"}) + "\n"
    )
    batch = invoke(
        capsys, monkeypatch, "run", str(path), "--mock", "--ordered", "--inputs", str(root / "records.jsonl")
    )
    lines = [json.loads(line) for line in batch.out.splitlines()]
    assert [line["status"] for line in lines] == ["ok", "failed"] and batch.code == 1
    assert lines[1]["error"]["kind"] == "attachment_error"

    monkeypatch.chdir(root)
    one = invoke(capsys, monkeypatch, "run", str(path), "--mock", "--input", "photo=photo.png")
    assert one.code == 0, one.err
    monkeypatch.chdir(tmp_path)
    missing = invoke(capsys, monkeypatch, "run", str(path), "--mock", "--input", "photo=photo.png")
    assert missing.code == 1 and "no file 'photo.png'" in missing.err
    rooted = invoke(
        capsys, monkeypatch, "run", str(path), "--mock", "--input", "photo=photo.png", "--files-root", str(root)
    )
    assert rooted.code == 0, rooted.err
    small = invoke(
        capsys,
        monkeypatch,
        *("run", str(path), "--mock", "--input", "photo=photo.png", "--files-root", str(root)),
        *("--max-attachment-mb", "0.00001"),
    )
    assert small.code == 1 and "over the" in small.err
    nowhere = invoke(capsys, monkeypatch, "run", str(path), "--mock", "--input", "photo=a.png", "--files-root", "nope")
    assert nowhere.code == 2 and "--files-root nope" in nowhere.err
    dry = invoke(capsys, monkeypatch, "run", str(path), "--dry-run", "--inputs", str(root / "records.jsonl"))
    assert dry.code == 0 and "would fail: record 2" in dry.err and "leads outside" in dry.err


def test_the_example_reads_its_photo_and_form_in_replay_and_with_mock(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # the cases name their files from the project's root, as `pipeline test` is run there
    example, cases = EXAMPLES / "claim_photos.yaml", EXAMPLES / "claim_photos.cases.yaml"
    replay = invoke(capsys, monkeypatch, "test", str(example), "--cases", str(cases))
    assert replay.code == 0 and "1 passed, 0 failed" in replay.err, replay.out + replay.err
    record = yaml.safe_load(cases.read_text(encoding="utf-8"))["cases"][0]["input"]
    mocked = invoke(capsys, monkeypatch, "run", str(example), "--mock", "--input", json.dumps(record))
    assert mocked.code == 0 and set(json.loads(mocked.out)) == {"inspection", "note"}, mocked.err
    photo = (EXAMPLES / "files" / "claim_photo.png").read_bytes()
    form = (EXAMPLES / "files" / "claim_form.pdf").read_bytes()
    assert photo.startswith(b"\x89PNG") and form.startswith(b"%PDF-") and form.rstrip().endswith(b"%%EOF")
    assert len(photo) < 8_000 and len(form) < 8_000


def test_a_per_page_pdf_engine_is_priced_by_the_budget_and_charged_by_the_fake(tmp_path, root, settings):
    pages = b"".join(b"%d 0 obj << /Type /Page /Parent 2 0 R >> endobj\n" % number for number in (3, 4, 5))
    (root / "three.pdf").write_bytes(PDF.replace(b"trailer", pages + b"trailer"))
    costs = {}
    for engine in ("cloudflare-ai", "mistral-ocr"):
        pipeline = load_pipeline(
            write_pipeline(
                tmp_path,
                f"name: o\nsteps:\n  read:\n    model: {MODEL}\n    pdf_engine: {engine}\n    prompt: Read.\n"
                "    attachments: [three.pdf]\n",
                name=f"{engine}.yaml",
            )
        )
        result, fake = run_record(pipeline, {}, root, settings=settings)
        (body,) = fake.chat_bodies()
        costs[engine] = (result.cost_usd, worst_case_cost(body, bundled_catalog().models[MODEL]))
    assert costs["mistral-ocr"][0] - costs["cloudflare-ai"][0] == pytest.approx(3 * 0.002)
    assert costs["mistral-ocr"][1] - costs["cloudflare-ai"][1] == pytest.approx(3 * 0.002)
    assert all(cost <= worst for cost, worst in costs.values())


MAP_PHOTOS = f"""
name: photos
defaults:
  model: {MODEL}
steps:
  look:
    for_each: "{{{{ input.photos }}}}"
    as: photo
    on_item_error: ON_ITEM_ERROR
    prompt: "What is damaged?"
    attachments: ["{{{{ photo }}}}"]
"""


def test_a_map_step_sends_no_element_when_one_elements_attachment_is_refused(tmp_path, root, settings):
    pipeline = load_pipeline(write_pipeline(tmp_path, MAP_PHOTOS.replace("ON_ITEM_ERROR", "fail")))
    result, fake = run_record(
        pipeline, {"photos": ["photo.png", str(tmp_path / "secret.png")]}, root, settings=settings
    )
    assert result.status == "failed" and result.error.kind == "attachment_error"
    assert "element 1 of 2 failed" in result.error.message and "outside the files root" in result.error.message
    assert fake.chat_requests == 0 and fake.chat_bodies() == []  # element 0 was fine, and is not sent either


def test_with_skip_a_refused_element_is_null_and_its_siblings_are_sent(tmp_path, root, settings):
    pipeline = load_pipeline(write_pipeline(tmp_path, MAP_PHOTOS.replace("ON_ITEM_ERROR", "skip")))
    result, fake = run_record(
        pipeline, {"photos": [str(tmp_path / "secret.png"), "photo.png"]}, root, settings=settings
    )
    assert result.status == "ok"
    assert result.steps["look"].output[0] is None and result.steps["look"].output[1] is not None
    assert fake.chat_requests == 1
