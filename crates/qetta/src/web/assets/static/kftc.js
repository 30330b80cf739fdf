// The bank-account part of one KFTC Open Banking connection: its linked accounts with balances,
// and paged transactions of the last 3 months. Every call names the connection
// (`?connection_id=`, or `connection_id` in the transactions body). Connecting, renaming and
// disconnecting are the connection row's (providers.js, connect.js).

import { t, formatDateTime, formatKRW } from "./i18n.js";
import { api } from "./api.js";
import { el, showError, confirmDialog, announce } from "./ui.js";
import { startConnect } from "./connect.js";

const PAGE_SIZE = 20;

/** YYYYMMDD of a date in Korea (KFTC dates are KST). */
function kstDate(d) {
  const parts = new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Seoul", year: "numeric", month: "2-digit", day: "2-digit" }).format(d);
  return parts.replace(/-/g, "");
}

function threeMonthsAgo(now) {
  const d = new Date(now.getTime());
  d.setUTCMonth(d.getUTCMonth() - 3);
  return d;
}

/** A DOM id fragment (digits and letters in practice; anything else is dropped). */
const idOf = (s) => String(s).replace(/[^A-Za-z0-9_-]/g, "");

/**
 * The accounts panel of KFTC connection `connectionId`. `ctx.needsReauth(connectionId, status)` is
 * told when the service answers that the consent must be renewed (409 `reauth_required` →
 * `needs_reauth`, 409 `consent_expired` → `consent_expired`).
 */
export function createKftcPanel(connectionId, ctx) {
  const q = "connection_id=" + encodeURIComponent(connectionId);
  const key = idOf(connectionId);
  const errorBox = el("div", { class: "error", role: "alert", hidden: true });
  const list = el("ul", { class: "account-list", dataset: { role: "account-list" } });
  // Adding accounts to this consent (KFTC authorize_account) is the popup flow of connecting.
  const addButton = el("button", { type: "button", class: "secondary small", dataset: { action: "add-accounts", key: `add-${key}` }, text: t("add_accounts") });
  addButton.addEventListener("click", () => startConnect("kftc", undefined, addButton, {
    note: (k) => { if (k) announce(t(k)); },
    error: (err) => { if (err) showError(errorBox, err); else errorBox.hidden = true; },
  }, `/connections/${encodeURIComponent(connectionId)}/accounts/authorize`));
  const accountsBox = el("div", { class: "accounts", dataset: { role: "accounts" }, hidden: true },
    el("h4", { dataset: { i18n: "accounts" }, text: t("accounts") }), list, el("div", { class: "actions" }, addButton));
  // A finished KFTC flow (accounts added, consent renewed) changes the list: read it again.
  window.addEventListener("message", (event) => {
    if (event.origin !== location.origin || !event.data || event.data.source !== "qetta-oauth" || event.data.provider !== "kftc" || !event.data.ok) return;
    if (state === "active") {
      accounts = null;
      balances.clear();
      loadAccounts();
    }
  });
  const node = el("div", { class: "kftc-panel" }, errorBox, accountsBox);

  // What the panel shows, kept so that a language switch can re-render without refetching.
  let state = "loading";
  let accounts = null; // null: not loaded; [] : none
  let accountsLoading = false;
  const balances = new Map(); // fintech -> {data} | {error}
  const tx = new Map(); // fintech -> {open, items, next, loading, error, loaded}

  // ---- accounts and balances --------------------------------------------------------------

  /** Handles an API error of this panel: 409 reauth_required / consent_expired flips the connection's row. */
  function failed(err) {
    if (err && (err.code === "reauth_required" || err.code === "consent_expired")) {
      ctx.needsReauth(connectionId, err.code === "consent_expired" ? "consent_expired" : "needs_reauth");
      return true;
    }
    return false;
  }

  async function loadAccounts() {
    if (accountsLoading) return;
    accountsLoading = true;
    try {
      const body = await api("GET", `/oauth/kftc/accounts?${q}`);
      accounts = body.accounts || [];
      renderAccounts();
      await Promise.all(accounts.map((a) => loadBalance(a.fintech_use_num)));
    } catch (err) {
      if (!failed(err)) showError(errorBox, err);
    } finally {
      accountsLoading = false;
    }
  }

  async function loadBalance(fintech) {
    try {
      balances.set(fintech, { data: await api("GET", `/oauth/kftc/balance/${encodeURIComponent(fintech)}?${q}`) });
    } catch (err) {
      failed(err);
      balances.set(fintech, { error: err });
    }
    renderAccounts();
  }

  function balanceView(fintech) {
    const b = balances.get(fintech);
    if (!b) return el("p", { class: "balance muted", text: t("balance_loading") });
    if (b.error) {
      return el("p", { class: "balance muted", title: b.error.requestId ? `${t("request_id")}: ${b.error.requestId}` : null, text: t("balance_failed") });
    }
    const d = b.data;
    return el("div", { class: "balance", dataset: { role: "balance" } },
      el("span", { class: "visually-hidden", text: t("balance") + " " }),
      el("strong", { class: d.balance < 0 ? "amount negative" : "amount", text: formatKRW(d.balance) }),
      typeof d.available === "number" ? el("small", { class: "muted", text: `${t("available")} ${formatKRW(d.available)}` }) : null,
    );
  }

  // ---- transactions ---------------------------------------------------------------------

  async function loadTransactions(fintech, more) {
    const cur = tx.get(fintech) || { open: true, items: [], next: null, loading: false, error: null, loaded: false };
    if (cur.loading) return;
    cur.loading = true;
    cur.error = null;
    tx.set(fintech, cur);
    renderAccounts();
    const now = new Date();
    const body = { connection_id: connectionId, fintech_use_num: fintech, from_date: kstDate(threeMonthsAgo(now)), to_date: kstDate(now), limit: PAGE_SIZE };
    if (more && cur.next) body.cursor = cur.next;
    try {
      const page = await api("POST", "/oauth/kftc/transactions", body);
      cur.items = more ? cur.items.concat(page.transactions || []) : page.transactions || [];
      cur.next = page.next_cursor || null;
      cur.loaded = true;
    } catch (err) {
      failed(err);
      cur.error = err;
    }
    cur.loading = false;
    renderAccounts();
  }

  function toggleTransactions(fintech) {
    const cur = tx.get(fintech);
    if (cur) {
      cur.open = !cur.open;
      renderAccounts();
      if (cur.open && !cur.loaded && !cur.loading) loadTransactions(fintech, false);
    } else {
      loadTransactions(fintech, false);
    }
  }

  const DIRECTION_SIGN = { in: "+", out: "−" };

  function transactionItem(item) {
    const dir = ["in", "out"].includes(item.direction) ? item.direction : "other";
    return el("li", { class: "tx-item" },
      el("div", { class: "tx-what" },
        el("span", { class: "tx-desc", text: item.description || item.kind || t("dir_" + dir) }),
        el("time", { class: "muted", datetime: item.at, text: formatDateTime(item.at, "Asia/Seoul") }),
      ),
      el("div", { class: "tx-money" },
        el("span", { class: "amount " + dir },
          el("span", { class: "visually-hidden", text: t("dir_" + dir) + " " }),
          (DIRECTION_SIGN[dir] || "") + formatKRW(Math.abs(item.amount))),
        el("small", { class: "muted", text: `${t("col_balance")} ${formatKRW(item.balance_after)}` }),
      ),
    );
  }

  function transactionsView(account, panelId) {
    const fintech = account.fintech_use_num;
    const cur = tx.get(fintech);
    const panel = el("div", { class: "tx", id: panelId, hidden: !(cur && cur.open) });
    if (!cur || !cur.open) return panel;
    const label = `${account.bank_name || ""} ${account.account_num_masked || ""}`.trim();
    panel.append(el("h5", { text: t("transactions_of", { account: label }) }));
    if (cur.items.length) {
      panel.append(el("ol", { class: "tx-list", dataset: { role: "transactions" } }, cur.items.map(transactionItem)));
    } else if (cur.loaded) {
      panel.append(el("p", { class: "muted", text: t("no_transactions") }));
    }
    const errBox = el("div", { class: "error", role: "alert", hidden: true });
    showError(errBox, cur.error);
    panel.append(errBox);
    if (cur.loading) panel.append(el("p", { class: "muted", role: "status", text: t("loading") }));
    else if (cur.next) {
      panel.append(el("button", {
        type: "button", class: "secondary", dataset: { action: "more", key: `more-${key}-${idOf(fintech)}` },
        text: t("more"), onclick: () => loadTransactions(fintech, true),
      }));
    }
    return panel;
  }

  function accountItem(account) {
    const fintech = account.fintech_use_num;
    const panelId = `tx-${key}-${idOf(fintech)}`;
    const open = !!(tx.get(fintech) && tx.get(fintech).open);
    return el("li", { class: "account", dataset: { fintech } },
      el("div", { class: "account-row" },
        el("div", { class: "account-main" },
          el("strong", { text: account.bank_name || account.bank_code || "" }),
          account.alias ? el("span", { class: "alias", text: account.alias }) : null,
          el("span", { class: "mono muted", text: account.account_num_masked || "" }),
        ),
        balanceView(fintech),
      ),
      el("div", { class: "actions" },
        el("button", {
          type: "button", class: "secondary small", "aria-expanded": String(open), "aria-controls": panelId,
          dataset: { action: "transactions", key: `tx-toggle-${key}-${idOf(fintech)}` },
          text: open ? t("hide_transactions") : t("show_transactions"),
          onclick: () => toggleTransactions(fintech),
        }),
        el("button", {
          type: "button", class: "danger small", dataset: { action: "remove-account", key: `remove-${key}-${idOf(fintech)}` },
          "aria-label": `${t("remove_account")}: ${account.bank_name || ""} ${account.account_num_masked || ""}`.trim(),
          text: t("remove_account"),
          onclick: (e) => removeAccount(account, e.currentTarget),
        })),
      transactionsView(account, panelId),
    );
  }

  /** Removes an account from the consent (KFTC account/cancel) after the user confirms. */
  async function removeAccount(account, button) {
    const name = `${account.bank_name || ""} ${account.account_num_masked || ""}`.trim();
    const ok = await confirmDialog({ title: t("remove_account_title"), text: t("remove_account_text", { account: name }), ok: t("remove_account") });
    if (!ok) return;
    button.disabled = true;
    try {
      const body = await api("DELETE", `/connections/${encodeURIComponent(connectionId)}/accounts/${encodeURIComponent(account.fintech_use_num)}`);
      accounts = body.accounts || [];
      balances.delete(account.fintech_use_num);
      tx.delete(account.fintech_use_num);
      errorBox.hidden = true;
      renderAccounts();
      announce(t("account_removed", { account: name }));
    } catch (err) {
      button.disabled = false;
      if (!failed(err)) showError(errorBox, err);
    }
  }

  /** Rebuilds the account list from the cached data, keeping keyboard focus where it was. */
  function renderAccounts() {
    const show = state === "active" && accounts !== null;
    accountsBox.hidden = !show;
    if (!show) return;
    const focusKey = document.activeElement && list.contains(document.activeElement) ? document.activeElement.dataset.key : null;
    list.replaceChildren(...(accounts.length ? accounts.map(accountItem) : [el("li", { class: "muted", text: t("no_accounts") })]));
    if (focusKey) {
      const again = list.querySelector(`[data-key="${focusKey}"]`);
      if (again) again.focus();
      else {
        // "More" disappears on the last page: keep focus in the panel rather than losing it.
        const toggle = list.querySelector(`[data-key="${focusKey.replace(/^more-/, "tx-toggle-")}"]`);
        if (toggle) toggle.focus();
      }
    }
  }

  return {
    node,
    /** The connection's status changed (or was loaded): load the accounts once it is active. */
    update(status) {
      const renewed = status === "active" && state !== "active" && state !== "loading";
      state = status;
      if (renewed) {
        // Consent renewed: what failed before (balances refused with reauth_required) is stale.
        accounts = null;
        balances.clear();
        tx.clear();
      }
      if (state === "active" && accounts === null) loadAccounts();
      else renderAccounts();
    },
    relabel() {
      accountsBox.querySelector("h4").textContent = t("accounts");
      addButton.textContent = t("add_accounts");
      renderAccounts();
    },
  };
}
