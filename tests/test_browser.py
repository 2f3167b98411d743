"""The browser client, end to end: real server process, headless Chromium, two people.

Synchronous on purpose: Playwright's async API needs asyncio, and these tests drive a
server in another process, so nothing here runs under Trio.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    Route,
    WebSocketRoute,
    expect,
    sync_playwright,
)

from . import netcut
from .browser_support import CHROMIUM_ARGS, SCREENSHOTS, ServerProcess, require_chromium, server_process

DESKTOP = {"width": 1100, "height": 700}
PHONE = {"width": 390, "height": 844}
# Generous for a loaded CI machine; expect() returns as soon as the page gets there.
UI_TIMEOUT_MS = 10_000


@pytest.fixture(scope="module")
def chat_server() -> Iterator[ServerProcess]:
    with server_process() as running:
        yield running


expect.set_options(timeout=UI_TIMEOUT_MS)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    # Importing trio-asyncio (the Redis tests do) installs its event-loop policy process-wide;
    # Playwright's sync API needs a plain asyncio loop, and nothing else here uses asyncio.
    previous = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    try:
        with sync_playwright() as driver:
            yield driver
    finally:
        asyncio.set_event_loop_policy(previous)


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=require_chromium(), args=CHROMIUM_ARGS, headless=True)
    yield browser
    browser.close()


class People:
    """Browser contexts, one per person: separate storage, like separate devices."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.contexts: list[BrowserContext] = []
        self.errors: list[str] = []

    def page(self, viewport: dict[str, int] = DESKTOP) -> Page:
        context = self.browser.new_context(viewport=viewport, device_scale_factor=1)  # type: ignore[arg-type]
        context.set_default_timeout(UI_TIMEOUT_MS)
        self.contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def people(browser: Browser) -> Iterator[People]:
    everyone = People(browser)
    yield everyone
    everyone.close()
    assert not everyone.errors, f"JavaScript errors in the page: {everyone.errors}"


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), animations="disabled", caret="hide")


def create_room(page: Page, server: ServerProcess, owner: str, *, room: str = "", password: str = "",
                max_users: int | None = None, destroy: bool = True, e2e: bool = False) -> str:
    """Creates a room through the form; the share link it shows."""
    page.goto(server.url + "/")
    page.fill("#create-room-name", room)
    page.fill("#create-owner-name", owner)
    if password:
        page.fill("#create-password", password)
    if max_users is not None:
        page.fill("#create-max-users", str(max_users))
    if not destroy:
        page.uncheck("#create-destroy")
    if e2e:
        page.check("#create-e2e")
    page.click("#create-submit")
    expect(page.locator("#chat-view")).to_be_visible()
    expect(page.locator("#status")).to_be_hidden()  # Connected.
    link = page.input_value("#share-link")
    assert "#room=" in link
    return link


def join_room(page: Page, link: str, name: str, password: str = "") -> None:
    page.goto(link)
    expect(page.locator("#join-view")).to_be_visible()
    page.fill("#join-name", name)
    if password:
        expect(page.locator("#join-password")).to_be_visible()
        page.fill("#join-password", password)
    page.click("#join-submit")
    expect(page.locator("#chat-view")).to_be_visible()
    expect(page.locator("#status")).to_be_hidden()


def say(page: Page, text: str) -> None:
    page.fill("#message-input", text)
    page.press("#message-input", "Enter")


def rest(server: ServerProcess, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        server.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_two_people_create_join_and_chat(people: People, chat_server: ServerProcess) -> None:
    ada = people.page()
    ada.goto(chat_server.url + "/")
    ada.fill("#create-room-name", "Friday planning")
    ada.fill("#create-owner-name", "Ada")
    screenshot(ada, "create-room.png")
    link = create_room(ada, chat_server, "Ada", room="Friday planning")
    expect(ada.locator("#room-name")).to_have_text("Friday planning")
    expect(ada.locator("#close-room")).to_be_visible()

    grace = people.page(PHONE)
    grace.goto(link)
    expect(grace.locator("#join-info")).to_contain_text("Hosted by Ada")
    expect(grace.locator("#join-password-row")).to_be_hidden()
    join_room(grace, link, "Grace")
    expect(grace.locator("#close-room")).to_be_hidden()  # Only the owner may close.

    expect(ada.locator(".sys.presence", has_text="Grace joined")).to_be_visible()
    lines = ["Hello Grace! Agenda is in the doc.", "Hi Ada, on my way. I will bring the slides and the coffee.",
             "Perfect, thanks"]
    # Each line is seen before the next is typed, so both sockets agree on the order.
    say(ada, lines[0])
    expect(grace.locator(".msg .bubble")).to_have_count(1)
    say(grace, lines[1])
    expect(ada.locator(".msg .bubble")).to_have_count(2)
    say(ada, lines[2])

    # Each side sees every message, with names, and only its own marked as its own.
    for page in (ada, grace):
        expect(page.locator(".msg .bubble")).to_have_text(lines)
        expect(page.locator(".msg time").first).to_have_text(re.compile(r"\d\d?:\d\d"))
    hello, reply, thanks = lines
    expect(ada.locator(".msg.mine .bubble")).to_have_text([hello, thanks])
    expect(grace.locator(".msg.mine .bubble")).to_have_text([reply])
    expect(grace.locator(".msg:not(.mine) .author").first).to_have_text("Ada")
    expect(ada.locator("#countdown")).to_contain_text(":")
    expect(ada.locator(".msg.unconfirmed")).to_have_count(0)  # Every message of Ada's is confirmed.
    screenshot(ada, "chat-desktop.png")
    screenshot(grace, "chat-phone.png")
    grace.click("#people-toggle")  # At phone width the online list is a drawer.
    expect(grace.locator("#people")).to_be_in_viewport()
    screenshot(grace, "chat-phone-people.png")


def test_presence_list_and_count_follow_people(people: People, chat_server: ServerProcess) -> None:
    ada = people.page()
    link = create_room(ada, chat_server, "Ada", max_users=5)
    expect(ada.locator("#online-count")).to_have_text("1")
    expect(ada.locator("#max-users")).to_have_text("5")
    expect(ada.locator("#online-list li .person")).to_have_text(["Ada"])
    expect(ada.locator("#online-list li .tag")).to_have_text(["you"])

    grace = people.page()
    join_room(grace, link, "Grace")
    linus = people.page()
    join_room(linus, link, "Linus")
    for page in (ada, grace, linus):
        expect(page.locator("#online-count")).to_have_text("3")
        expect(page.locator("#online-list li .person")).to_have_count(3)
    # Seeded from the room details, so a late joiner sees who was already there.
    expect(linus.locator("#online-list li .person")).to_have_text(["Linus", "Ada", "Grace"])

    grace.click("#leave-room")
    expect(grace.locator("#home-view")).to_be_visible()
    for page in (ada, linus):
        expect(page.locator(".sys.presence", has_text="Grace left")).to_be_visible()
        expect(page.locator("#online-count")).to_have_text("2")
        expect(page.locator("#online-list li .person")).not_to_contain_text(["Grace"])


def test_owner_closes_room_and_members_see_it(people: People, chat_server: ServerProcess) -> None:
    ada = people.page()
    link = create_room(ada, chat_server, "Ada", room="Retro")
    grace = people.page()
    join_room(grace, link, "Grace")
    say(grace, "Thanks everyone, see you next sprint")
    expect(ada.locator(".msg .bubble")).to_have_count(1)

    close = ada.locator("#close-room")
    close.click()
    expect(close).to_have_text("Click again to close")  # A stray click does not end the room.
    close.click()
    # Each side in its own words: the owner did it, the others were told.
    for page, words in ((ada, "You closed the room."), (grace, "The owner closed this room.")):
        expect(page.locator(".sys.ending")).to_have_text(words)
        expect(page.locator("#status")).to_contain_text(words)
        expect(page.locator("#message-input")).to_be_disabled()
    screenshot(grace, "room-closed.png")

    # The share link now says the room is gone instead of offering a form that cannot work.
    late = people.page()
    late.goto(link)
    expect(late.locator("#join-title")).to_have_text("Room not found")
    expect(late.locator("#join-form")).to_be_hidden()


def test_the_owner_removes_a_member_and_names_are_unique(people: People, chat_server: ServerProcess) -> None:
    ada = people.page()
    link = create_room(ada, chat_server, "Ada", room="Standup")
    grace = people.page()
    join_room(grace, link, "Grace")
    linus = people.page()
    join_room(linus, link, "Linus")
    expect(ada.locator("#online-list li .person")).to_have_count(3)
    # The remove buttons are the owner's alone, one by each other member.
    expect(ada.locator("#online-list .remove-member")).to_have_count(2)
    expect(ada.locator("#online-list li", has_text="Ada").locator(".remove-member")).to_have_count(0)
    for member in (grace, linus):
        expect(member.locator("#online-list li .person")).to_have_count(3)
        expect(member.locator("#online-list .remove-member")).to_have_count(0)
        expect(member.locator("#online-list li", has_text="Ada").locator(".tag")).to_have_text("owner")

    # A name is taken whatever its case: the join form says so in a sentence.
    taken = people.page()
    taken.goto(link)
    taken.fill("#join-name", "GRACE")
    taken.click("#join-submit")
    expect(taken.locator("#join-error")).to_contain_text("The name \u201cGRACE\u201d is already taken in this room")

    remove = ada.locator("#online-list li", has_text="Grace").locator(".remove-member")
    remove.click()
    expect(remove).to_have_text("Click again to remove")  # A stray click removes nobody.
    screenshot(ada, "remove-member.png")
    remove.click()
    expect(grace.locator(".sys.ending")).to_have_text("You were removed from the room by its owner.")
    expect(grace.locator("#message-input")).to_be_disabled()
    for page in (ada, linus):
        expect(page.locator(".sys", has_text="Grace was removed by the room owner")).to_be_visible()
        expect(page.locator("#online-count")).to_have_text("2")
        me_first = ["Ada", "Linus"] if page is ada else ["Linus", "Ada"]
        expect(page.locator("#online-list li .person")).to_have_text(me_first)
    say(linus, "carry on")
    expect(ada.locator(".msg .bubble", has_text="carry on")).to_be_visible()


def test_password_room_refuses_wrong_password(people: People, chat_server: ServerProcess) -> None:
    ada = people.page()
    link = create_room(ada, chat_server, "Ada", room="Secret", password="correct horse")

    grace = people.page()
    grace.goto(link)
    expect(grace.locator("#join-info")).to_have_text("This room is protected by a password.")
    expect(grace.locator("#join-password")).to_be_visible()
    grace.fill("#join-name", "Grace")
    grace.fill("#join-password", "battery staple")
    grace.click("#join-submit")
    expect(grace.locator("#join-error")).to_have_text("Wrong password. Please try again.")
    expect(grace.locator("#join-view")).to_be_visible()
    screenshot(grace, "wrong-password.png")

    grace.fill("#join-password", "correct horse")
    grace.click("#join-submit")
    expect(grace.locator("#chat-view")).to_be_visible()
    # Details of a password room need the password: the list is seeded all the same.
    expect(grace.locator("#online-list li .person")).to_have_text(["Grace", "Ada"])
    expect(grace.locator("#room-name")).to_have_text("Secret")


def test_full_room_says_so(people: People, chat_server: ServerProcess) -> None:
    ada = people.page()
    link = create_room(ada, chat_server, "Ada", max_users=1)
    grace = people.page()
    grace.goto(link)
    expect(grace.locator("#join-error")).to_contain_text("The room is full")
    grace.fill("#join-name", "Grace")
    grace.click("#join-submit")
    expect(grace.locator("#join-error")).to_have_text("The room is full. Try again when someone leaves.")


def test_markup_in_messages_and_names_stays_text(people: People, chat_server: ServerProcess) -> None:
    payload = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script><b>bold</b>'
    ada = people.page()
    link = create_room(ada, chat_server, "Ada", room="<i>room</i>")
    grace = people.page()
    join_room(grace, link, '<img src=y onerror="window.__pwned=3">')
    say(grace, payload)

    for page in (ada, grace):
        expect(page.locator(".msg .bubble")).to_have_text([payload])
        assert page.locator("#messages img, #messages script, #messages b, #online-list img").count() == 0
        assert page.evaluate("window.__pwned") is None
    expect(ada.locator(".msg .author")).to_have_text(['<img src=y onerror="window.__pwned=3">'])
    expect(ada.locator(".sys.presence").first).to_have_text('<img src=y onerror="window.__pwned=3"> joined')
    expect(grace.locator("#room-name")).to_have_text("<i>room</i>")
    assert grace.locator("#room-name i").count() == 0


def test_owner_reload_reconnects_as_owner(people: People, chat_server: ServerProcess) -> None:
    ada = people.page()
    link = create_room(ada, chat_server, "Ada", destroy=False)
    grace = people.page()
    join_room(grace, link, "Grace")

    ada.reload()
    expect(ada.locator("#chat-view")).to_be_visible()
    expect(ada.locator("#status")).to_be_hidden()
    expect(ada.locator("#close-room")).to_be_visible()
    expect(grace.locator(".sys.presence", has_text="Ada joined")).to_have_count(1)
    expect(grace.locator("#online-count")).to_have_text("2")
    say(grace, "welcome back")
    expect(ada.locator(".msg .bubble")).to_have_text(["welcome back"])
    # Still the owner after the reload: the stored owner token closes the room.
    ada.click("#close-room")
    ada.click("#close-room")
    expect(grace.locator(".sys.ending")).to_have_text("The owner closed this room.")


def test_expired_room_tells_everyone(people: People, chat_server: ServerProcess) -> None:
    created = rest(chat_server, "/rooms/", {"owner_name": "Ada", "expiry_seconds": 2,
                                             "preferences": {"destroy_on_owner_offline": False}})
    grace = people.page()
    join_room(grace, f"{chat_server.url}/#room={created['room_id']}", "Grace")
    expect(grace.locator(".sys.ending")).to_have_text("This room has expired.")
    expect(grace.locator("#message-input")).to_be_disabled()
    expect(grace.locator("#countdown")).to_have_text("ended")


def test_full_room_refused_at_the_socket(people: People, chat_server: ServerProcess) -> None:
    """A pass granted while a seat was free, used after it was taken: close 1008 "Room is full"."""
    created = rest(chat_server, "/rooms/", {"owner_name": "Ada", "max_users": 1,
                                             "preferences": {"destroy_on_owner_offline": False}})
    room_id = created["room_id"]
    linus_pass = rest(chat_server, f"/rooms/{room_id}/join", {"display_name": "Linus"})
    grace = people.page()
    join_room(grace, f"{chat_server.url}/#room={room_id}", "Grace")

    linus = people.page()
    session = {"role": "member", "name": "Linus", "ws_url": linus_pass["ws_url"],
               "expires_at": linus_pass["expires_at"], "password": None}
    linus.add_init_script(f"sessionStorage.setItem({json.dumps('ephemeralchat:room:' + room_id)}, "
                          f"{json.dumps(json.dumps(session))});")
    linus.goto(f"{chat_server.url}/#room={room_id}")
    expect(linus.locator("#status")).to_contain_text("The room is full")
    expect(linus.locator("#status-action")).to_have_text("Try again")


def test_a_newcomer_sees_the_conversation_so_far(people: People, chat_server: ServerProcess) -> None:
    ada = people.page()
    link = create_room(ada, chat_server, "Ada")
    earlier = ["Agenda: the release", "Notes are in the doc"]
    for line in earlier:
        say(ada, line)
    expect(ada.locator(".msg .bubble")).to_have_text(earlier)
    expect(ada.locator(".msg.pending")).to_have_count(0)

    grace = people.page()
    join_room(grace, link, "Grace")
    expect(grace.locator(".msg .bubble")).to_have_text(earlier)
    expect(grace.locator(".msg:not(.mine) .author").first).to_have_text("Ada")
    say(ada, "Welcome Grace")
    expect(grace.locator(".msg .bubble")).to_have_text([*earlier, "Welcome Grace"])


def test_a_dropped_member_resumes_with_the_whole_conversation(people: People, chat_server: ServerProcess) -> None:
    """Grace's network goes away mid-conversation (her connections die without a close) while
    Ada goes on talking; Grace types a line while offline. Back online, her page resumes by
    itself and both see the same conversation: complete, in order, each message once."""
    port = urlsplit(chat_server.url).port
    assert port is not None
    ada = people.page()
    link = create_room(ada, chat_server, "Ada")
    adas = netcut.connections_to(port)
    grace = people.page()
    join_room(grace, link, "Grace")
    say(ada, "one")
    expect(grace.locator(".msg .bubble")).to_have_text(["one"])
    say(grace, "two")
    expect(ada.locator(".msg .bubble")).to_have_text(["one", "two"])

    grace.context.set_offline(True)  # Her page's attempts to come back fail until it is online.
    netcut.cut(port, netcut.connections_to(port) - adas)
    expect(grace.locator("#status")).to_contain_text("Connection lost. Reconnecting in")
    for line in ("three", "four"):
        say(ada, line)
    expect(ada.locator(".msg .bubble")).to_have_text(["one", "two", "three", "four"])
    say(grace, "typed while offline")
    expect(grace.locator(".msg.pending .bubble")).to_have_text(["typed while offline"])
    expect(grace.locator(".msg.pending .state")).to_have_text(["Sending…"])
    screenshot(grace, "chat-offline.png")

    grace.context.set_offline(False)
    expect(grace.locator("#status-text")).to_have_text("Reconnected")
    conversation = ["one", "two", "three", "four", "typed while offline"]
    for page in (ada, grace):
        expect(page.locator(".msg .bubble")).to_have_text(conversation)
    expect(grace.locator(".msg.pending, .msg.unconfirmed")).to_have_count(0)
    expect(grace.locator(".msg.mine .bubble")).to_have_text(["two", "typed while offline"])
    say(ada, "five")  # Anything still on its way would arrive before this.
    for page in (ada, grace):
        expect(page.locator(".msg .bubble")).to_have_text([*conversation, "five"])
    expect(grace.locator("#status")).to_be_hidden()  # The note goes by itself.
    # A drop within the grace is no departure: Ada never saw Grace leave, nor join twice.
    expect(ada.locator(".sys.presence", has_text="Grace left")).to_have_count(0)
    expect(ada.locator(".sys.presence", has_text="Grace joined")).to_have_count(1)


def test_an_unacknowledged_message_is_sent_again_and_posted_once(people: People, chat_server: ServerProcess) -> None:
    """The server takes Grace's message, but the line back to her is lost (no ack, no echo)
    before the socket drops; her page sends it again with the same client_id after the resume."""
    ada = people.page()
    link = create_room(ada, chat_server, "Ada")
    grace = people.page()
    sockets: list[tuple[WebSocketRoute, WebSocketRoute]] = []
    sent: list[tuple[int, dict[str, Any]]] = []  # (socket number, frame) of what the page sent
    lossy = False

    def through(route: WebSocketRoute) -> None:
        server = route.connect_to_server()
        number = len(sockets)

        def upstream(message: str | bytes) -> None:
            sent.append((number, json.loads(message)))
            server.send(message)

        route.on_message(upstream)
        server.on_message(lambda message: None if lossy else route.send(message))
        sockets.append((route, server))

    grace.route_web_socket("**/rooms/**", through)
    join_room(grace, link, "Grace")
    assert len(sockets) == 1

    lossy = True
    say(grace, "did you get this?")
    expect(ada.locator(".msg .bubble")).to_have_text(["did you get this?"])
    expect(grace.locator(".msg.pending .bubble")).to_have_text(["did you get this?"])
    lossy = False
    # Both legs of the proxied socket drop, as on a flaky Wi-Fi; the page must come back by itself.
    page_side, server_side = sockets[0]
    server_side.close(code=1001, reason="network blip")
    page_side.close(code=1011, reason="network blip")
    expect(grace.locator("#status-text")).to_have_text("Reconnected")
    assert len(sockets) == 2
    expect(grace.locator(".msg.pending, .msg.unconfirmed")).to_have_count(0)
    say(ada, "got it, once")
    for page in (ada, grace):
        expect(page.locator(".msg .bubble")).to_have_text(["did you get this?", "got it, once"])
    expect(grace.locator(".msg.mine .bubble")).to_have_text(["did you get this?"])
    copies = [(number, frame["client_id"]) for number, frame in sent if frame.get("text") == "did you get this?"]
    assert [number for number, _ in copies] == [0, 1], sent  # Sent once on each socket...
    assert copies[0][1] == copies[1][1]  # ...under one client_id, so the room has it once.
    expect(ada.locator(".sys.presence", has_text="Grace joined")).to_have_count(2)
    # Seeded again after reconnecting (the list is rebuilt, not left as it was when the socket dropped).
    expect(grace.locator("#online-list li .tag")).to_have_text(["you", "owner"])
    expect(grace.locator("#online-list li .person").first).to_have_text("Grace")


def test_a_refused_message_is_marked_not_sent(people: People, chat_server: ServerProcess) -> None:
    ada = people.page()
    create_room(ada, chat_server, "Ada")
    # The box stops at the limit; a page that lets more through gets the server's answer.
    ada.evaluate("document.getElementById('message-input').removeAttribute('maxlength')")
    say(ada, "x" * 4001)
    expect(ada.locator(".msg.failed .state")).to_have_text("Not sent: Message is longer than 4000 characters")
    say(ada, "shorter")
    expect(ada.locator(".msg:not(.failed) .bubble")).to_have_text(["shorter"])
    expect(ada.locator(".msg.pending, .msg.unconfirmed")).to_have_count(0)


def test_api_docs_render_with_nothing_from_other_hosts(people: People, chat_server: ServerProcess) -> None:
    page = people.page()
    elsewhere: list[str] = []
    own = urlsplit(chat_server.url).netloc

    def only_this_server(route: Route) -> None:
        if urlsplit(route.request.url).netloc == own:
            route.continue_()
        else:  # as on a machine without internet
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_this_server)
    page.goto(chat_server.url + "/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("EphemeralChat")
    expect(page.locator(".swagger-ui .opblock-summary-path", has_text="/rooms/{room_id}/join")).to_be_visible()
    assert not elsewhere, f"/docs asked other hosts for {elsewhere}"
    screenshot(page, "api-docs.png")


def test_typing_shows_and_goes_and_seen_by_follows_the_newest_message(
    people: People, chat_server: ServerProcess
) -> None:
    ada = people.page()
    ada.clock.install()  # Time runs as usual; fast_forward skips the wait for the typing line to go.
    link = create_room(ada, chat_server, "Ada")
    grace = people.page()
    join_room(grace, link, "Grace")
    expect(ada.locator(".sys.presence", has_text="Grace joined")).to_be_visible()

    grace.fill("#message-input", "Hel")  # Composing: Ada sees it, Grace does not see herself.
    expect(ada.locator("#typing")).to_have_text("Grace is typing…")
    expect(grace.locator("#typing")).to_have_text("")
    ada.clock.fast_forward(6000)  # About 5 s after her last typing frame, it goes.
    expect(ada.locator("#typing")).to_have_text("")

    ada.fill("#message-input", "Are you th")
    expect(grace.locator("#typing")).to_have_text("Ada is typing…")
    say(ada, "Are you there?")  # Her message arrives: she is no longer typing it.
    expect(grace.locator(".msg .bubble")).to_have_text(["Are you there?"])
    expect(grace.locator("#typing")).to_have_text("")

    # Grace's page is visible, so she has seen it: Ada reads so under her newest message.
    expect(ada.locator("#seen-by")).to_have_text("Seen by Grace")
    expect(grace.locator("#seen-by")).to_be_hidden()  # Nobody else has seen Grace's newest yet.
    screenshot(ada, "chat-seen-by.png")
    say(grace, "Yes!")
    expect(ada.locator(".msg .bubble")).to_have_text(["Are you there?", "Yes!"])
    expect(grace.locator("#seen-by")).to_have_text("Seen by Ada")
    # A newcomer learns from the room's details who has seen what.
    linus = people.page()
    join_room(linus, link, "Linus")
    expect(linus.locator("#seen-by")).to_have_text(re.compile(r"Seen by Ada(, Grace)?$"))
