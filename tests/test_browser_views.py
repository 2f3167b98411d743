"""The browser client where a person's attention is: a phone's screen, a tab in the
background, a room that ended or never was. Same server, browser and people as test_browser."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from . import test_browser as shared
from .browser_support import ServerProcess
from .test_browser import PHONE, People, create_room, join_room, say, screenshot

# The same fixtures: one server and one browser for this module, a fresh set of people per test.
playwright, browser, chat_server, people = shared.playwright, shared.browser, shared.chat_server, shared.people

# Headless Chromium keeps every page visible whatever tab is in front, so a page is told it
# went to the background the way a browser tells it: document.hidden and a visibilitychange.
SWITCH_TAB = """(away) => {
  Object.defineProperty(document, "hidden", { configurable: true, get: () => away });
  Object.defineProperty(document, "visibilityState", { configurable: true, get: () => away ? "hidden" : "visible" });
  document.dispatchEvent(new Event("visibilitychange"));
}"""
# The browser's notifications as the page sees them, with what it asked and showed kept.
NOTIFICATIONS = """
window.permissionAsked = 0;
window.notificationsShown = [];
window.Notification = class {
  static permission = "default";
  static async requestPermission() {
    window.permissionAsked += 1;
    window.Notification.permission = "granted";
    return "granted";
  }
  constructor(title, options = {}) { window.notificationsShown.push({ title, body: options.body }); }
  close() {}
};
"""


def switch_tab(page: Page, away: bool) -> None:
    page.evaluate(SWITCH_TAB, away)


def in_one_row(page: Page, *selectors: str) -> None:
    """The controls share one row (their middles line up) and all fit across the screen."""
    boxes = [page.locator(selector).bounding_box() for selector in selectors]
    assert all(boxes), selectors
    middles = [box["y"] + box["height"] / 2 for box in boxes if box]
    assert max(middles) - min(middles) < 2, dict(zip(selectors, boxes, strict=True))
    width = page.viewport_size["width"] if page.viewport_size else 0
    assert all(box and 0 <= box["x"] and box["x"] + box["width"] <= width for box in boxes), boxes


def test_a_phone_shows_the_invite_link_and_one_row_of_header_buttons(
    people: People, chat_server: ServerProcess
) -> None:
    ada = people.page(PHONE)
    link = create_room(ada, chat_server, "Ada", room="Friday planning")
    # The invite link is in sight and copyable without opening the people drawer.
    expect(ada.locator("#share-link")).to_be_in_viewport()
    expect(ada.locator("#copy-link")).to_be_in_viewport()
    expect(ada.locator("#people")).not_to_be_in_viewport()
    assert ada.input_value("#share-link") == link
    in_one_row(ada, "#countdown", "#people-toggle", "#close-room", "#leave-room")
    screenshot(ada, "chat-phone-owner.png")
    ada.click("#close-room")  # Armed, it says "click again": still one row.
    expect(ada.locator("#close-room")).to_have_text("Click again to close")
    in_one_row(ada, "#people-toggle", "#close-room", "#leave-room")

    grace = people.page(PHONE)
    join_room(grace, link, "Grace")
    expect(grace.locator("#share-link")).to_be_in_viewport()
    in_one_row(grace, "#countdown", "#people-toggle", "#leave-room")


def test_a_hidden_tab_counts_unread_messages_and_notifies_once_asked(
    people: People, chat_server: ServerProcess
) -> None:
    ada = people.page()
    ada.add_init_script(NOTIFICATIONS)
    link = create_room(ada, chat_server, "Ada", room="Retro")
    expect(ada).to_have_title("Retro · EphemeralChat")
    assert ada.evaluate("window.permissionAsked") == 0  # Never asked on load.
    ada.click("#notify-toggle")  # The people panel's "Notify me": the one way it is asked.
    expect(ada.locator("#notify-toggle")).to_have_text("Notifications on")
    assert ada.evaluate("window.permissionAsked") == 1

    grace = people.page()
    join_room(grace, link, "Grace")
    expect(ada.locator(".sys.presence", has_text="Grace joined")).to_be_visible()
    switch_tab(ada, away=True)
    say(grace, "Did you see the numbers?")
    expect(ada).to_have_title("(1) Retro · EphemeralChat")
    say(grace, "They look good")
    expect(ada).to_have_title("(2) Retro · EphemeralChat")
    shown = ada.evaluate("window.notificationsShown")
    assert shown == [
        {"title": "Grace · Retro", "body": "Did you see the numbers?"},
        {"title": "Grace · Retro", "body": "They look good"},
    ]
    # Unseen in a hidden tab: Grace is not told Ada has read it.
    expect(grace.locator("#seen-by")).to_be_hidden()

    switch_tab(ada, away=False)  # Back to the tab: the count goes, and now she has seen them.
    expect(ada).to_have_title("Retro · EphemeralChat")
    expect(grace.locator("#seen-by")).to_have_text("Seen by Ada")
    say(grace, "Great")
    expect(ada.locator(".msg .bubble")).to_have_count(3)
    expect(ada).to_have_title("Retro · EphemeralChat")  # In sight: no count, no notification.
    assert len(ada.evaluate("window.notificationsShown")) == 2

    # Linus opens the link in a background tab: what was said before he came is not news.
    linus = people.page()
    linus.add_init_script(f"({SWITCH_TAB})(true)")
    join_room(linus, link, "Linus")
    expect(linus.locator(".msg .bubble")).to_have_count(3)
    expect(linus).to_have_title("Retro · EphemeralChat")
    say(grace, "Welcome Linus")
    expect(linus).to_have_title("(1) Retro · EphemeralChat")


def test_the_owner_is_told_they_closed_the_room(people: People, chat_server: ServerProcess) -> None:
    ada = people.page()
    create_room(ada, chat_server, "Ada", room="Standup")
    ada.click("#close-room")
    ada.click("#close-room")
    expect(ada.locator(".sys.ending")).to_have_text("You closed the room.")
    expect(ada.locator("#status")).to_contain_text("You closed the room.")
    expect(ada.locator("#message-input")).to_be_disabled()


def test_a_link_to_an_unknown_room_shows_only_the_message(people: People, chat_server: ServerProcess) -> None:
    visitor = people.page()
    visitor.goto(chat_server.url + "/#room=no-such-room")
    expect(visitor.locator("#join-title")).to_have_text("Room not found")
    expect(visitor.locator("#join-info")).to_have_text("This room no longer exists: it expired or was closed.")
    expect(visitor.locator("#join-form")).to_be_hidden()
    expect(visitor.locator("#join-name")).to_be_hidden()
    visitor.click("#join-home")
    expect(visitor.locator("#home-view")).to_be_visible()
