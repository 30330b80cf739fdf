// /oauth: the connection management page. Loads /api/v1/oauth/status, renders the shared part of
// each provider card (badge, facts, buttons) and hands the provider-specific parts to kftc.js and
// toss.js.

import { initLang, onLangChange, t, formatDateTime, relativeTime } from "./i18n.js";
import { api, token, saveSession, clearSession, setFlash, sessionEmail, jwtClaims } from "./api.js";
import { el, showError, announce, confirmDialog, busy } from "./ui.js";
import { createKftc } from "./kftc.js";
import { createToss } from "./toss.js";

/**
 * An app may open this page with its own JWT as `/oauth#token=<JWT>`. The fragment never leaves
 * the browser (not sent to servers, not in access logs); we move it to sessionStorage and remove
 * it from the address bar and history at once.
 */
function takeHandedOverToken() {
  const m = /^#token=([^&]+)/.exec(location.hash);
  if (!m) return;
  const jwt = decodeURIComponent(m[1]);
  history.replaceState(null, "", location.pathname + location.search);
  saveSession(jwt, jwtClaims(jwt).email, true);
}

takeHandedOverToken();
const claims = jwtClaims(token() || "");
if (!token() || (claims.exp && claims.exp * 1000 < Date.now())) {
  clearSession();
  if (claims.exp) setFlash("session_expired");
  location.replace("/login");
  await new Promise(() => {}); // the browser is leaving: stop here without an error
}

initLang();
document.getElementById("who").textContent = sessionEmail();
document.getElementById("sign-out").addEventListener("click", () => {
  clearSession();
  setFlash("signed_out");
  location.assign("/login");
});

const pageError = document.getElementById("page-error");
const providerName = (p) => t(p + "_name");

/** not_configured | not_connected | active | needs_reauth | revoked, from a status entry. */
function stateOf(entry) {
  if (entry.status === "not_configured") return "not_configured";
  if (entry.status === "needs_reauth") return "needs_reauth";
  if (entry.status === "revoked") return "revoked";
  return entry.connected ? "active" : "not_connected";
}

function fact(term, ...value) {
  return [el("dt", { text: term }), el("dd", {}, ...value)];
}

function timeFact(term, iso) {
  return fact(term, iso ? el("time", { datetime: iso, text: formatDateTime(iso) }) : t("never"));
}

/** The facts every provider shares: scopes, connected at, last refreshed, token expiry. */
function commonFacts(entry) {
  const expiry = entry.expires_at
    ? [el("time", { datetime: entry.expires_at, text: formatDateTime(entry.expires_at) }), " ",
       el("span", { class: "relative", text: `(${relativeTime(entry.expires_at)})` })]
    : [t("none")];
  const scopes = entry.scope && entry.scope.length
    ? el("span", { class: "chips" }, entry.scope.map((s) => el("span", { class: "chip", text: s })))
    : t("none");
  return [
    ...fact(t("scopes"), scopes),
    ...timeFact(t("connected_at"), entry.connected_at),
    ...timeFact(t("last_refreshed"), entry.last_refreshed_at),
    ...fact(t("token_expires"), ...expiry),
  ];
}

/** Shared rendering of one card from its status entry; `extraFacts` come from the provider module. */
function renderCard(card, entry, state, extraFacts) {
  card.dataset.state = state;
  card.removeAttribute("aria-busy");
  const badge = card.querySelector("[data-role=badge]");
  badge.textContent = t("state_" + state);
  badge.dataset.state = state;
  const facts = card.querySelector("[data-role=facts]");
  const off = state === "not_configured";
  if (off) {
    // The operator has not set this provider up: nothing on the card can work.
    facts.replaceChildren(...fact(t("availability"), t("not_configured_note")));
    facts.hidden = false;
    card.querySelectorAll(".actions button, form").forEach((node) => { node.hidden = true; });
    return;
  }
  facts.replaceChildren(...(state === "not_connected" ? [] : commonFacts(entry)), ...extraFacts);
  facts.hidden = facts.childElementCount === 0;
  const show = (action, visible) => {
    const b = card.querySelector(`[data-action=${action}]`);
    if (b) b.hidden = !visible;
  };
  show("connect", state === "not_connected" || state === "revoked");
  show("reconsent", state === "needs_reauth");
  show("disconnect", state !== "not_connected");
}

/** The last status entry of each provider. */
const entries = {};

const ctx = {
  refresh,
  fact,
  timeFact,
  /** Marks a card as needing re-consent after an API call answered 409 reauth_required. */
  needsReauth(provider) {
    const entry = entries[provider];
    if (entry) {
      entries[provider] = { ...entry, status: "needs_reauth" };
      render(provider);
    }
  },
};

const modules = {
  kftc: createKftc(document.getElementById("kftc"), ctx),
  toss: createToss(document.getElementById("toss"), ctx),
};

function render(provider) {
  const entry = entries[provider];
  if (!entry) return;
  const card = document.getElementById(provider);
  const state = stateOf(entry);
  if (state === "not_configured") {
    renderCard(card, entry, state, []);
    return;
  }
  renderCard(card, entry, state, modules[provider].facts(entry, state));
  modules[provider].update(entry, state);
}

/** Reloads the status of every provider and re-renders. */
async function refresh() {
  try {
    const status = await api("GET", "/oauth/status");
    showError(pageError, null);
    for (const entry of status.providers || []) {
      if (!modules[entry.provider]) continue;
      entries[entry.provider] = entry;
      render(entry.provider);
    }
  } catch (err) {
    showError(pageError, err);
  }
}

// Disconnect, with a real modal confirmation, for every provider.
for (const provider of Object.keys(modules)) {
  const card = document.getElementById(provider);
  const button = card.querySelector("[data-action=disconnect]");
  button.addEventListener("click", async () => {
    const name = providerName(provider);
    const ok = await confirmDialog({
      title: t("confirm_disconnect_title", { provider: name }),
      text: t("confirm_disconnect_text", { provider: name }),
      ok: t("disconnect"),
    });
    if (!ok) return;
    const errorBox = card.querySelector("[data-role=error]");
    try {
      await busy(button, t("working"), () => api("DELETE", `/oauth/${provider}/disconnect`));
      showError(errorBox, null);
      modules[provider].reset();
      announce(t("disconnected", { provider: name }));
      await refresh();
      card.querySelector("h2").setAttribute("tabindex", "-1");
      card.querySelector("h2").focus();
    } catch (err) {
      showError(errorBox, err);
    }
  });
}

onLangChange(() => {
  for (const provider of Object.keys(entries)) render(provider);
  for (const m of Object.values(modules)) m.relabel();
});

refresh();
