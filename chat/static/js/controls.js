// The chat view's controls. Bound once; they act on whichever room is current (`current()`).

import { $, confirmButton } from "./dom.js";

function autosize() {
  const input = $("message-input");
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight + 2, 160)}px`;
}

// The owner of a room that dies with them.
function ownerEndsRoom(room) {
  return Boolean(room && !room.ended && room.session.role === "owner" && room.session.destroy !== false);
}

export function bindChatControls(current) {
  const input = $("message-input");
  const send = () => {
    const room = current();
    if (room && room.send(input.value)) {
      input.value = "";
      autosize();
    }
  };
  input.addEventListener("input", () => {
    autosize();
    const room = current();
    if (room) room.composing(input.value);
  });
  input.addEventListener("keydown", (event) => {
    // isComposing: Enter that confirms an IME candidate must not send a half-typed message.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    send();
    input.focus();
  });
  confirmButton($("close-room"), "Click again to close", () => current() && current().close());
  // An owner whose room dies with them is one click away from ending it for everyone.
  confirmButton($("leave-room"), "Leave and end room", () => current() && current().leave(),
    () => ownerEndsRoom(current()));
  $("copy-link").addEventListener("click", async () => {
    const link = $("share-link");
    try {
      await navigator.clipboard.writeText(link.value);
    } catch {
      // The Clipboard API needs https or localhost; plain http on a LAN falls back to selection.
      link.select();
      document.execCommand("copy");
    }
    $("copy-link").textContent = "Copied";
    setTimeout(() => { $("copy-link").textContent = "Copy"; }, 1500);
  });
  $("people-toggle").addEventListener("click", () => {
    const open = $("people").classList.toggle("open");
    $("people-toggle").setAttribute("aria-expanded", String(open));
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") $("people").classList.remove("open");
  });
  document.addEventListener("visibilitychange", () => {
    const room = current();
    if (!document.hidden && room) room.visible();
  });
  window.addEventListener("online", () => {
    const room = current();
    if (room && !room.connection.open) room.connection.retry();
  });
  window.addEventListener("beforeunload", (event) => {
    // Reloading drops the owner's socket, and with this preference that ends the room.
    const room = current();
    if (ownerEndsRoom(room) && !room.leaving) {
      event.preventDefault();
      event.returnValue = "";
    }
  });
}
