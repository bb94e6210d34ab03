"""The chat page at `/`, in a real Chromium: every flow a user has, against a live server."""

from __future__ import annotations

import base64
import re
import struct
import threading
import time
import zlib
from pathlib import Path

import httpx
from playwright.sync_api import Locator, Page, Route, expect

from tests.fakes.anthropic_upstream import FakeAnthropic, HttpError, TextReply, ThinkingReply
from tests.support import PASSWORD, LiveServer, signup, unique_email
from tests.ui.conftest import HAIKU, shoot


def png(width: int, height: int, rgb: tuple[int, int, int] = (52, 88, 214)) -> bytes:
    """A PNG of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width  # filter type 0, then the pixels
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


PNG = png(96, 64)


def as_guest(page: Page) -> None:
    page.get_by_role("button", name="Chat as a guest").click()
    expect(page.locator("#who")).to_have_text("Guest: nothing is saved")


def sign_up(page: Page) -> str:
    """Create an account through the form; return its email."""
    email = unique_email("page")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.locator("#who")).to_have_text(email)
    return email


def say(page: Page, text: str) -> None:
    box = page.get_by_label("Message", exact=True)
    box.fill(text)
    box.press("Enter")


def reply(page: Page, index: int = -1) -> Locator:
    """The assistant message at `index` of the path on screen."""
    replies = page.locator(".message.assistant")
    return replies.last if index == -1 else replies.nth(index)


def finished(message: Locator, status: str = "complete") -> Locator:
    expect(message).to_have_attribute("data-status", status)
    return message


def reply_id(message: Locator) -> str:
    return str(message.get_attribute("data-id"))


def newer_reply(page: Page, than: str) -> Locator:
    """The last reply on screen, once it is another message than the one with id `than`."""
    expect(reply(page)).not_to_have_attribute("data-id", than)
    return reply(page)


def wait_for_hang_up(upstream: FakeAnthropic) -> None:
    deadline = time.monotonic() + 15
    while upstream.hang_ups == 0:
        assert time.monotonic() < deadline, "the reply went on upstream"
        time.sleep(0.05)


def test_the_page_and_its_files_are_served_with_a_strict_policy(page_server: LiveServer) -> None:
    with page_server.client() as http:
        page = http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
        script = http.get("/web/app.js")
        assert script.status_code == 200
        assert "javascript" in script.headers["content-type"]
        assert script.headers["cache-control"] == "no-cache"
        missing = http.get("/web/nothing.js")
        assert missing.status_code == 404
        assert missing.json()["error"] == "not_found"
        # The page is not part of the API's schema.
        assert "/" not in http.get("/openapi.json").json()["paths"]


def test_a_guest_chats_and_nothing_is_saved(
    page: Page, page_server: LiveServer, upstream: FakeAnthropic
) -> None:
    upstream.enqueue(TextReply(chunks=("Hello", ", ", "guest")), TextReply(chunks=("Again",)))
    before = page_server.counts()
    as_guest(page)
    say(page, "Hi there")
    first = reply_id(finished(reply(page)))
    expect(reply(page).locator(".text")).to_have_text("Hello, guest")
    say(page, "Once more")
    expect(finished(newer_reply(page, first)).locator(".text")).to_have_text("Again")
    shoot(page, "guest")
    # The first turn went along as the history; nothing was written.
    sent = upstream.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert page_server.counts() == before


def test_sign_up_chat_usage_rename_and_sign_in_again(
    page: Page, page_server: LiveServer, upstream: FakeAnthropic
) -> None:
    upstream.enqueue(TextReply(chunks=("Hello", " there")))
    email = sign_up(page)
    say(page, "Hi")
    answer = finished(reply(page))
    expect(answer.locator(".text")).to_have_text("Hello there")
    expect(answer.locator(".usage")).to_contain_text(f"{HAIKU} · ")
    expect(answer.locator(".usage")).to_contain_text(" out")
    expect(page.locator("#usage")).to_have_text(re.compile(r"Today: [1-9][\d,]* tokens"))
    session = page.locator(".session")
    expect(session).to_have_count(1)
    expect(page).to_have_url(re.compile(r"#/chat/[0-9a-f-]{36}$"))

    session.get_by_role("button", name="Rename").click()
    title = page.get_by_label("New title")
    title.fill("Greetings")
    title.press("Enter")
    expect(session.locator(".title")).to_have_text("Greetings")
    expect(page.locator("#chat-title")).to_have_text("Greetings")
    shoot(page, "signed-in")
    with page_server.client() as http:
        token = http.post("/auth/login", json={"email": email, "password": PASSWORD})
        headers = {"authorization": f"Bearer {token.json()['access_token']}"}
        assert [s["title"] for s in http.get("/sessions", headers=headers).json()] == ["Greetings"]

    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#auth-error")).not_to_be_empty()
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".session .title")).to_have_text("Greetings")
    page.locator(".session .title").click()
    expect(reply(page).locator(".text")).to_have_text("Hello there")
    expect(page.locator(".message.user .text")).to_have_text("Hi")


def test_stop_ends_the_reply_and_keeps_its_text(
    page: Page, page_server: LiveServer, upstream: FakeAnthropic
) -> None:
    upstream.enqueue(TextReply(chunks=tuple(f"word{i} " for i in range(600)), chunk_delay=0.05))
    sign_up(page)
    say(page, "Talk for a long time")
    streaming = reply(page)
    expect(streaming.locator(".text")).to_contain_text("word3 ")
    page.get_by_role("button", name="Stop").click()
    finished(streaming, "cancelled")
    expect(streaming.locator(".usage")).to_contain_text("cancelled")
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    shown = streaming.locator(".text").text_content()
    rows = page_server.query(
        "SELECT content, status FROM messages WHERE role = 'assistant' AND id = :id",
        id=page_server.id(str(streaming.get_attribute("data-id"))),
    )
    assert rows == [(shown, "cancelled")]


def test_a_guest_stops_a_reply(page: Page, upstream: FakeAnthropic) -> None:
    upstream.enqueue(TextReply(chunks=tuple(f"word{i} " for i in range(600)), chunk_delay=0.05))
    as_guest(page)
    say(page, "Talk for a long time")
    expect(reply(page).locator(".text")).to_contain_text("word3 ")
    page.get_by_role("button", name="Stop").click()
    finished(reply(page), "cancelled")
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    wait_for_hang_up(upstream)  # and the server stopped asking the model


def test_regenerate_edit_and_switch_between_branches(
    page: Page, page_server: LiveServer, upstream: FakeAnthropic
) -> None:
    upstream.enqueue(
        TextReply(chunks=("First answer",)),
        TextReply(chunks=("Second answer",)),
        TextReply(chunks=("Answer to the edit",)),
    )
    sign_up(page)
    say(page, "Question")
    first = reply_id(finished(reply(page)))
    reply(page).get_by_role("button", name="Regenerate").click()
    expect(finished(newer_reply(page, first)).locator(".text")).to_have_text("Second answer")
    versions = reply(page).locator(".branches span")
    expect(versions).to_have_text("2/2")
    reply(page).get_by_role("button", name="Previous version").click()
    expect(reply(page).locator(".text")).to_have_text("First answer")
    expect(versions).to_have_text("1/2")

    question = page.locator(".message.user")
    question.get_by_role("button", name="Edit").click()
    page.get_by_label("Edit message").fill("Question, edited")
    page.locator("form.edit").get_by_role("button", name="Send").click()
    expect(finished(reply(page)).locator(".text")).to_have_text("Answer to the edit")
    expect(question.locator(".text")).to_have_text("Question, edited")
    expect(question.locator(".branches span")).to_have_text("2/2")
    shoot(page, "branches")
    # The edit went to the model without the first question's turns.
    assert [m["role"] for m in upstream.requests[-1].body["messages"]] == ["user"]

    question.get_by_role("button", name="Previous version").click()
    expect(question.locator(".text")).to_have_text("Question")
    expect(reply(page).locator(".text")).to_have_text("Second answer")  # that branch's newest
    # After a reload the page shows the server's active branch: the newest message's.
    page.reload()
    expect(reply(page).locator(".text")).to_have_text("Answer to the edit")


def test_a_guest_regenerates_and_switches(page: Page, upstream: FakeAnthropic) -> None:
    upstream.enqueue(TextReply(chunks=("One",)), TextReply(chunks=("Two",)))
    as_guest(page)
    say(page, "Question")
    first = reply_id(finished(reply(page)))
    reply(page).get_by_role("button", name="Regenerate").click()
    expect(finished(newer_reply(page, first)).locator(".text")).to_have_text("Two")
    reply(page).get_by_role("button", name="Previous version").click()
    expect(reply(page).locator(".text")).to_have_text("One")
    sent = upstream.requests[-1].body["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [("user", "Question")]


def send_image(page: Page, upstream: FakeAnthropic, folder: Path) -> None:
    """Attach dot.png, ask about it, and check the model received its bytes."""
    image = folder / "dot.png"
    image.write_bytes(PNG)
    upstream.enqueue(TextReply(chunks=("A dot",)))
    page.locator("#file").set_input_files(str(image))
    expect(page.locator("#attachments .file")).to_contain_text("dot.png")
    say(page, "What is this?")
    finished(reply(page))
    expect(page.locator("#attachments .file")).to_have_count(0)
    content = upstream.requests[-1].body["messages"][-1]["content"]
    images = [block for block in content if block["type"] == "image"]
    assert [base64.b64decode(block["source"]["data"]) for block in images] == [PNG]


def test_an_attachment_reaches_the_model_and_shows_in_the_message(
    page: Page, upstream: FakeAnthropic, tmp_path: Path
) -> None:
    sign_up(page)
    send_image(page, upstream, tmp_path)
    # Shown from the stored file, fetched with the token: after a reload too.
    page.reload()
    picture = page.locator(".message.user img")
    expect(picture).to_have_attribute("alt", "dot.png")
    expect(picture).to_have_attribute("src", re.compile(r"^blob:"))
    shoot(page, "attachment")
    assert picture.evaluate("img => img.decode().then(() => img.naturalWidth)") == 96


def test_a_guest_sends_a_file_inline(page: Page, upstream: FakeAnthropic, tmp_path: Path) -> None:
    as_guest(page)
    send_image(page, upstream, tmp_path)
    picture = page.locator(".message.user img")
    expect(picture).to_have_attribute("src", re.compile(r"^data:image/png;base64,"))


def test_a_refused_file_says_why_and_nothing_is_attached(
    page: Page, page_server: LiveServer, tmp_path: Path
) -> None:
    program = tmp_path / "tool.exe"
    program.write_bytes(b"MZ\x90\x00" + bytes(range(256)) * 4)
    sign_up(page)
    files = page_server.count("files")
    page.locator("#file").set_input_files(str(program))
    expect(page.locator("#banner")).to_contain_text("tool.exe: Unsupported file type")
    expect(page.locator("#attachments .file")).to_have_count(0)
    assert page_server.count("files") == files


def test_thinking_is_shown_collapsed(page: Page, upstream: FakeAnthropic) -> None:
    upstream.enqueue(ThinkingReply(thinking=("Let me", " think."), chunks=("Because.",)))
    sign_up(page)
    page.get_by_label("Thinking").select_option("low")
    say(page, "Why?")
    answer = finished(reply(page))
    thinking = answer.locator("details.thinking")
    expect(thinking).not_to_have_attribute("open", "")
    expect(thinking.locator(".text")).to_be_hidden()
    expect(answer.locator(":scope > .text")).to_have_text("Because.")
    assert upstream.requests[-1].body["thinking"]["type"] == "enabled"
    shoot(page, "thinking")
    thinking.locator("summary").click()
    expect(thinking.locator(".text")).to_have_text("Let me think.")


def test_a_reload_mid_reply_resumes_it(
    page: Page, page_server: LiveServer, upstream: FakeAnthropic
) -> None:
    hold = threading.Event()
    upstream.enqueue(TextReply(chunks=("Part one, ", "part two, ", "the end."), hold=hold))
    try:
        sign_up(page)
        say(page, "Tell me in parts")
        expect(reply(page).locator(".text")).to_have_text("Part one, ")
        page.reload()
        streaming = reply(page)
        expect(streaming).to_have_attribute("data-status", "streaming")
        expect(streaming.locator(".text")).to_have_text("Part one, ")
        expect(page.get_by_role("button", name="Stop")).to_be_visible()
    finally:
        hold.set()
    # The rest arrives exactly once, after what was shown.
    expect(finished(reply(page)).locator(".text")).to_have_text("Part one, part two, the end.")


def test_an_upstream_error_shows_in_the_reply(page: Page, upstream: FakeAnthropic) -> None:
    upstream.enqueue(HttpError(400, "invalid_request_error", "prompt is not acceptable"))
    sign_up(page)
    say(page, "Something odd")
    failed = finished(reply(page), "error")
    expect(failed.locator(".error")).not_to_be_empty()
    expect(page.get_by_role("button", name="Send")).to_be_visible()


def test_an_error_before_the_stream_shows_in_the_banner(
    page: Page, page_server: LiveServer, upstream: FakeAnthropic
) -> None:
    sign_up(page)
    # Another tab deletes the session; the page's next message names it.
    upstream.enqueue(TextReply(chunks=("Hi",)))
    say(page, "Hi")
    finished(reply(page))
    token = page.evaluate("JSON.parse(localStorage.getItem('zyron.tokens')).access")
    session = page.url.rsplit("/", 1)[-1]
    with httpx.Client(base_url=page_server.url) as http:
        deleted = http.delete(f"/sessions/{session}", headers={"authorization": f"Bearer {token}"})
        assert deleted.status_code == 204
    say(page, "Still there?")
    expect(page.locator("#banner")).to_contain_text("session")
    expect(page.get_by_label("Message", exact=True)).to_have_value("Still there?")


def test_an_expired_access_token_is_refreshed(page: Page, page_server: LiveServer) -> None:
    with page_server.client() as http:
        account = signup(http)
    # A stored pair whose access token is no longer valid: the page refreshes it and goes on.
    pair = {"access": "not-a-valid-token", "refresh": account.refresh_token}
    page.evaluate("pair => localStorage.setItem('zyron.tokens', JSON.stringify(pair))", pair)
    page.reload()
    expect(page.locator("#who")).to_have_text(account.email)


def test_a_dropped_stream_is_resumed_exactly_from_its_last_event(
    page: Page, page_server: LiveServer, upstream: FakeAnthropic
) -> None:
    """The connection ends after the first delta: the page asks for the rest (Last-Event-ID)."""
    upstream.enqueue(TextReply(chunks=("One, ", "two, ", "three.")))
    resumed: list[str | None] = []

    def cut_short(route: Route) -> None:
        whole = route.fetch()
        events = whole.text().split("\n\n")
        route.fulfill(response=whole, body="\n\n".join(events[:2]) + "\n\n")

    page.route("**/chat", cut_short)
    page.on(
        "request",
        lambda r: resumed.append(r.headers.get("last-event-id")) if "/stream" in r.url else None,
    )
    sign_up(page)
    say(page, "Count")
    expect(finished(reply(page)).locator(".text")).to_have_text("One, two, three.")
    assert resumed == [str(len("One, "))]


def test_text_is_shown_as_text(page: Page, upstream: FakeAnthropic) -> None:
    markup = '<img src=x onerror="document.title=1"><b>bold</b>'
    upstream.enqueue(TextReply(chunks=(markup,)))
    as_guest(page)
    say(page, markup)
    expect(finished(reply(page)).locator(".text")).to_have_text(markup)
    expect(page.locator(".message.user .text")).to_have_text(markup)
    expect(page.locator(".message img, .message b")).to_have_count(0)
    assert page.title() == "Zyron"


def test_new_chat_and_delete(page: Page, page_server: LiveServer, upstream: FakeAnthropic) -> None:
    upstream.enqueue(TextReply(chunks=("One",)), TextReply(chunks=("Two",)))
    sign_up(page)
    say(page, "First chat")
    finished(reply(page))
    page.get_by_role("button", name="New chat", exact=True).click()
    expect(page.locator(".message")).to_have_count(0)
    say(page, "Second chat")
    finished(reply(page))
    sessions = page.locator(".session")
    expect(sessions).to_have_count(2)
    second = page.url.rsplit("/", 1)[-1]
    page.once("dialog", lambda dialog: dialog.accept())
    sessions.first.get_by_role("button", name="Delete").click()
    expect(sessions).to_have_count(1)
    expect(page.locator(".message")).to_have_count(0)  # the open chat was the one deleted
    assert page_server.query(
        "SELECT count(*) FROM chat_sessions WHERE id = :id", id=page_server.id(second)
    ) == [(0,)]


def test_a_refused_refresh_token_signs_out_saying_why(page: Page, page_server: LiveServer) -> None:
    pair = {"access": "not-a-valid-token", "refresh": "not-a-valid-refresh-token"}
    page.evaluate("pair => localStorage.setItem('zyron.tokens', JSON.stringify(pair))", pair)
    page.reload()
    expect(page.locator("#auth")).to_be_visible()
    expect(page.locator("#auth-error")).to_contain_text("sign in again")
    assert page.evaluate("localStorage.getItem('zyron.tokens')") is None


def test_signing_out_leaves_nothing_for_the_next_account(
    page: Page, upstream: FakeAnthropic, tmp_path: Path
) -> None:
    image = tmp_path / "dot.png"
    image.write_bytes(PNG)
    sign_up(page)
    page.locator("#file").set_input_files(str(image))
    expect(page.locator("#attachments .file")).to_contain_text("dot.png")
    page.get_by_label("Message", exact=True).fill("a draft")
    page.get_by_role("button", name="Sign out").click()
    sign_up(page)
    expect(page.locator("#attachments .file")).to_have_count(0)
    expect(page.get_by_label("Message", exact=True)).to_have_value("")
    expect(page.locator(".session")).to_have_count(0)


def test_the_event_parser_takes_any_line_ending_and_chunking(page: Page) -> None:
    """api.js's readEvents, in the browser: CRLF split across chunks, a character split across
    chunks, multi-line data, comments, empty data."""
    stream = (
        'id: 0\r\nevent: session\r\ndata: {"a":\r\ndata: 1}\r\n\r\n'
        ": ping\n\n"
        'id: 5\nevent: delta\ndata: {"text": "h\u00e9"}\n\n'
        "data:\n\n"
        "id: 6\revent: done\rdata: {}\r\r"
    ).encode()
    cuts = [stream.index(b"\r\n") + 1, stream.index("\u00e9".encode()) + 1, len(stream) - 1]
    chunks = [list(stream[a:b]) for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    events = page.evaluate(
        """async (chunks) => {
          const { readEvents } = await import("/web/api.js");
          const body = new ReadableStream({
            start(controller) {
              for (const chunk of chunks) controller.enqueue(new Uint8Array(chunk));
              controller.close();
            },
          });
          const seen = [];
          for await (const event of readEvents(body)) seen.push(event);
          return seen;
        }""",
        chunks,
    )
    assert events == [
        {"id": 0, "event": "session", "data": {"a": 1}},
        {"id": 5, "event": "delta", "data": {"text": "h\u00e9"}},
        {"id": 6, "event": "done", "data": {}},
    ]
