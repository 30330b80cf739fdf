// The browser flow of every provider: POST /api/v1/connections/{provider}/authorize, then its
// `authorize_url` (the launch link on this service) in a popup, or in this tab when popups are
// blocked. The callback page (/static/oauth-callback.js, `data-provider` naming the provider)
// posts its result to this window; when it cannot (the opener link cut on the way through the
// provider's pages), the page refreshes when the popup closes or this window regains focus.

import { t } from "./i18n.js";
import { api, sessionEmail, sessionNeedsConfirmation, sessionConfirmed } from "./api.js";
import { busy, confirmDialog } from "./ui.js";

const POPUP_NAME = "qetta-connect";
const POPUP_FEATURES = "popup,width=480,height=720";

let popupWatch = null;
let hooks = { result() {}, closed() {} };

/**
 * `result(provider, {ok, code, message})`: the callback page's message; `closed()`: the popup
 * closed (or this window regained focus) without one.
 */
export function initConnect(h) {
  hooks = h;
  window.addEventListener("message", (event) => {
    if (event.origin !== location.origin) return;
    const data = event.data;
    if (!data || data.source !== "qetta-oauth" || typeof data.provider !== "string") return;
    stopWatching();
    hooks.result(data.provider, { ok: data.ok === true, code: data.code || "", message: data.message || "" });
  });
  window.addEventListener("focus", () => {
    if (popupWatch) hooks.closed();
  });
}

function stopWatching() {
  clearInterval(popupWatch);
  popupWatch = null;
}

/**
 * Starts connecting `provider` from a click on `button`; `body` is the authorize body
 * (`{label}` for a new connection, `{connection_id}` to renew one). `ui.note(key|null)` shows a
 * status line on the card, `ui.error(err)` an error. `path` is the authorize route (default
 * `/connections/{provider}/authorize`; KFTC's "add accounts" has its own). Resolves to true once
 * the popup is open.
 */
export async function startConnect(provider, body, button, ui, path = null) {
  ui.error(null);
  // A session that came in a link may be someone else's account: name it and ask first. The
  // popup then opens in the OK click's gesture.
  if (sessionNeedsConfirmation()) {
    const who = sessionEmail() || t("this_account");
    const ok = await confirmDialog({
      title: t("confirm_account_title"),
      text: t("confirm_account_text", { account: who }),
      ok: t("confirm_account_ok"),
    });
    if (!ok) return false;
    sessionConfirmed();
  }
  // Open the (blank) popup synchronously inside the click, before any await, so that popup
  // blockers see the user's gesture; point it at the authorize URL once we have it.
  let popup = window.open("", POPUP_NAME, POPUP_FEATURES);
  let url;
  try {
    url = (await busy(button, t("working"), () => api("POST", path || `/connections/${encodeURIComponent(provider)}/authorize`, body))).authorize_url;
  } catch (err) {
    if (popup) popup.close();
    ui.error(err);
    return false;
  }
  if (popup && !popup.closed) {
    popup.location.replace(url);
  } else {
    popup = window.open(url, POPUP_NAME, POPUP_FEATURES);
  }
  if (!popup) {
    ui.note("popup_redirect");
    location.assign(url);
    return true;
  }
  popup.focus();
  ui.note("popup_open");
  stopWatching();
  popupWatch = setInterval(() => {
    if (popup.closed) {
      stopWatching();
      hooks.closed();
    }
  }, 800);
  return true;
}
