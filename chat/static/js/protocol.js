// The server's own words (chat/protocol.py); a system frame carrying one of ENDINGS ends the room.

export const CONNECTED = "Connected to room";
export const SHUTTING_DOWN = "Server is shutting down; reconnect to continue";
export const CLOSED_BY_OWNER = "Room has been closed by owner";
export const ENDINGS = {
  [CLOSED_BY_OWNER]: "The owner closed this room.",
  "Room owner went offline shutting down room": "The owner went offline, so the room was shut down.",
  "Room has expired": "This room has expired.",
};
export const GONE = "This room no longer exists: it expired or was closed.";
// What the owner's own screen says once they closed the room.
export const CLOSED_BY_YOU = "You closed the room.";
