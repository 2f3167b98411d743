// What the browser remembers. Storage can be off (private mode): then nothing is remembered.

// Per-tab memory of the rooms this tab is in, so a reload reconnects (as owner, for the owner).
export const store = {
  key: (roomId) => `ephemeralchat:room:${roomId}`,
  load(roomId) {
    try { return JSON.parse(sessionStorage.getItem(this.key(roomId))); } catch { return null; }
  },
  save(roomId, session) {
    try { sessionStorage.setItem(this.key(roomId), JSON.stringify(session)); } catch { /* private mode */ }
  },
  drop(roomId) {
    try { sessionStorage.removeItem(this.key(roomId)); } catch { /* private mode */ }
  },
};

// The display name last used, offered again in the create and join forms.
export const lastName = {
  get() { try { return localStorage.getItem("ephemeralchat:name") || ""; } catch { return ""; } },
  set(name) { try { localStorage.setItem("ephemeralchat:name", name); } catch { /* private mode */ } },
};
