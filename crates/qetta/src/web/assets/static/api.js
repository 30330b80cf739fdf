// The JSON API client and the session.
//
// The JWT is kept in sessionStorage: it is gone when the tab closes and is not shared with other
// tabs. It is sent only as `Authorization: Bearer`; the API uses no cookies for authentication,
// so cross-site requests cannot act as the user (no CSRF tokens needed).

const TOKEN = "qetta.token";
const EMAIL = "qetta.email";
const FLASH = "qetta.flash";

export function token() {
  return sessionStorage.getItem(TOKEN);
}

const HANDED_OVER = "qetta.handed_over";

/**
 * Stores a session from a login/register response, or (`handedOver`) a JWT that arrived in the
 * page's URL: someone else's link may sign this tab in as *their* account, so the first connect
 * in such a session asks the user to confirm the account by name.
 */
export function saveSession(jwt, email, handedOver = false) {
  sessionStorage.setItem(TOKEN, jwt);
  if (email) sessionStorage.setItem(EMAIL, email);
  else sessionStorage.removeItem(EMAIL);
  if (handedOver) sessionStorage.setItem(HANDED_OVER, "1");
  else sessionStorage.removeItem(HANDED_OVER);
}

/** Whether the session came in a link and its account has not been confirmed yet. */
export function sessionNeedsConfirmation() {
  return sessionStorage.getItem(HANDED_OVER) === "1";
}

export function sessionConfirmed() {
  sessionStorage.removeItem(HANDED_OVER);
}

export function sessionEmail() {
  return sessionStorage.getItem(EMAIL) || "";
}

export function clearSession() {
  sessionStorage.removeItem(TOKEN);
  sessionStorage.removeItem(EMAIL);
  sessionStorage.removeItem(HANDED_OVER);
}

/** A one-shot message for the next page (e.g. "session expired" on the login page). */
export function setFlash(key) {
  sessionStorage.setItem(FLASH, key);
}

export function takeFlash() {
  const key = sessionStorage.getItem(FLASH);
  sessionStorage.removeItem(FLASH);
  return key;
}

/**
 * The payload of a JWT, without verifying it (the server does that): used only to show the email
 * of a handed-over token and to notice an expired one before the first request.
 */
export function jwtClaims(jwt) {
  try {
    const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent(
      Array.from(atob(part), (c) => "%" + c.charCodeAt(0).toString(16).padStart(2, "0")).join(""),
    );
    return JSON.parse(json);
  } catch (_) {
    return {};
  }
}

/** An API failure with the fields of the standard error body. */
export class ApiError extends Error {
  constructor(status, code, message, requestId, providerCode) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.providerCode = providerCode;
  }
}

/** Sends a request to `/api/v1{path}` and returns the parsed JSON body, or throws ApiError. */
export async function api(method, path, body, { auth = true } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (auth) {
    const jwt = token();
    if (!jwt) throw sessionEnded();
    headers.Authorization = "Bearer " + jwt;
  }
  let response;
  try {
    response = await fetch("/api/v1" + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch (_) {
    throw new ApiError(0, "network_error", "", null, null);
  }
  const requestId = response.headers.get("x-request-id");
  let data = null;
  if ((response.headers.get("content-type") || "").includes("json")) {
    try { data = await response.json(); } catch (_) { data = null; }
  }
  if (response.ok) return data ?? {};
  const e = (data && data.error) || {};
  const err = new ApiError(response.status, e.code || "http_" + response.status, e.message || "", e.request_id || requestId, e.provider_code || null);
  if (auth && response.status === 401) {
    clearSession();
    setFlash("session_expired");
    location.assign("/login");
  }
  throw err;
}

function sessionEnded() {
  setFlash("session_expired");
  location.assign("/login");
  return new ApiError(401, "unauthorized", "", null, null);
}
