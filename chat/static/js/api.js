// The REST API of this server: every call answers JSON or throws an ApiError with the server's detail.

export class ApiError extends Error {
  constructor(status, detail, data = null) {
    super(detail);
    this.status = status;  // 0: the server could not be reached.
    this.data = data;  // The answer's body, when it was JSON.
  }
}

export async function api(method, path, body, headers = {}) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: body === undefined ? headers : { "Content-Type": "application/json", ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "Cannot reach the server. Check your connection and try again.");
  }
  let data = null;
  try { data = await response.json(); } catch { /* not JSON */ }
  if (!response.ok) throw new ApiError(response.status, (data && data.detail) || response.statusText, data);
  return data;
}

export function roomPath(roomId, suffix = "") {
  return `/rooms/${encodeURIComponent(roomId)}${suffix}`;
}

// Details of a password room need the password too.
export function detailsPath(roomId, password) {
  return roomPath(roomId) + (password ? `?password=${encodeURIComponent(password)}` : "");
}
