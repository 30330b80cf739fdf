// /admin: the administrators' dashboard. Loads /api/v1/admin/stats and draws, per provider,
// connections by state, refresh outcomes and upstream latency and errors (SVG charts from
// charts.js, each with the same numbers as text), the background work, and a user search with a
// user's connections and audit trail. Every figure is built with DOM APIs and textContent.
//
// Per connection, "Refresh now" and "Disconnect" (after a confirmation) act through the connection core.

import { initLang, onLangChange, t, formatDateTime, currentLang } from "./i18n.js";
import { api, token, clearSession, setFlash, sessionEmail, jwtClaims } from "./api.js";
import { el, showError, announce, busy } from "./ui.js";
import { barChart, stackedColumns } from "./charts.js";

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
const dashboard = document.getElementById("dashboard");
const number = (n) => (typeof n === "number" ? new Intl.NumberFormat(currentLang() === "ko" ? "ko-KR" : "en-GB").format(n) : "—");
const ms = (v) => (typeof v === "number" ? `${number(Math.round(v * 10) / 10)} ms` : "—");
const providerName = (p) => {
  const name = t(p + "_name");
  return name === p + "_name" ? p : name;
};
const statusName = (s) => t("state_" + s);

let lastStats = null;
let lastDetail = null;

/** A table of `[label, value, figureId]` rows; each value cell carries `data-figure`. */
function figureTable(caption, rows) {
  return el("table", { class: "figures" },
    el("caption", { class: "visually-hidden", text: caption }),
    el("tbody", {}, rows.map(([label, value, id]) =>
      el("tr", {}, el("th", { scope: "row", text: label }), el("td", { class: "num", dataset: { figure: id }, text: value })))));
}

function figure(title, chart, table, note) {
  return el("figure", { class: "stat" },
    el("figcaption", { text: title }),
    chart,
    table,
    note ? el("p", { class: "hint", text: note }) : null);
}

function connectionsFigure(p) {
  const c = p.connections;
  const rows = [
    ["active", c.active, "bar-ok"],
    ["expiring_24h", c.expiring_24h, "bar-warn"],
    ["expiring_7d", c.expiring_7d, "bar-warn"],
    ["expired", c.expired, "bar-neutral"],
    ["needs_reconsent", c.needs_reconsent, "bar-bad"],
    ["revoked", c.revoked, "bar-neutral"],
  ];
  const title = t("admin_connections_by_state");
  return figure(
    title,
    barChart(rows.map(([, value, kind]) => ({ value, kind }))),
    figureTable(title, [...rows.map(([key, value]) => [t("admin_conn_" + key), number(value), `${p.provider}.connections.${key}`]),
      [t("admin_conn_total"), number(c.total), `${p.provider}.connections.total`]]),
  );
}

function refreshFigure(p) {
  const r = p.refreshes;
  const title = t("admin_refreshes");
  // Oldest on the left.
  const columns = [...r.daily].reverse().map((d) => ({
    parts: [{ value: d.ok, kind: "bar-ok" }, { value: d.needs_reauth, kind: "bar-warn" }, { value: d.failed, kind: "bar-bad" }],
  }));
  const rows = [];
  for (const [period, o] of [["24h", r.last_24h], ["7d", r.last_7d]]) {
    for (const outcome of ["ok", "failed", "needs_reauth"]) {
      rows.push([`${t("admin_period_" + period)} · ${t("admin_refresh_" + outcome)}`, number(o[outcome]), `${p.provider}.refreshes.${period}.${outcome}`]);
    }
  }
  return figure(title, stackedColumns(columns), figureTable(title, rows), t("admin_refresh_chart_note"));
}

function upstreamFigure(p) {
  const u = p.upstream;
  const title = t("admin_upstream");
  const rows = [
    [t("admin_calls"), number(u.calls), `${p.provider}.upstream.calls`],
    [t("admin_errors"), number(u.errors), `${p.provider}.upstream.errors`],
    ["p50", ms(u.p50_ms), `${p.provider}.upstream.p50`],
    ["p95", ms(u.p95_ms), `${p.provider}.upstream.p95`],
  ];
  const chart = barChart([{ value: u.p50_ms || 0, kind: "bar-primary" }, { value: u.p95_ms || 0, kind: "bar-warn" }]);
  const errors = u.top_errors.length
    ? el("ol", { class: "top-errors", dataset: { figure: `${p.provider}.upstream.top_errors` } },
        u.top_errors.map((e) => el("li", {}, el("span", { class: "mono", text: e.code }), ` × ${number(e.count)}`)))
    : el("p", { class: "muted", dataset: { figure: `${p.provider}.upstream.top_errors` }, text: t("admin_no_errors") });
  const fig = figure(title, chart, figureTable(title, rows), t("admin_upstream_note", { minutes: Math.round(u.window_secs / 60) }));
  fig.append(el("h4", { text: t("admin_top_errors") }), errors);
  return fig;
}

function renderProviders(stats) {
  const box = document.getElementById("providers");
  box.textContent = "";
  for (const p of stats.providers) {
    const id = `stats-${p.provider}`;
    box.append(el("section", { class: "provider-stats", id, dataset: { provider: p.provider }, "aria-labelledby": id + "-title" },
      el("div", { class: "card-head" },
        el("h3", { id: id + "-title", text: providerName(p.provider) }),
        p.configured ? null : el("span", { class: "badge", text: t("state_not_configured") })),
      el("div", { class: "stat-grid" }, connectionsFigure(p), refreshFigure(p), upstreamFigure(p))));
  }
}

function renderBackground(stats) {
  const r = stats.background.refresher;
  const dl = document.getElementById("refresher");
  dl.textContent = "";
  const rows = [
    ["admin_refresher_state", r.enabled ? t("admin_enabled") : t("admin_disabled"), "refresher.enabled"],
    ["admin_refresher_due", number(r.due), "refresher.due"],
    ["admin_refresher_passes", number(r.passes), "refresher.passes"],
    ["admin_refresher_refreshed", number(r.refreshed), "refresher.refreshed"],
    ["admin_refresher_failed", number(r.failed), "refresher.failed"],
    ["admin_refresher_needs_reauth", number(r.needs_reauth), "refresher.needs_reauth"],
  ];
  for (const [key, value, id] of rows) dl.append(el("dt", { text: t(key) }), el("dd", { dataset: { figure: id }, text: value }));
  const w = stats.background.webhooks;
  document.getElementById("webhooks").textContent = w
    ? t("admin_webhooks_figures", { queued: number(w.queued), delivered: number(w.delivered_24h), failed: number(w.failed_24h) })
    : t("admin_webhooks_none");
}

function render(stats) {
  lastStats = stats;
  const at = document.getElementById("generated-at");
  at.dateTime = stats.generated_at;
  at.textContent = formatDateTime(stats.generated_at);
  document.getElementById("replica").textContent = stats.replica;
  renderProviders(stats);
  renderBackground(stats);
  dashboard.dataset.state = "ready";
  dashboard.removeAttribute("aria-busy");
}

async function load() {
  showError(pageError, null);
  try {
    render(await api("GET", "/admin/stats"));
  } catch (err) {
    if (err.status === 403) {
      dashboard.hidden = true;
      dashboard.dataset.state = "forbidden";
      document.getElementById("forbidden").hidden = false;
      return;
    }
    dashboard.dataset.state = "error";
    dashboard.removeAttribute("aria-busy");
    showError(pageError, err);
  }
}

document.getElementById("reload").addEventListener("click", async (e) => {
  await busy(e.currentTarget, t("working"), load);
  announce(t("admin_reloaded"));
});

// ---- users ----

const results = document.getElementById("search-results");
const detail = document.getElementById("user-detail");
const searchError = document.getElementById("search-error");

function userLabel(u) {
  return u.email || (u.kind === "deleted" ? t("admin_kind_deleted") : t("admin_kind_external"));
}

function renderResults(found) {
  results.textContent = "";
  if (!found.users.length) {
    results.append(el("p", { class: "muted", text: t("admin_no_users") }));
    return;
  }
  results.append(el("ul", { class: "user-list" }, found.users.map((u) =>
    el("li", { class: "user-row", dataset: { userId: u.id } },
      el("span", { class: "user-main" },
        el("strong", { text: userLabel(u) }),
        el("span", { class: "mono muted", text: u.id })),
      el("span", { class: "muted", text: t("admin_user_connections", { n: number(u.connections) }) }),
      el("button", { type: "button", class: "secondary small", dataset: { action: "view" }, "aria-label": `${t("admin_view")}: ${userLabel(u)}`, text: t("admin_view"),
        onclick: () => openUser(u.id) })))));
}

function connectionsTable(connections) {
  if (!connections.length) return el("p", { class: "muted", dataset: { role: "no-connections" }, text: t("admin_no_connections") });
  return el("div", { class: "table-scroll" }, el("table", { class: "list", dataset: { role: "connections" } },
    el("caption", { class: "visually-hidden", text: t("admin_user_connections_title") }),
    el("thead", {}, el("tr", {}, ["admin_col_provider", "admin_col_status", "admin_col_expires", "admin_col_refreshed", "admin_col_created", "admin_col_actions"].map((k) =>
      el("th", { scope: "col", text: t(k) })))),
    el("tbody", {}, connections.map((c) => el("tr", { dataset: { provider: c.provider, status: c.status } },
      el("td", { text: providerName(c.provider) }),
      el("td", {}, el("span", { class: "badge", dataset: { state: c.status }, text: statusName(c.status) })),
      el("td", { text: c.expires_at ? formatDateTime(c.expires_at) : t("none") }),
      el("td", { text: formatDateTime(c.last_refreshed_at) }),
      el("td", { text: formatDateTime(c.created_at) }),
      el("td", {}, connectionActions(c)))))));
}

/// "Refresh now" and "Disconnect" for one connection; the user's detail is read again after.
function connectionActions(c) {
  const name = providerName(c.provider);
  const act = (button, method, path) => busy(button, t("working"), async () => {
    try {
      await api(method, path);
      if (lastDetail) await openUser(lastDetail.user.id);
    } catch (err) {
      showError(searchError, err);
    }
  });
  const refresh = el("button", { type: "button", class: "secondary small", dataset: { action: "admin-refresh" }, "aria-label": `${t("admin_refresh_now")}: ${name}`, text: t("admin_refresh_now") });
  refresh.addEventListener("click", () => act(refresh, "POST", `/admin/connections/${encodeURIComponent(c.id)}/refresh`));
  const remove = el("button", { type: "button", class: "danger small", dataset: { action: "admin-disconnect" }, "aria-label": `${t("admin_disconnect")}: ${name}`, text: t("admin_disconnect") });
  remove.addEventListener("click", () => {
    if (window.confirm(t("admin_disconnect_confirm", { provider: name }))) act(remove, "DELETE", `/admin/connections/${encodeURIComponent(c.id)}`);
  });
  return el("span", { class: "actions" }, refresh, remove);
}

function auditRows(entries) {
  return entries.map((e) => el("tr", {},
    el("td", {}, el("time", { datetime: e.at, text: formatDateTime(e.at) })),
    el("td", { class: "mono", text: e.actor }),
    el("td", { text: e.provider || "—" }),
    el("td", { class: "mono", text: e.action }),
    el("td", { class: "mono", text: e.outcome })));
}

function renderDetail(d) {
  lastDetail = d;
  detail.textContent = "";
  detail.hidden = false;
  const tbody = el("tbody", {}, auditRows(d.audit));
  const more = el("button", { type: "button", class: "secondary small", dataset: { action: "more-audit" }, text: t("more"), hidden: !d.next_before });
  let next = d.next_before;
  more.addEventListener("click", () => busy(more, t("working"), async () => {
    try {
      const page = await api("GET", `/admin/users/${encodeURIComponent(d.user.id)}?before=${encodeURIComponent(next)}`);
      tbody.append(...auditRows(page.audit));
      lastDetail.audit.push(...page.audit);
      next = page.next_before;
      lastDetail.next_before = next;
      more.hidden = !next;
    } catch (err) {
      showError(searchError, err);
    }
  }));
  detail.append(
    el("h3", { id: "user-detail-title", tabindex: "-1", text: userLabel(d.user) }),
    el("dl", { class: "facts" },
      el("dt", { text: t("admin_user_id") }), el("dd", { class: "mono", text: d.user.id }),
      el("dt", { text: t("admin_user_kind") }), el("dd", { text: t("admin_kind_" + d.user.kind) }),
      el("dt", { text: t("admin_user_created") }), el("dd", { text: formatDateTime(d.user.created_at) }),
      el("dt", { text: t("admin_user_is_admin") }), el("dd", { text: d.is_admin ? t("yes") : t("no") })),
    el("h4", { text: t("admin_user_connections_title") }),
    connectionsTable(d.connections),
    el("h4", { text: t("admin_user_audit_title") }),
    d.audit.length
      ? el("div", { class: "table-scroll" }, el("table", { class: "list", dataset: { role: "audit" } },
          el("caption", { class: "visually-hidden", text: t("admin_user_audit_title") }),
          el("thead", {}, el("tr", {}, ["admin_col_at", "admin_col_actor", "admin_col_provider", "admin_col_action", "admin_col_outcome"].map((k) =>
            el("th", { scope: "col", text: t(k) })))),
          tbody))
      : el("p", { class: "muted", text: t("admin_no_audit") }),
    more,
  );
}

async function openUser(id) {
  showError(searchError, null);
  try {
    renderDetail(await api("GET", `/admin/users/${encodeURIComponent(id)}`));
    document.getElementById("user-detail-title").focus();
  } catch (err) {
    showError(searchError, err);
  }
}

document.getElementById("user-search").addEventListener("submit", async (e) => {
  e.preventDefault();
  const q = document.getElementById("q").value.trim();
  const button = e.currentTarget.querySelector("button[type=submit]");
  showError(searchError, null);
  detail.hidden = true;
  if (!q) {
    document.getElementById("q").focus();
    return;
  }
  await busy(button, t("working"), async () => {
    try {
      const found = await api("GET", `/admin/users?q=${encodeURIComponent(q)}`);
      renderResults(found);
      announce(t("admin_found", { n: found.users.length }));
    } catch (err) {
      results.textContent = "";
      showError(searchError, err);
    }
  });
});

onLangChange(() => {
  if (lastStats) render(lastStats);
  if (lastDetail && !detail.hidden) renderDetail(lastDetail);
});

load();
