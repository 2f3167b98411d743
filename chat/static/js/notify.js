// Desktop notifications of new messages while the tab is hidden. Off until the member turns
// them on: the browser's permission prompt only ever follows a click on "Notify me", never a
// page load, and the choice is remembered on this device.

import { $ } from "./dom.js";

const KEY = "ephemeralchat:notify";
const BODY_MAX_CHARS = 140;

function wanted() {
  try { return localStorage.getItem(KEY) === "on"; } catch { return false; }
}

function remember(on) {
  try { localStorage.setItem(KEY, on ? "on" : "off"); } catch { /* private mode */ }
}

function supported() {
  return typeof window.Notification === "function";
}

function enabled() {
  return supported() && Notification.permission === "granted" && wanted();
}

function render() {
  const on = enabled();
  const blocked = supported() && Notification.permission === "denied";
  const button = $("notify-toggle");
  button.textContent = on ? "Notifications on" : "Notify me of new messages";
  button.setAttribute("aria-pressed", String(on));
  button.disabled = blocked;
  $("notify-note").textContent = blocked
    ? "Notifications are blocked for this site in the browser's settings."
    : on ? "A new message shows a notification while this tab is in the background." : "";
}

export function bindNotifications() {
  if (!supported()) return;  // The section stays hidden: nothing to offer.
  $("notify").hidden = false;
  render();
  $("notify-toggle").addEventListener("click", async () => {
    if (enabled()) {
      remember(false);
    } else {
      remember(true);
      if (Notification.permission === "default") await Notification.requestPermission();
    }
    render();
  });
}

// A message from someone else: a notification when it is wanted and nobody is looking.
export function notifyMessage(name, text, roomName, roomId) {
  if (!document.hidden || !enabled()) return;
  const body = text.length > BODY_MAX_CHARS ? `${text.slice(0, BODY_MAX_CHARS - 1)}…` : text;
  try {
    // One tag per room: a burst of messages replaces the notification instead of stacking.
    const shown = new Notification(`${name} · ${roomName}`, { body, tag: `ephemeralchat:${roomId}` });
    shown.onclick = () => { window.focus(); shown.close(); };
  } catch {
    // Some phones allow notifications only from a service worker; the tab title still counts.
  }
}
