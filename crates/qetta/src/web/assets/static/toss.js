// The Toss card: connection test (result and latency) and identity verification (request, then
// poll the status until COMPLETED or EXPIRED, then show the masked identity).

import { t, formatDateTime } from "./i18n.js";
import { api } from "./api.js";
import { el, showError, announce, busy } from "./ui.js";

const POLL_MS = 2000;
const POLL_LIMIT_MS = 15 * 60 * 1000; // longer than any Toss request lives
const FINAL = new Set(["COMPLETED", "EXPIRED"]);

export function createToss(card, ctx) {
  const testButton = card.querySelector("[data-action=test]");
  const testResult = card.querySelector("[data-role=test-result]");
  const form = card.querySelector("[data-role=verify-form]");
  const personal = card.querySelector("[data-role=personal]");
  const verifyError = card.querySelector("[data-role=verify-error]");
  const box = card.querySelector("[data-role=verification]");

  let test = null; // {result} | {error}
  let verification = null; // {request, status, identity, error, stopped}
  let pollTimer = null;

  // ---- connection test ------------------------------------------------------------------

  function renderTest() {
    testResult.hidden = !test;
    if (!test) return;
    testResult.replaceChildren();
    if (test.error) {
      testResult.className = "result fail";
      const inner = el("span");
      showError(inner, test.error);
      testResult.append(...inner.childNodes);
      return;
    }
    const r = test.result;
    testResult.className = r.ok ? "result ok" : "result fail";
    testResult.dataset.ok = String(!!r.ok);
    testResult.textContent = r.ok
      ? t("test_ok", { ms: r.latency_ms })
      : t("test_failed", { step: r.step || "?", code: r.provider_code ? ` (${r.provider_code})` : "", ms: r.latency_ms });
  }

  testButton.addEventListener("click", async () => {
    try {
      test = { result: await busy(testButton, t("testing"), () => api("POST", "/oauth/toss/test")) };
    } catch (err) {
      test = { error: err };
    }
    renderTest();
    ctx.refresh();
  });

  // ---- identity verification --------------------------------------------------------------

  const requestType = () => form.querySelector("input[name=request_type]:checked").value;

  function syncType() {
    const isPersonal = requestType() === "USER_PERSONAL";
    personal.hidden = !isPersonal;
    for (const input of personal.querySelectorAll("input")) input.disabled = !isPersonal;
  }
  for (const radio of form.querySelectorAll("input[name=request_type]")) radio.addEventListener("change", syncType);
  syncType();

  /** Returns the request body, or marks the first bad field and returns null. */
  function readForm() {
    for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
    const type = requestType();
    if (type === "USER_NONE") return { request_type: type };
    const name = form.elements.name.value.trim();
    const phone = form.elements.phone.value.replace(/\D/g, "");
    const birthday = form.elements.birthday.value.replace(/\D/g, "");
    const bad = !name ? ["name", "check_name"]
      : !/^01\d{8,9}$/.test(phone) ? ["phone", "check_phone"]
      : !/^\d{8}$/.test(birthday) ? ["birthday", "check_birthday"]
      : null;
    if (bad) {
      const input = form.elements[bad[0]];
      input.setAttribute("aria-invalid", "true");
      showError(verifyError, { message: t(bad[1]) });
      input.focus();
      return null;
    }
    return { request_type: type, name, phone, birthday };
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(verifyError, null);
    const body = readForm();
    if (!body) return;
    clearTimeout(pollTimer);
    const submit = form.querySelector("button[type=submit]");
    try {
      const request = await busy(submit, t("working"), () => api("POST", "/oauth/toss/verifications", body));
      verification = { request, status: "REQUESTED", identity: null, error: null, stopped: false, since: Date.now() };
      renderVerification();
      announce(t("verification_sent", { tx: request.tx_id }));
      pollTimer = setTimeout(poll, POLL_MS);
    } catch (err) {
      showError(verifyError, err);
    }
  });

  async function poll() {
    const v = verification;
    if (!v) return;
    try {
      const s = await api("GET", `/oauth/toss/verifications/${encodeURIComponent(v.request.tx_id)}`);
      if (v !== verification) return; // a newer request replaced this one
      const changed = s.status !== v.status;
      v.status = s.status;
      v.identity = s.identity || null;
      v.error = null;
      renderVerification();
      if (changed) announce(`${t("v_status")}: ${t("v_" + s.status)}`);
      if (FINAL.has(s.status)) {
        if (s.status === "COMPLETED") ctx.refresh();
        return;
      }
    } catch (err) {
      if (v !== verification) return;
      v.error = err;
      if (err.status && err.status < 500 && err.status !== 429) {
        v.stopped = true;
        renderVerification();
        return;
      }
      renderVerification();
    }
    if (Date.now() - v.since > POLL_LIMIT_MS) {
      v.stopped = true;
      renderVerification();
      return;
    }
    pollTimer = setTimeout(poll, POLL_MS);
  }

  function identityFacts(identity) {
    const rows = [
      ["id_name", identity.name_masked],
      ["id_birth_year", identity.birth_year],
      ["id_gender", identity.gender],
      ["id_nationality", identity.nationality],
      ["id_age_group", identity.age_group],
    ].filter(([, v]) => v !== undefined && v !== null && v !== "");
    const facts = rows.flatMap(([k, v]) => ctx.fact(t(k), String(v)));
    if (identity.verified_at) facts.push(...ctx.timeFact(t("id_verified_at"), identity.verified_at));
    return facts;
  }

  function renderVerification() {
    const v = verification;
    box.hidden = !v;
    if (!v) return;
    box.dataset.status = v.status;
    const r = v.request;
    const parts = [
      el("p", { text: t("verification_sent", { tx: r.tx_id }) }),
      el("p", { class: "v-status" },
        el("span", { class: "muted", text: t("v_status") + ": " }),
        el("strong", { dataset: { role: "v-status" }, text: t("v_" + v.status) })),
    ];
    const appLink = r.app_scheme || r.android_app_uri || r.ios_app_uri;
    if (appLink && !FINAL.has(v.status)) {
      parts.push(el("p", {}, el("a", { href: appLink, target: "_blank", rel: "noopener noreferrer", text: t("open_toss") })));
    }
    if (v.identity) {
      parts.push(el("h4", { text: t("identity") }), el("dl", { class: "facts", dataset: { role: "identity" } }, identityFacts(v.identity)));
    }
    const errBox = el("div", { class: "error", role: "alert", hidden: true });
    showError(errBox, v.error);
    parts.push(errBox);
    if (v.stopped) parts.push(el("p", { class: "muted", text: t("v_stopped") }));
    box.replaceChildren(...parts);
  }

  return {
    /** Toss-only facts from the status entry: verified, the last verified identity, last test. */
    facts(entry) {
      const out = [];
      if (typeof entry.verified === "boolean") out.push(...ctx.fact(t("verified"), entry.verified ? t("yes") : t("no")));
      if (entry.identity && entry.identity.name_masked) out.push(...ctx.fact(t("identity"), entry.identity.name_masked));
      if (entry.last_test) {
        const lt = entry.last_test;
        const text = `${lt.ok ? "✓" : "✗"} ${lt.step || ""} · ${lt.latency_ms} ms · ${formatDateTime(lt.at)}`;
        out.push(...ctx.fact(t("last_test"), text));
      }
      return out;
    },
    update() {},
    reset() {
      clearTimeout(pollTimer);
      verification = null;
      test = null;
      renderTest();
      renderVerification();
    },
    relabel() {
      renderTest();
      renderVerification();
    },
  };
}
