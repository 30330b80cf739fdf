// One card per provider users connect in the browser (KFTC, Kakao, Naver, the operator's own):
// its connections (GET /api/v1/connections) as rows with their status, expiry and last refresh,
// and the actions: rename (PATCH), disconnect (DELETE, confirmed), reconnect a connection that
// needs consent, and connect / add another (connect.js). KFTC rows carry their bank accounts
// (kftc.js). Built with DOM APIs and textContent only: labels and accounts come from users and
// providers and never become markup.

import { t, hasString, formatDateTime, relativeTime } from "./i18n.js";
import { api } from "./api.js";
import { el, showError, announce, busy, confirmDialog } from "./ui.js";
import { startConnect } from "./connect.js";
import { createKftcPanel } from "./kftc.js";

/** Mirrors the service's MAX_LABEL_CHARS (crates/qetta/src/connections/mod.rs). */
const MAX_LABEL_CHARS = 64;
const NEEDS_CONSENT = new Set(["needs_reauth", "consent_expired", "revoked"]);

/** A DOM id fragment from a provider name or connection id. */
const idOf = (s) => String(s).replace(/[^A-Za-z0-9_-]/g, "");

/** The provider's name in the current language (the catalogue's display name for others). */
export function providerName(listed) {
  return hasString(listed.name + "_name") ? t(listed.name + "_name") : listed.display_name || listed.name;
}

function fact(term, ...value) {
  return [el("dt", { text: term }), el("dd", {}, ...value)];
}

function timeFact(term, iso) {
  return fact(term, iso ? el("time", { datetime: iso, text: formatDateTime(iso) }) : t("never"));
}

/** The summary state of a card: not_configured, not_connected, or the best status of its rows. */
function cardState(listed, conns) {
  if (!listed.configured) return "not_configured";
  if (!conns.length) return "not_connected";
  if (conns.some((c) => c.status === "active")) return "active";
  for (const s of ["needs_reauth", "consent_expired", "revoked"]) if (conns.some((c) => c.status === s)) return s;
  return conns[0].status;
}

/**
 * A provider card. `ctx.refresh()` reloads the page's data. Returns `{node, render(conns),
 * result(data), relabel()}`.
 */
export function createProviderCard(listed, ctx) {
  const name = listed.name;
  const key = idOf(name);
  const titleId = `${key}-title`;
  const errorBox = el("div", { class: "error", role: "alert", dataset: { role: "error" }, hidden: true });
  const note = el("p", { class: "notice", role: "status", "aria-live": "polite", dataset: { role: "popup-note" }, hidden: true });
  const badge = el("span", { class: "badge", dataset: { role: "badge" } });
  const title = el("h2", { id: titleId });
  const intro = el("p", { class: "muted" });
  const availability = el("p", { class: "notice", dataset: { role: "availability" }, hidden: true });
  const list = el("ul", { class: "connection-list", dataset: { role: "connections" } });
  const empty = el("p", { class: "muted", dataset: { role: "empty" }, hidden: true });

  // "Connect" / "Add another", with an optional label for the new connection.
  const labelInput = el("input", {
    id: `${key}-new-label`, name: "label", maxlength: String(MAX_LABEL_CHARS), autocomplete: "off", "aria-describedby": `${key}-new-label-hint`,
  });
  const labelText = el("label", { for: `${key}-new-label` });
  const labelHint = el("p", { class: "hint", id: `${key}-new-label-hint` });
  const connectButton = el("button", { type: "submit", class: "primary", dataset: { action: "connect" } });
  const addForm = el("form", { class: "add", dataset: { role: "add-form" }, novalidate: true },
    el("div", { class: "field" }, labelText, labelInput, labelHint),
    el("div", { class: "actions" }, connectButton));

  const node = el("section", { class: "card provider", id: name, dataset: { provider: name, state: "loading" }, "aria-labelledby": titleId },
    el("div", { class: "card-head" }, title, badge), intro, availability, errorBox, list, empty, addForm, note);

  let conns = [];
  let noteKey = null;
  let editing = null; // id of the connection whose rename form is open
  const drafts = new Map(); // id -> the rename field's text while editing
  const rowErrors = new Map(); // id -> error of the row's last action
  const panels = new Map(); // id -> KFTC accounts panel

  const ui = {
    note(k) {
      noteKey = k;
      note.hidden = !k;
      note.textContent = k ? t(k) : "";
    },
    error(err) {
      showError(errorBox, err);
    },
  };

  addForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const label = labelInput.value.trim();
    startConnect(name, label ? { label } : {}, connectButton, ui).then((opened) => {
      if (opened) labelInput.value = "";
    });
  });

  const kftcCtx = {
    needsReauth(id, status) {
      const c = conns.find((x) => x.id === id);
      if (c && c.status === "active") {
        c.status = status;
        render(conns);
      }
    },
  };

  /** What a row is called: its label, else the masked account, else "Connection n". */
  const nameOf = (c, i) => c.label || c.account || t("unnamed_connection", { n: i + 1 });

  function rowFacts(c) {
    const expiry = c.expires_at
      ? [el("time", { datetime: c.expires_at, text: formatDateTime(c.expires_at) }), " ",
         el("span", { class: "relative", text: `(${relativeTime(c.expires_at)})` })]
      : [t("none")];
    const scopes = c.scopes && c.scopes.length
      ? el("span", { class: "chips" }, c.scopes.map((s) => el("span", { class: "chip", text: s })))
      : t("none");
    return [
      ...(c.label && c.account ? fact(t("account"), el("span", { class: "mono", text: c.account })) : []),
      ...fact(t("scopes"), scopes),
      ...timeFact(t("connected_at"), c.connected_at),
      ...timeFact(t("last_refreshed"), c.last_refreshed_at),
      ...fact(t("token_expires"), ...expiry),
    ];
  }

  function renameForm(c, rowKey, shown) {
    const inputId = `rename-${rowKey}`;
    const input = el("input", {
      id: inputId, name: "label", maxlength: String(MAX_LABEL_CHARS), autocomplete: "off", dataset: { key: `rename-input-${rowKey}` },
    });
    input.value = drafts.has(c.id) ? drafts.get(c.id) : c.label || "";
    input.addEventListener("input", () => drafts.set(c.id, input.value));
    const save = el("button", { type: "submit", class: "primary small", dataset: { action: "save", key: `save-${rowKey}` }, text: t("save") });
    const cancel = el("button", {
      type: "button", class: "secondary small", dataset: { action: "cancel", key: `cancel-${rowKey}` }, text: t("cancel"), onclick: () => closeRename(c.id),
    });
    const form = el("form", { class: "rename", id: `rename-form-${rowKey}`, dataset: { role: "rename-form" }, hidden: !shown, novalidate: true },
      el("label", { for: inputId, text: t("rename_label") }), input, el("div", { class: "actions" }, save, cancel));
    form.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        e.preventDefault();
        closeRename(c.id);
      }
    });
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const label = input.value.trim();
      try {
        const updated = await busy(save, t("working"), () => api("PATCH", `/connections/${encodeURIComponent(c.id)}`, { label }));
        rowErrors.delete(c.id);
        Object.assign(c, { label: updated.label ?? null });
        announce(updated.label ? t("renamed", { label: updated.label }) : t("label_cleared"));
        closeRename(c.id);
      } catch (err) {
        rowErrors.set(c.id, err);
        render(conns);
      }
    });
    return form;
  }

  function openRename(id) {
    editing = id;
    drafts.delete(id);
    render(conns);
    const input = node.querySelector(`[data-key="rename-input-${idOf(id)}"]`);
    if (input) {
      input.focus();
      input.select();
    }
  }

  function closeRename(id) {
    editing = null;
    drafts.delete(id);
    rowErrors.delete(id);
    render(conns);
    const again = node.querySelector(`[data-key="rename-${idOf(id)}"]`);
    if (again) again.focus();
  }

  async function disconnect(c, i, button) {
    const shown = nameOf(c, i);
    const provider = providerName(listed);
    const ok = await confirmDialog({
      title: t("confirm_disconnect_one_title", { name: shown }),
      text: t("confirm_disconnect_one_text", { provider }),
      ok: t("disconnect"),
    });
    if (!ok) return;
    try {
      const done = await busy(button, t("working"), () => api("DELETE", `/connections/${encodeURIComponent(c.id)}`));
      rowErrors.delete(c.id);
      panels.delete(c.id);
      announce(done.revocation && done.revocation.ok === false ? t("disconnected_unrevoked", { name: shown, provider }) : t("disconnected_one", { name: shown }));
      await ctx.refresh();
      title.setAttribute("tabindex", "-1");
      title.focus();
    } catch (err) {
      rowErrors.set(c.id, err);
      render(conns);
    }
  }

  function row(c, i) {
    const rowKey = idOf(c.id);
    const status = c.status;
    const off = !listed.configured;
    const rowError = el("div", { class: "error", role: "alert", dataset: { role: "row-error" }, hidden: true });
    showError(rowError, rowErrors.get(c.id) || null);
    const open = editing === c.id;
    const actions = el("div", { class: "actions" },
      off ? null : el("button", {
        type: "button", class: "secondary small", dataset: { action: "rename", key: `rename-${rowKey}` }, text: t("rename"),
        "aria-expanded": String(open), "aria-controls": `rename-form-${rowKey}`, onclick: () => (open ? closeRename(c.id) : openRename(c.id)),
      }),
      !off && NEEDS_CONSENT.has(status) ? el("button", {
        type: "button", class: "primary small", dataset: { action: "reconnect", key: `reconnect-${rowKey}` }, text: t("reconnect"),
        onclick: (e) => startConnect(name, { connection_id: c.id }, e.currentTarget, ui),
      }) : null,
      el("button", {
        type: "button", class: "danger small", dataset: { action: "disconnect", key: `disconnect-${rowKey}` }, text: t("disconnect"),
        onclick: (e) => disconnect(c, i, e.currentTarget),
      }),
    );
    const li = el("li", { class: "connection", dataset: { id: c.id, status } },
      el("div", { class: "connection-head" },
        el("h3", { class: "connection-name", dataset: { role: "name" }, text: nameOf(c, i) }),
        el("span", { class: "badge", dataset: { role: "status", state: status }, text: t("state_" + status) })),
      NEEDS_CONSENT.has(status) ? el("p", { class: "status-note", dataset: { role: "status-note", state: status }, text: t("status_note_" + status) }) : null,
      el("dl", { class: "facts", dataset: { role: "facts" } }, rowFacts(c)),
      rowError,
      actions,
      off ? null : renameForm(c, rowKey, open),
    );
    if (name === "kftc") {
      let panel = panels.get(c.id);
      if (!panel) {
        panel = createKftcPanel(c.id, kftcCtx);
        panels.set(c.id, panel);
      }
      li.append(panel.node);
      panel.update(status);
    }
    return li;
  }

  /** Rebuilds the card from `list`, keeping keyboard focus where it was. */
  function render(next) {
    conns = next;
    const state = cardState(listed, conns);
    node.dataset.state = state;
    node.removeAttribute("aria-busy");
    title.textContent = providerName(listed);
    intro.textContent = hasString(name + "_intro") ? t(name + "_intro") : t("generic_intro", { provider: providerName(listed) });
    badge.textContent = state === "not_configured" ? t("not_available_here") : t("state_" + state);
    badge.dataset.state = state;
    availability.hidden = listed.configured;
    availability.textContent = listed.configured ? "" : t("not_configured_note");
    addForm.hidden = !listed.configured;
    connectButton.textContent = conns.length ? t("add_another") : t("connect");
    labelText.textContent = t("new_label");
    labelHint.textContent = t("new_label_hint");
    empty.hidden = !listed.configured || conns.length > 0;
    empty.textContent = t("no_connections");
    for (const id of [...panels.keys()]) if (!conns.some((c) => c.id === id)) panels.delete(id);

    const active = document.activeElement;
    const focusKey = active && list.contains(active) ? active.dataset.key : null;
    list.replaceChildren(...conns.map(row));
    if (focusKey) {
      const again = list.querySelector(`[data-key="${CSS.escape(focusKey)}"]`);
      if (again) again.focus();
    }
  }

  return {
    node,
    render,
    /** The callback page's result for this provider. */
    result(data) {
      ui.note(null);
      if (data.ok) {
        showError(errorBox, null);
        announce(t("connected_ok", { provider: providerName(listed) }));
      } else {
        showError(errorBox, { message: t("connect_failed", { message: data.message || data.code || "" }), providerCode: null, requestId: null });
      }
    },
    /** The popup closed without a message. */
    closed() {
      ui.note(null);
    },
    relabel() {
      ui.note(noteKey);
      for (const p of panels.values()) p.relabel();
      render(conns);
    },
  };
}
