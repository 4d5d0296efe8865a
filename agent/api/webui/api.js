// Talking to the agent: every data request carries the token the user gave,
// as the Authorization header. The token lives in sessionStorage (this tab
// only, gone when it closes), never in the URL, a cookie or storage that outlives the tab.

const TOKEN_KEY = "podlens.token";
// The page is served at <agent>/ui/; the API is beside it, wherever the agent
// is mounted (a proxy may put it under a path).
const BASE = new URL("..", document.baseURI);

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.kind = (body && body.error) || "http";
    this.detail = body && body.detail;
  }
}

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value.trim()),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

function headers(extra) {
  const out = { Accept: "application/json", ...extra };
  const value = token.get();
  if (value) out.Authorization = `Bearer ${value}`;
  return out;
}

export function url(path) {
  return new URL(path.replace(/^\//, ""), BASE);
}

async function answer(response) {
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw new ApiError(response.status, typeof body === "object" ? body : null);
  return body;
}

/** GET a JSON answer (or text, for /metrics). */
export async function get(path, { signal, accept } = {}) {
  const response = await fetch(url(path), {
    headers: headers(accept ? { Accept: accept } : {}),
    signal,
    cache: "no-store",
  });
  return answer(response);
}

/** POST a JSON body. */
export async function post(path, body, { signal } = {}) {
  const response = await fetch(url(path), {
    method: "POST",
    headers: headers({ "Content-Type": "application/json" }),
    body: JSON.stringify(body),
    signal,
  });
  return answer(response);
}

/**
 * Follow a server-sent event stream. EventSource cannot send a header, so the
 * stream is read through fetch; onEvent(name, data) for each event.
 */
export async function stream(path, onEvent, { signal } = {}) {
  const response = await fetch(url(path), {
    headers: headers({ Accept: "text/event-stream" }),
    signal,
    cache: "no-store",
  });
  if (!response.ok) await answer(response);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffered += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffered.indexOf("\n\n")) >= 0) {
      const block = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}
