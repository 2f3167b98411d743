// Small DOM helpers. User data reaches the page only through textContent or a form value, never as HTML.

export const $ = (id) => document.getElementById(id);

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// One of the three views is visible at a time: "home" (create), "join" or "chat".
export function show(view) {
  for (const name of ["home", "join", "chat"]) $(`${name}-view`).hidden = name !== view;
}

export function showError(node, message) {
  node.textContent = message || "";
  node.hidden = !message;
}

// A two-click button: the first click arms it, the second (within a few seconds) acts.
export function confirmButton(button, armedLabel, action, needsConfirm = () => true) {
  // The label's nodes, not its text: part of it may be for wide screens only.
  const label = [...button.childNodes];
  let timer = null;
  const disarm = () => {
    clearTimeout(timer);
    button.classList.remove("armed");
    button.replaceChildren(...label);
  };
  button.addEventListener("click", () => {
    if (!button.classList.contains("armed") && needsConfirm()) {
      button.classList.add("armed");
      button.textContent = armedLabel;
      timer = setTimeout(disarm, 4000);
      return;
    }
    disarm();
    action();
  });
  return disarm;
}
