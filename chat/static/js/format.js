// How names, times and links look on the page.

function hue(name) {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

// The same name gets the same colour on every screen.
export function nameColor(name) {
  return `hsl(${hue(name)} 55% 45%)`;
}

export function initials(name) {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  const letters = parts.length > 1 ? [parts[0], parts[parts.length - 1]] : [parts[0] || "?"];
  return letters.map((p) => Array.from(p)[0] || "").join("").toUpperCase();
}

export function clockTime(iso) {
  const date = iso ? new Date(iso) : new Date();
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

export function duration(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const pad = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
}

// key: an end-to-end room's key, carried only in the fragment (browsers never send it).
export function shareLink(roomId, key = null) {
  return `${location.origin}/#room=${encodeURIComponent(roomId)}${key ? `&key=${key}` : ""}`;
}
