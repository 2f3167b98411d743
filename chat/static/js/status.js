// The bar under the room's header: connecting, reconnecting, reconnected, room full, room ended.

import { $ } from "./dom.js";

let shown = 0;  // Counts what the bar showed, so a timer hides only what it was set for.

// kind: "info", "warn", "error", "ended", or null to hide the bar.
export function setStatus(kind, text, actionLabel, action) {
  shown += 1;
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

// A note that goes by itself after `ms`, unless the bar has moved on meanwhile.
export function flashStatus(kind, text, ms) {
  setStatus(kind, text);
  const mine = shown;
  setTimeout(() => { if (shown === mine) setStatus(null); }, ms);
}
