// /docs: an interactive reference of the service's own OpenAPI document (GET /api/v1/openapi.json).
//
// A small renderer written for this document, not a vendored UI bundle: tags → operations with
// method, path, summary, description, parameters (schemas and constraints), request body, responses
// by status, `$ref`s resolved, security requirements; a filter box; and a "try it" form per
// operation. Everything is built with DOM APIs and textContent (never innerHTML): the document's
// text cannot inject markup.
//
// "Try it" sends the request to this service only (same origin, relative URL; the page CSP has
// `connect-src 'self'` as well) with the JWT of the signed-in session, the same sessionStorage
// entry the /oauth page uses. It never sends the service key: the page has no field for it, and an
// operation that needs it is shown as "server to server only" with its form disabled.

import { initLang, onLangChange, currentLang } from "./i18n.js";
import { token, sessionEmail, jwtClaims } from "./api.js";
import { el } from "./ui.js";

const STRINGS = {
  en: {
    title: "API reference",
    intro: "Every operation of this service, from its OpenAPI document. “Try it” sends the request to this server with your signed-in session.",
    sign_in: "Sign in",
    filter_label: "Filter operations",
    filter_count: "{shown} of {total} operations",
    loading_failed: "The API document could not be loaded.",
    version: "Version {v} · OpenAPI {o} · ",
    raw_document: "the JSON document",
    parameters: "Parameters",
    request_body: "Request body",
    responses: "Responses",
    security: "Authentication",
    security_none: "None: anyone may call this.",
    security_bearer: "Bearer JWT of a user session",
    security_service_key: "the service key (x-qetta-service-key), from the app's backend only",
    security_and: " and ",
    security_or: "One of: ",
    name: "Name",
    location: "In",
    required: "required",
    optional: "optional",
    schema: "Schema",
    description: "Description",
    status: "Status",
    no_body: "No body.",
    try_it: "Try it",
    send: "Send",
    sending: "Sending…",
    body_label: "Request body (JSON)",
    result_status: "Status {status}",
    network_error: "The request could not be sent.",
    invalid_json: "The request body is not valid JSON.",
    missing_param: "Fill in “{name}”.",
    service_key_only: "This operation needs the service key, which belongs on the app's backend: it cannot be tried from the browser.",
    sign_in_first: "Sign in to try operations that need a session; the request would be refused with 401.",
    signed_in_as: "Requests are sent as {email}.",
    deprecated: "deprecated",
    one_of: "one of",
    any_of: "any of",
    all_of: "all of",
    items: "items",
    values: "values",
    recursive: "(see above)",
  },
  ko: {
    title: "API 레퍼런스",
    intro: "이 서비스의 모든 작업을 OpenAPI 문서에서 보여 줍니다. “직접 호출”은 로그인한 세션으로 이 서버에 요청을 보냅니다.",
    sign_in: "로그인",
    filter_label: "작업 검색",
    filter_count: "작업 {total}개 중 {shown}개",
    loading_failed: "API 문서를 불러오지 못했습니다.",
    version: "버전 {v} · OpenAPI {o} · ",
    raw_document: "JSON 문서",
    parameters: "매개변수",
    request_body: "요청 본문",
    responses: "응답",
    security: "인증",
    security_none: "없음: 누구나 호출할 수 있습니다.",
    security_bearer: "사용자 세션의 Bearer JWT",
    security_service_key: "서비스 키(x-qetta-service-key), 앱 백엔드에서만",
    security_and: " 그리고 ",
    security_or: "다음 중 하나: ",
    name: "이름",
    location: "위치",
    required: "필수",
    optional: "선택",
    schema: "스키마",
    description: "설명",
    status: "상태",
    no_body: "본문 없음.",
    try_it: "직접 호출",
    send: "보내기",
    sending: "보내는 중…",
    body_label: "요청 본문 (JSON)",
    result_status: "상태 {status}",
    network_error: "요청을 보내지 못했습니다.",
    invalid_json: "요청 본문이 올바른 JSON이 아닙니다.",
    missing_param: "“{name}”을(를) 입력하세요.",
    service_key_only: "이 작업에는 앱 백엔드에 두는 서비스 키가 필요하므로 브라우저에서 호출할 수 없습니다.",
    sign_in_first: "세션이 필요한 작업을 호출하려면 로그인하세요. 로그인하지 않으면 401로 거부됩니다.",
    signed_in_as: "{email} 계정으로 요청합니다.",
    deprecated: "지원 중단",
    one_of: "다음 중 하나",
    any_of: "다음 중 하나 이상",
    all_of: "모두 만족",
    items: "항목",
    values: "값",
    recursive: "(위 참조)",
  },
};

function d(key, vars = {}) {
  const s = STRINGS[currentLang()][key] ?? STRINGS.en[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
}

const METHODS = ["get", "put", "post", "patch", "delete", "head", "options"];
const DOC_URL = "/api/v1/openapi.json";

let doc = null;
// The form values survive a language switch (the whole list is re-rendered).
const formState = new Map();
const openOps = new Set();

/** Resolves a local `$ref` (`#/components/...`); returns `[object, refName|null]`. */
function deref(node, seen = new Set()) {
  let name = null;
  while (node && typeof node.$ref === "string") {
    const ref = node.$ref;
    if (!ref.startsWith("#/") || seen.has(ref)) return [{}, ref];
    seen.add(ref);
    name = ref.split("/").pop();
    node = ref.slice(2).split("/").reduce((o, k) => (o ? o[k.replace(/~1/g, "/").replace(/~0/g, "~")] : undefined), doc);
  }
  return [node || {}, name];
}

/** The operations in document order: `{ id, method, path, op, params }`. */
function operations() {
  const out = [];
  for (const [path, item] of Object.entries(doc.paths || {})) {
    const shared = item.parameters || [];
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      const params = new Map();
      for (const p of [...shared, ...(op.parameters || [])]) {
        const [param] = deref(p);
        params.set(param.in + ":" + param.name, param);
      }
      out.push({ id: method.toUpperCase() + " " + path, method, path, op, params: [...params.values()] });
    }
  }
  return out;
}

/** A DOM-id-safe slug for an operation. */
function slug(id) {
  return "op-" + id.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");
}

/** "string, uuid, 1–64 chars, pattern …" */
function constraints(s) {
  const parts = [];
  const type = Array.isArray(s.type) ? s.type.join(" | ") : s.type;
  if (type) parts.push(s.format ? `${type} (${s.format})` : type);
  else if (s.format) parts.push(s.format);
  if (s.nullable) parts.push("nullable");
  if (s.minimum !== undefined) parts.push(`≥ ${s.minimum}`);
  if (s.exclusiveMinimum !== undefined) parts.push(`> ${s.exclusiveMinimum}`);
  if (s.maximum !== undefined) parts.push(`≤ ${s.maximum}`);
  if (s.exclusiveMaximum !== undefined) parts.push(`< ${s.exclusiveMaximum}`);
  if (s.minLength !== undefined) parts.push(`minLength ${s.minLength}`);
  if (s.maxLength !== undefined) parts.push(`maxLength ${s.maxLength}`);
  if (s.minItems !== undefined) parts.push(`minItems ${s.minItems}`);
  if (s.maxItems !== undefined) parts.push(`maxItems ${s.maxItems}`);
  if (s.pattern !== undefined) parts.push(`pattern ${s.pattern}`);
  if (s.enum) parts.push(`${d("one_of")}: ${s.enum.map((v) => JSON.stringify(v)).join(", ")}`);
  if (s.const !== undefined) parts.push(`= ${JSON.stringify(s.const)}`);
  if (s.default !== undefined) parts.push(`default ${JSON.stringify(s.default)}`);
  if (s.readOnly) parts.push("readOnly");
  if (s.writeOnly) parts.push("writeOnly");
  return parts.join(", ");
}

/** A schema as a nested list; `seen` holds the `$ref`s on the current branch (cycles). */
function schemaView(raw, seen = new Set()) {
  if (raw && typeof raw.$ref === "string" && seen.has(raw.$ref)) {
    return el("span", { class: "mono" }, raw.$ref.split("/").pop(), " ", d("recursive"));
  }
  const branch = new Set(seen);
  if (raw && typeof raw.$ref === "string") branch.add(raw.$ref);
  const [s, name] = deref(raw);
  const box = el("div", { class: "schema" });
  const head = el("span", { class: "schema-type" });
  if (name) head.append(el("span", { class: "mono schema-name" }, name), " ");
  head.append(el("span", { class: "mono" }, constraints(s) || "any"));
  box.append(head);
  if (s.description) box.append(el("p", { class: "muted" }, s.description));
  for (const [key, label] of [["oneOf", "one_of"], ["anyOf", "any_of"], ["allOf", "all_of"]]) {
    if (Array.isArray(s[key])) box.append(el("p", {}, d(label) + ":"), el("ul", { class: "schema-list" }, s[key].map((v) => el("li", {}, schemaView(v, branch)))));
  }
  if (s.items) box.append(el("p", {}, d("items") + ":"), el("div", { class: "schema-nested" }, schemaView(s.items, branch)));
  const props = Object.entries(s.properties || {});
  if (props.length) {
    const required = new Set(s.required || []);
    box.append(
      el(
        "ul",
        { class: "schema-list" },
        props.map(([prop, sub]) =>
          el("li", {}, el("span", { class: "mono prop" }, prop), " ", el("span", { class: "hint-inline" }, required.has(prop) ? d("required") : d("optional")), " ", schemaView(sub, branch)),
        ),
      ),
    );
  }
  if (s.additionalProperties && typeof s.additionalProperties === "object") {
    box.append(el("p", {}, d("values") + ":"), el("div", { class: "schema-nested" }, schemaView(s.additionalProperties, branch)));
  }
  return box;
}

function contentView(content) {
  const entries = Object.entries(content || {});
  if (!entries.length) return el("p", { class: "muted" }, d("no_body"));
  return entries.map(([type, media]) => el("div", {}, el("p", { class: "mono" }, type), media.schema ? schemaView(media.schema) : null));
}

/** The security requirement list, in words. `[]` means public; absent means the document default. */
function securityOf(op) {
  return op.security ?? doc.security ?? [];
}

function securityText(reqs) {
  if (!reqs.length || reqs.some((r) => Object.keys(r).length === 0)) return d("security_none");
  const words = (r) =>
    Object.keys(r)
      .map((name) => {
        const [scheme] = deref(doc.components?.securitySchemes?.[name]);
        // OpenAPI 3.1: a non-OAuth requirement may name roles (the admin routes: ["admin"]).
        const roles = Array.isArray(r[name]) && r[name].length ? ` (${r[name].join(", ")})` : "";
        if (scheme.type === "http" && scheme.scheme === "bearer") return d("security_bearer") + roles;
        if (scheme.type === "apiKey" && scheme.name === "x-qetta-service-key") return d("security_service_key");
        return name;
      })
      .join(d("security_and"));
  return reqs.length === 1 ? words(reqs[0]) : d("security_or") + reqs.map(words).join(" · ");
}

/** How "try it" authenticates: "none" (public), "bearer", or "service_key" (not from a browser). */
function tryMode(op) {
  const reqs = securityOf(op);
  if (!reqs.length || reqs.some((r) => Object.keys(r).length === 0)) return "none";
  if (reqs.some((r) => Object.keys(r).length === 1 && "bearer" in r)) return "bearer";
  return "service_key";
}

function paramsTable(params) {
  return el(
    "div",
    { class: "table-scroll" },
    el(
      "table",
      { class: "list params" },
      el("thead", {}, el("tr", {}, [d("name"), d("location"), d("schema"), d("description")].map((h) => el("th", { scope: "col" }, h)))),
      el(
        "tbody",
        {},
        params.map((p) =>
          el(
            "tr",
            {},
            el("td", {}, el("span", { class: "mono" }, p.name), " ", el("span", { class: "hint-inline" }, p.required ? d("required") : d("optional"))),
            el("td", {}, p.in),
            el("td", {}, p.schema ? schemaView(p.schema) : ""),
            el("td", {}, p.description || ""),
          ),
        ),
      ),
    ),
  );
}

function responsesView(responses) {
  return el(
    "dl",
    { class: "responses" },
    Object.entries(responses || {}).flatMap(([status, raw]) => {
      const [r, name] = deref(raw);
      return [
        el("dt", {}, el("span", { class: "mono status-code" }, status), name ? el("span", { class: "mono schema-name" }, " " + name) : null),
        el("dd", {}, r.description ? el("p", {}, r.description) : null, r.content ? contentView(r.content) : null),
      ];
    }),
  );
}

/** The JSON example skeleton of a request body schema, to start the textarea with. */
function skeleton(raw, depth = 0) {
  const [s] = deref(raw);
  if (depth > 4) return null;
  if (s.default !== undefined) return s.default;
  if (s.enum) return s.enum[0];
  if (s.oneOf || s.anyOf) return skeleton((s.oneOf || s.anyOf)[0], depth + 1);
  switch (Array.isArray(s.type) ? s.type[0] : s.type) {
    case "object": {
      const out = {};
      for (const k of s.required || Object.keys(s.properties || {})) if (s.properties?.[k]) out[k] = skeleton(s.properties[k], depth + 1);
      return out;
    }
    case "array":
      return [];
    case "integer":
    case "number":
      return s.minimum ?? 0;
    case "boolean":
      return false;
    case "string":
      return "";
    default:
      return s.properties ? skeleton({ ...s, type: "object" }, depth) : null;
  }
}

function tryForm(o) {
  const mode = tryMode(o.op);
  const id = slug(o.id);
  const state = formState.get(o.id) || {};
  const section = el("section", { class: "try", "aria-labelledby": id + "-try" }, el("h4", { id: id + "-try" }, d("try_it")));
  if (mode === "service_key") {
    section.append(el("p", { class: "notice" }, d("service_key_only")));
    return section;
  }
  if (mode === "bearer") section.append(el("p", { class: "muted" }, token() ? d("signed_in_as", { email: sessionEmail() || "—" }) : d("sign_in_first")));
  const form = el("form", { novalidate: true, dataset: { try: o.id } });
  const inputs = [];
  for (const p of o.params.filter((p) => p.in === "path" || p.in === "query")) {
    const inputId = `${id}-p-${p.in}-${p.name}`;
    const input = el("input", { id: inputId, name: p.name, type: "text", autocomplete: "off", required: p.in === "path" || p.required ? true : null, dataset: { in: p.in } });
    input.value = state[inputId] ?? "";
    input.addEventListener("input", () => remember(o.id, inputId, input.value));
    inputs.push(input);
    form.append(el("div", { class: "field" }, el("label", { for: inputId }, `${p.name} (${p.in}${p.in === "path" || p.required ? ", " + d("required") : ""})`), input));
  }
  let bodyArea = null;
  const json = o.op.requestBody && deref(o.op.requestBody)[0].content?.["application/json"];
  if (json) {
    const areaId = `${id}-body`;
    bodyArea = el("textarea", { id: areaId, rows: "5", class: "mono", spellcheck: "false" });
    bodyArea.value = state[areaId] ?? JSON.stringify(skeleton(json.schema || {}), null, 2);
    bodyArea.addEventListener("input", () => remember(o.id, areaId, bodyArea.value));
    form.append(el("div", { class: "field" }, el("label", { for: areaId }, d("body_label")), bodyArea));
  }
  const button = el("button", { type: "submit", class: "primary small" }, d("send"));
  const result = el("div", { class: "try-result", "aria-live": "polite", dataset: { role: "result" } });
  form.append(el("div", { class: "actions" }, button), result);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    button.textContent = d("sending");
    try {
      await send(o, mode, inputs, bodyArea, result);
    } finally {
      button.disabled = false;
      button.textContent = d("send");
    }
  });
  section.append(form);
  return section;
}

function remember(opId, key, value) {
  const s = formState.get(opId) || {};
  s[key] = value;
  formState.set(opId, s);
}

/** Sends one "try it" request and shows its status and body. */
async function send(o, mode, inputs, bodyArea, result) {
  result.textContent = "";
  let path = o.path;
  const query = new URLSearchParams();
  for (const input of inputs) {
    const v = input.value;
    if (input.dataset.in === "path") {
      if (!v) {
        result.append(el("p", { class: "error" }, d("missing_param", { name: input.name })));
        input.focus();
        return;
      }
      path = path.replace(`{${input.name}}`, encodeURIComponent(v));
    } else if (v) {
      query.append(input.name, v);
    }
  }
  // Relative to this page, so always this origin; checked anyway before anything is sent.
  const url = new URL(path + (query.size ? "?" + query : ""), location.origin);
  if (url.origin !== location.origin) return;
  const headers = { Accept: "application/json" };
  let body;
  if (bodyArea && bodyArea.value.trim()) {
    try {
      body = JSON.stringify(JSON.parse(bodyArea.value));
    } catch (_) {
      result.append(el("p", { class: "error" }, d("invalid_json")));
      bodyArea.focus();
      return;
    }
    headers["Content-Type"] = "application/json";
  }
  // Only the session JWT, only for operations that take it: never the service key.
  const jwt = token();
  if (mode === "bearer" && jwt) headers.Authorization = "Bearer " + jwt;
  let response;
  try {
    response = await fetch(url.pathname + url.search, { method: o.method.toUpperCase(), headers, body, credentials: "same-origin", cache: "no-store", redirect: "manual" });
  } catch (_) {
    result.append(el("p", { class: "error" }, d("network_error")));
    return;
  }
  let text = await response.text().catch(() => "");
  if ((response.headers.get("content-type") || "").includes("json")) {
    try {
      text = JSON.stringify(JSON.parse(text), null, 2);
    } catch (_) {
      /* shown as sent */
    }
  }
  const status = response.type === "opaqueredirect" ? "3xx" : String(response.status);
  result.append(
    el("p", { class: "result " + (response.ok ? "ok" : "fail"), dataset: { status } }, d("result_status", { status })),
    el("pre", { class: "mono response-body", tabindex: "0", "aria-label": d("result_status", { status }) }, text),
  );
}

function operationView(o) {
  const id = slug(o.id);
  const details = el("details", { class: "op", id, dataset: { op: o.id, method: o.method } });
  if (openOps.has(o.id)) details.open = true;
  details.addEventListener("toggle", () => (details.open ? openOps.add(o.id) : openOps.delete(o.id)));
  details.append(
    el(
      "summary",
      {},
      el("span", { class: "method", dataset: { method: o.method } }, o.method.toUpperCase()),
      " ",
      el("span", { class: "mono op-path" }, o.path),
      " ",
      el("span", { class: "op-summary" }, o.op.summary || ""),
      o.op.deprecated ? el("span", { class: "badge" }, d("deprecated")) : null,
    ),
  );
  const body = el("div", { class: "op-body" });
  if (o.op.description) body.append(el("p", {}, o.op.description));
  body.append(el("h4", {}, d("security")), el("p", { dataset: { role: "security" } }, securityText(securityOf(o.op))));
  if (o.params.length) body.append(el("h4", {}, d("parameters")), paramsTable(o.params));
  if (o.op.requestBody) {
    const [rb] = deref(o.op.requestBody);
    body.append(el("h4", {}, d("request_body"), rb.required ? ` (${d("required")})` : ""));
    if (rb.description) body.append(el("p", {}, rb.description));
    body.append(...[contentView(rb.content)].flat());
  }
  body.append(el("h4", {}, d("responses")), responsesView(o.op.responses));
  body.append(tryForm(o));
  details.append(body);
  return details;
}

function render() {
  const root = document.getElementById("operations");
  root.textContent = "";
  const info = document.getElementById("doc-info");
  info.textContent = "";
  info.append(d("version", { v: doc.info?.version ?? "", o: doc.openapi ?? "" }), el("a", { href: DOC_URL }, d("raw_document")));
  const ops = operations();
  const tags = [...(doc.tags || []).map((t) => t.name)];
  for (const o of ops) for (const t of o.op.tags?.length ? o.op.tags : ["default"]) if (!tags.includes(t)) tags.push(t);
  for (const tag of tags) {
    const mine = ops.filter((o) => (o.op.tags?.length ? o.op.tags : ["default"]).includes(tag));
    if (!mine.length) continue;
    const tagInfo = (doc.tags || []).find((t) => t.name === tag);
    const headId = "tag-" + tag.replace(/[^a-zA-Z0-9]+/g, "-");
    root.append(
      el(
        "section",
        { class: "card tag", "aria-labelledby": headId, dataset: { tag } },
        el("h2", { id: headId }, tag),
        tagInfo?.description ? el("p", { class: "muted" }, tagInfo.description) : null,
        mine.map(operationView),
      ),
    );
  }
  root.dataset.state = "ready";
  root.removeAttribute("aria-busy");
  applyFilter();
}

/** Shows the operations whose method, path, summary, description or tag contain every word. */
function applyFilter() {
  const words = document.getElementById("filter").value.toLowerCase().split(/\s+/).filter(Boolean);
  let shown = 0;
  let total = 0;
  for (const section of document.querySelectorAll("#operations section.tag")) {
    let any = false;
    for (const op of section.querySelectorAll("details.op")) {
      total += 1;
      const hay = (op.dataset.op + " " + op.querySelector("summary").textContent + " " + section.dataset.tag + " " + (op.querySelector(".op-body > p")?.textContent || "")).toLowerCase();
      const match = words.every((w) => hay.includes(w));
      op.hidden = !match;
      if (match) {
        shown += 1;
        any = true;
      }
    }
    section.hidden = !any;
  }
  document.getElementById("filter-count").textContent = d("filter_count", { shown, total });
}

function translateOwn() {
  for (const node of document.querySelectorAll("[data-docs]")) node.textContent = d(node.dataset.docs);
  document.title = "Qetta Connect — " + d("title");
}

function showSession() {
  const jwt = token();
  const claims = jwtClaims(jwt || "");
  const live = jwt && !(claims.exp && claims.exp * 1000 < Date.now());
  document.getElementById("who").textContent = live ? sessionEmail() : "";
  document.getElementById("sign-in").hidden = !!live;
}

initLang();
translateOwn();
showSession();
onLangChange(() => {
  translateOwn();
  if (doc) render();
});
document.getElementById("filter").addEventListener("input", applyFilter);

try {
  const r = await fetch(DOC_URL, { headers: { Accept: "application/json" }, cache: "no-store" });
  if (!r.ok) throw new Error(String(r.status));
  doc = await r.json();
  render();
} catch (_) {
  const box = document.getElementById("page-error");
  box.textContent = d("loading_failed");
  box.hidden = false;
  const root = document.getElementById("operations");
  root.dataset.state = "error";
  root.removeAttribute("aria-busy");
}
