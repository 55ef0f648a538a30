// The API token, kept for this browser tab only (sessionStorage), never in a cookie.

const KEY = "tqd.token";

/** The token the user gave in this session, or null. */
export function getToken(): string | null {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null;
  }
}

/** Remember `token` for this session (null forgets it). */
export function setToken(token: string | null): void {
  try {
    if (token) sessionStorage.setItem(KEY, token);
    else sessionStorage.removeItem(KEY);
  } catch {
    // Storage can be disabled; the token then lasts until the page reloads.
  }
  memoryToken = token;
}

let memoryToken: string | null = null;

/** The token from storage, or from memory when storage is unavailable. */
export function currentToken(): string | null {
  return getToken() ?? memoryToken;
}

// RFC 7230 "token" characters: what a WebSocket sub-protocol may contain.
const TCHARS = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * The WebSocket sub-protocols that carry the token (browsers cannot set an
 * Authorization header on a WebSocket): ["tqd", "bearer.<token>"]. Without a
 * token no sub-protocol is offered. A token with characters a sub-protocol
 * cannot hold is not sent; the server then refuses and the app says offline.
 */
export function socketProtocols(token: string | null): string[] {
  if (!token || !TCHARS.test(token)) return [];
  return ["tqd", `bearer.${token}`];
}
