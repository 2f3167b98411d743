// End-to-end encrypted rooms: the format every client speaks (docs/protocol.md, "End-to-end
// encrypted rooms"), on WebCrypto. The key lives only in the page's fragment (#room=…&key=…),
// which the browser never sends to the server; or it comes from the room password.

const VERSION = "ephemeralchat-e2e-v1";
const KEY_BYTES = 32;
const IV_BYTES = 12;
const SALT_BYTES = 16;
const SMALLEST_PADDED = 64;
const PBKDF2_ITERATIONS = 600000;
export const CANNOT_DECRYPT = "cannot decrypt this message (wrong or missing key)";

const utf8 = new TextEncoder();
const subtle = globalThis.crypto.subtle;

// Unpadded base64url, the encoding of every binary value in the protocol.
export function encode(bytes) {
  let binary = "";
  for (const b of new Uint8Array(bytes)) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function decode(text) {
  if (typeof text !== "string" || !/^[A-Za-z0-9_-]*$/.test(text)) throw new Error("not base64url");
  const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

export function newKey() {
  return crypto.getRandomValues(new Uint8Array(KEY_BYTES));
}

export function newSalt() {
  return encode(crypto.getRandomValues(new Uint8Array(SALT_BYTES)));
}

// The raw key a link's fragment carries, or null when it is not one.
export function readKey(text) {
  try {
    const key = decode(text);
    return key.length === KEY_BYTES ? key : null;
  } catch {
    return null;
  }
}

// A short digest of the key that members compare out of band ("3f2a 91c0 77de 0b14").
export async function fingerprint(rawKey) {
  const digest = new Uint8Array(await subtle.digest("SHA-256", concat(utf8.encode(`${VERSION} fingerprint\0`), rawKey)));
  const hex = Array.from(digest.slice(0, 8), (b) => b.toString(16).padStart(2, "0")).join("");
  return hex.match(/.{4}/g).join(" ");
}

// The key a password and the room's public salt give, and the password to send instead.
export async function passwordKeys(password, salt) {
  const material = await subtle.importKey("raw", utf8.encode(password), "PBKDF2", false, ["deriveBits"]);
  const master = await subtle.deriveBits(
    { name: "PBKDF2", hash: "SHA-256", salt: concat(utf8.encode(`${VERSION}\0`), decode(salt)), iterations: PBKDF2_ITERATIONS },
    material, KEY_BYTES * 8);
  const expandable = await subtle.importKey("raw", master, "HKDF", false, ["deriveBits"]);
  const expand = async (purpose) => new Uint8Array(await subtle.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info: utf8.encode(`${VERSION} ${purpose}`) },
    expandable, KEY_BYTES * 8));
  return { key: await expand("key"), join: encode(await expand("join")) };
}

export async function cipherKey(rawKey) {
  return subtle.importKey("raw", rawKey, "AES-GCM", false, ["encrypt", "decrypt"]);
}

function associatedData(roomId, connectionId, displayName) {
  return utf8.encode([VERSION, roomId, connectionId, displayName].join("\0"));
}

function pad(bytes) {
  let size = SMALLEST_PADDED;
  while (size < bytes.length + 1) size *= 2;
  const out = new Uint8Array(size);
  out.set(bytes);
  out[bytes.length] = 0x80;
  return out;
}

function unpad(bytes) {
  let end = bytes.length;
  while (end > 0 && bytes[end - 1] === 0) end -= 1;
  if (end === 0 || bytes[end - 1] !== 0x80) throw new Error("bad padding");
  return bytes.slice(0, end - 1);
}

// The envelope of `text` sent by this member: { ciphertext, iv }.
export async function seal(key, roomId, connectionId, displayName, text, iv = crypto.getRandomValues(new Uint8Array(IV_BYTES))) {
  const sealed = await subtle.encrypt(
    { name: "AES-GCM", iv, additionalData: associatedData(roomId, connectionId, displayName) },
    key, pad(utf8.encode(text)));
  return { ciphertext: encode(sealed), iv: encode(iv) };
}

// The text of a relayed envelope, or null when it cannot be decrypted (wrong or missing key,
// or an envelope moved to another room or sender).
export async function open(key, frame) {
  if (!key) return null;
  try {
    const plain = await subtle.decrypt(
      { name: "AES-GCM", iv: decode(frame.iv), additionalData: associatedData(String(frame.room_id), String(frame.connection_id), String(frame.display_name)) },
      key, decode(frame.ciphertext));
    return new TextDecoder("utf-8", { fatal: true }).decode(unpad(new Uint8Array(plain)));
  } catch {
    return null;
  }
}
