// Small DOM helpers shared by the pages: element building, error boxes, announcements and the
// confirm dialog. Everything is built with DOM APIs and textContent (never innerHTML), so data
// from the API cannot inject markup.

import { t } from "./i18n.js";

/** `el("p", {class: "x", dataset: {a: "1"}}, "text", child)`. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v === true) node.setAttribute(k, "");
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function messageOf(err) {
  if (err && err.code === "network_error") return t("network_error");
  let text = (err && err.message) || t("error_generic");
  if (err && err.providerCode) text += ` (${err.providerCode})`;
  return text;
}

/** A readable one-line message for an ApiError (or any error), with the request id if any. */
export function errorText(err) {
  const id = err && err.requestId;
  return id ? `${messageOf(err)} — ${t("request_id")}: ${id}` : messageOf(err);
}

/** Shows `err` in the `role="alert"` box `box`; hides the box when `err` is null. */
export function showError(box, err) {
  if (!box) return;
  box.textContent = "";
  box.hidden = !err;
  if (!err) return;
  box.append(el("span", { text: messageOf(err) }));
  if (err.requestId) {
    box.append(" ", el("span", { class: "request-id", text: `${t("request_id")}: ${err.requestId}` }));
  }
}

/** Says `text` through the page's polite live region. */
export function announce(text) {
  const region = document.getElementById("announce");
  if (!region) return;
  region.textContent = "";
  // A separate task, so screen readers notice a repeated identical message.
  setTimeout(() => { region.textContent = text; }, 50);
}

/** Disables `button` and shows `busyText` while `work` runs. */
export async function busy(button, busyText, work) {
  const label = button.textContent;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  if (busyText) button.textContent = busyText;
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
    if (busyText) button.textContent = label;
  }
}

/**
 * An accessible confirmation: the native modal <dialog> traps focus, closes on Escape and restores
 * focus to the opener. Resolves to true when the user confirms.
 */
export function confirmDialog({ title, text, ok }) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = ok;
  document.getElementById("confirm-cancel").textContent = t("cancel");
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
    document.getElementById("confirm-cancel").focus();
  });
}
