// /oauth: the connection management page. Every provider of the catalogue (GET /api/v1/providers)
// gets a card in the catalogue's order: the providers users connect in the browser show their
// connections (GET /api/v1/connections, providers.js); Toss, which has no per-user connection,
// keeps its own card (toss.js) fed by GET /api/v1/oauth/status.

import { initLang, onLangChange, t, formatDateTime, relativeTime } from "./i18n.js";
import { api, token, saveSession, clearSession, setFlash, sessionEmail, jwtClaims } from "./api.js";
import { el, showError, announce, confirmDialog, busy } from "./ui.js";
import { createToss } from "./toss.js";
import { createProviderCard } from "./providers.js";
import { initConnect } from "./connect.js";

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
const container = document.getElementById("providers");
const tossCard = document.getElementById("toss");

function fact(term, ...value) {
  return [el("dt", { text: term }), el("dd", {}, ...value)];
}

function timeFact(term, iso) {
  return fact(term, iso ? el("time", { datetime: iso, text: formatDateTime(iso) }) : t("never"));
}

// ---- Toss: its status entry of /api/v1/oauth/status -------------------------------------------

/** not_configured | not_connected | active | needs_reauth | revoked, from a status entry. */
function stateOf(entry) {
  if (entry.status === "not_configured") return "not_configured";
  if (entry.status === "needs_reauth") return "needs_reauth";
  if (entry.status === "revoked") return "revoked";
  return entry.connected ? "active" : "not_connected";
}

/** The facts every status entry has: scopes, connected at, last refreshed, token expiry. */
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

const ctx = { refresh, fact, timeFact };
const toss = createToss(tossCard, ctx);
let tossEntry = null;

function renderToss() {
  const entry = tossEntry;
  if (!entry) return;
  const card = tossCard;
  const state = stateOf(entry);
  card.dataset.state = state;
  card.removeAttribute("aria-busy");
  const badge = card.querySelector("[data-role=badge]");
  badge.textContent = state === "not_configured" ? t("not_available_here") : t("state_" + state);
  badge.dataset.state = state;
  const facts = card.querySelector("[data-role=facts]");
  if (state === "not_configured") {
    // The operator has not set Toss up: nothing on the card can work.
    facts.replaceChildren(...fact(t("availability"), t("not_configured_note")));
    facts.hidden = false;
    card.querySelectorAll(".actions button, form").forEach((node) => { node.hidden = true; });
    return;
  }
  facts.replaceChildren(...(state === "not_connected" ? [] : commonFacts(entry)), ...toss.facts(entry, state));
  facts.hidden = facts.childElementCount === 0;
  card.querySelector("[data-action=disconnect]").hidden = state === "not_connected";
}

// Toss's disconnect (it forgets the user's verified identity), with a modal confirmation.
const tossDisconnect = tossCard.querySelector("[data-action=disconnect]");
tossDisconnect.addEventListener("click", async () => {
  const name = t("toss_name");
  const ok = await confirmDialog({
    title: t("confirm_disconnect_title", { provider: name }),
    text: t("confirm_disconnect_text", { provider: name }),
    ok: t("disconnect"),
  });
  if (!ok) return;
  const errorBox = tossCard.querySelector("[data-role=error]");
  try {
    await busy(tossDisconnect, t("working"), () => api("DELETE", "/oauth/toss/disconnect"));
    showError(errorBox, null);
    toss.reset();
    announce(t("disconnected", { provider: name }));
    await refresh();
    tossCard.querySelector("h2").setAttribute("tabindex", "-1");
    tossCard.querySelector("h2").focus();
  } catch (err) {
    showError(errorBox, err);
  }
});

// ---- the catalogue and the connections ---------------------------------------------------------

/** provider name -> its card (connectable providers). */
const cards = new Map();
let listing = [];
let connections = [];

/** Places every card in the catalogue's order; Toss's static card where Toss is listed. */
function layout() {
  const order = [];
  for (const listed of listing) {
    if (listed.name === "toss") {
      order.push(tossCard);
      continue;
    }
    // Other client-credential providers have nothing for a user to see or do.
    if (listed.kind === "client_credentials") continue;
    let card = cards.get(listed.name);
    if (!card) {
      card = createProviderCard(listed, ctx);
      cards.set(listed.name, card);
    }
    order.push(card.node);
  }
  tossCard.hidden = !listing.some((l) => l.name === "toss");
  for (const node of order) container.append(node); // append moves a node already in place
  container.removeAttribute("aria-busy");
}

function renderAll() {
  for (const [name, card] of cards) card.render(connections.filter((c) => c.provider === name));
  renderToss();
}

/** Reloads the catalogue, the connections and Toss's status, and re-renders. */
async function refresh() {
  try {
    const [providers, list, status] = await Promise.all([
      api("GET", "/providers"),
      api("GET", "/connections"),
      api("GET", "/oauth/status"),
    ]);
    showError(pageError, null);
    listing = providers.providers || [];
    connections = list.connections || [];
    tossEntry = (status.providers || []).find((e) => e.provider === "toss") || null;
    layout();
    renderAll();
  } catch (err) {
    showError(pageError, err);
  }
}

initConnect({
  result(provider, data) {
    const card = cards.get(provider);
    if (card) card.result(data);
    refresh();
  },
  closed() {
    for (const card of cards.values()) card.closed();
    refresh();
  },
});

onLangChange(() => {
  for (const card of cards.values()) card.relabel();
  renderToss();
  toss.relabel();
});

refresh();
