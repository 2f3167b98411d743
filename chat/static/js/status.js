// The bar under the room's header: connecting, reconnecting, room full, room ended.

import { $ } from "./dom.js";

// kind: "info", "warn", "error", "ended", or null to hide the bar.
export function setStatus(kind, text, actionLabel, action) {
  const bar = $("status");
  const button = $("status-action");
  if (!kind) {
    bar.hidden = true;
    return;
  }
  bar.className = `status ${kind}`;
  $("status-text").textContent = text;
  bar.hidden = false;
  button.hidden = !actionLabel;
  if (actionLabel) {
    button.textContent = actionLabel;
    button.onclick = action;
  }
}

// New words for the bar as it is (a countdown), keeping its kind and button.
export function setStatusText(text) {
  $("status-text").textContent = text;
}
