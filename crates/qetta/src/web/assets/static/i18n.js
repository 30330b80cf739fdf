// Korean and English strings, the language choice, and locale-aware formatting.
// The language comes from localStorage ("qetta.lang") if the user picked one, else from
// navigator.language (Korean for ko-*, English otherwise).

const STRINGS = {
  en: {
    skip_to_content: "Skip to content",
    switch_to: "한국어",
    switch_label: "한국어로 보기 (Switch to Korean)",
    email: "Email",
    password: "Password",
    login_title: "Sign in",
    login_intro: "Manage your bank and identity connections.",
    login_submit: "Sign in",
    login_switch_q: "No account yet?",
    login_switch_link: "Create one",
    password_hint_login: "",
    register_title: "Create an account",
    register_intro: "One account for all your connections.",
    register_submit: "Create account",
    register_switch_q: "Already have an account?",
    register_switch_link: "Sign in",
    password_hint_register: "At least 10 characters; not your email.",
    working: "Working…",
    session_expired: "Your session has ended. Please sign in again.",
    sign_out: "Sign out",
    signed_out: "You have signed out.",
    connections_title: "Connections",
    connections_intro: "See and manage what Qetta may access on your behalf.",
    kftc_name: "KFTC Open Banking",
    kftc_intro: "Bank accounts, balances and transactions through the KFTC Open Banking network.",
    toss_name: "Toss identity verification",
    toss_intro: "Verify a person's identity with Toss.",
    kakao_name: "Kakao Login",
    kakao_intro: "Sign-in with Kakao and the Kakao APIs your app uses, for each Kakao account you connect.",
    naver_name: "Naver Login",
    naver_intro: "Sign-in with Naver and the Naver APIs your app uses, for each Naver account you connect.",
    generic_intro: "Access to {provider} on your behalf, for each account you connect.",
    state_consent_expired: "Consent expired",
    status_note_needs_reauth: "The provider needs your consent again before this connection can be used. Choose Reconnect.",
    status_note_consent_expired: "The consent period of this connection has ended. Choose Reconnect to consent again.",
    status_note_revoked: "Access was withdrawn at the provider. Reconnect to use it again, or disconnect to remove it.",
    not_available_here: "Not available on this server",
    account: "Account",
    unnamed_connection: "Connection {n}",
    no_connections: "No connections yet.",
    add_another: "Add another",
    new_label: "Name for the new connection (optional)",
    new_label_hint: "For example “personal” or “work”; at most 64 characters.",
    reconnect: "Reconnect",
    rename: "Rename",
    rename_label: "Name of this connection",
    save: "Save",
    renamed: "Renamed to “{label}”.",
    label_cleared: "The name was removed.",
    confirm_disconnect_one_title: "Disconnect “{name}”?",
    confirm_disconnect_one_text: "Qetta will ask {provider} to end this access and delete its tokens. Your other connections stay. You can connect again later.",
    disconnected_one: "“{name}” disconnected.",
    disconnected_unrevoked: "“{name}” was removed here, but {provider} could not be told; you can also end the access in your {provider} account settings.",
    state_loading: "Loading…",
    state_not_connected: "Not connected",
    state_active: "Active",
    state_needs_reauth: "Needs re-consent",
    state_revoked: "Revoked",
    state_not_configured: "Not available",
    availability: "Availability",
    not_configured_note: "This server's operator has not set this provider up.",
    scopes: "Scopes",
    connected_at: "Connected",
    last_refreshed: "Last refreshed",
    token_expires: "Token expires",
    verified: "Identity verified",
    last_test: "Last test",
    yes: "Yes",
    no: "No",
    never: "Never",
    none: "None",
    connect: "Connect",
    reconsent: "Re-consent",
    disconnect: "Disconnect",
    popup_open: "Finish connecting in the window that opened. This page updates when you are done.",
    popup_redirect: "Pop-ups are blocked; continuing in this tab…",
    connected_ok: "{provider} connected.",
    connect_failed: "Connecting failed: {message}",
    reauth_needed: "The bank needs your consent again. Choose Re-consent.",
    accounts: "Linked accounts",
    no_accounts: "No linked accounts.",
    balance: "Balance",
    available: "Available",
    balance_loading: "Loading balance…",
    balance_failed: "Balance unavailable",
    show_transactions: "Transactions",
    hide_transactions: "Hide transactions",
    transactions_of: "Transactions of {account}, last 3 months",
    no_transactions: "No transactions in the last 3 months.",
    more: "More",
    loading: "Loading…",
    col_date: "Date",
    col_description: "Description",
    col_amount: "Amount",
    col_balance: "Balance after",
    dir_in: "Deposit",
    dir_out: "Withdrawal",
    dir_other: "Other",
    test_connection: "Test connection",
    testing: "Testing…",
    test_ok: "Connection works ({ms} ms).",
    test_failed: "Failed at step “{step}”{code} ({ms} ms).",
    verify_identity: "Verify identity",
    request_type: "Request type",
    type_personal: "With the person's details (USER_PERSONAL)",
    type_none: "The person enters their details in Toss (USER_NONE)",
    name: "Name",
    phone: "Mobile number",
    phone_hint: "Digits only, e.g. 01012345678",
    birthday: "Date of birth",
    birthday_hint: "8 digits: YYYYMMDD",
    start_verification: "Send request",
    check_name: "Enter the name.",
    check_phone: "Enter a mobile number of 10–11 digits starting with 01.",
    check_birthday: "Enter the date of birth as 8 digits (YYYYMMDD).",
    verification_sent: "Request {tx} sent. The person confirms in the Toss app.",
    open_toss: "Open Toss",
    v_status: "Status",
    v_REQUESTED: "Requested: waiting for the person",
    v_IN_PROGRESS: "In progress",
    v_COMPLETED: "Completed",
    v_EXPIRED: "Expired: send a new request",
    v_stopped: "Stopped checking; send a new request if needed.",
    identity: "Verified identity",
    id_name: "Name",
    id_birth_year: "Birth year",
    id_gender: "Gender",
    id_nationality: "Nationality",
    id_age_group: "Age group",
    id_verified_at: "Verified",
    confirm_account_title: "Connect to this Qetta account?",
    confirm_account_text: "You were signed in by a link. Your bank accounts will be connected to the Qetta account {account}. Continue only if this is you.",
    confirm_account_ok: "Yes, connect",
    this_account: "this account",
    confirm_disconnect_title: "Disconnect {provider}?",
    confirm_disconnect_text: "Qetta will delete its tokens for {provider}. You can connect again later.",
    cancel: "Cancel",
    disconnected: "{provider} disconnected.",
    request_id: "Request ID",
    network_error: "Cannot reach the service. Check your connection and try again.",
    error_generic: "Something went wrong.",
  },
  ko: {
    skip_to_content: "본문으로 건너뛰기",
    switch_to: "English",
    switch_label: "Switch to English (영어로 보기)",
    email: "이메일",
    password: "비밀번호",
    login_title: "로그인",
    login_intro: "은행 및 본인확인 연결을 관리하세요.",
    login_submit: "로그인",
    login_switch_q: "아직 계정이 없나요?",
    login_switch_link: "계정 만들기",
    password_hint_login: "",
    register_title: "계정 만들기",
    register_intro: "하나의 계정으로 모든 연결을 관리합니다.",
    register_submit: "계정 만들기",
    register_switch_q: "이미 계정이 있나요?",
    register_switch_link: "로그인",
    password_hint_register: "10자 이상, 이메일과 다르게 입력하세요.",
    working: "처리 중…",
    session_expired: "세션이 만료되었습니다. 다시 로그인하세요.",
    sign_out: "로그아웃",
    signed_out: "로그아웃했습니다.",
    connections_title: "연결 관리",
    connections_intro: "Qetta가 대신 접근할 수 있는 서비스를 확인하고 관리합니다.",
    kftc_name: "금융결제원 오픈뱅킹",
    kftc_intro: "오픈뱅킹으로 계좌, 잔액, 거래내역을 조회합니다.",
    toss_name: "토스 본인확인",
    toss_intro: "토스로 본인 여부를 확인합니다.",
    kakao_name: "카카오 로그인",
    kakao_intro: "연결한 카카오 계정마다 카카오 로그인과 앱이 쓰는 카카오 API를 이용합니다.",
    naver_name: "네이버 로그인",
    naver_intro: "연결한 네이버 계정마다 네이버 로그인과 앱이 쓰는 네이버 API를 이용합니다.",
    generic_intro: "연결한 계정마다 {provider}에 대신 접근합니다.",
    state_consent_expired: "동의 기간 만료",
    status_note_needs_reauth: "이 연결을 사용하려면 제공자에 다시 동의해야 합니다. 다시 연결하기를 누르세요.",
    status_note_consent_expired: "이 연결의 동의 기간이 끝났습니다. 다시 연결하기를 눌러 다시 동의하세요.",
    status_note_revoked: "제공자 쪽에서 접근 권한이 철회되었습니다. 다시 연결하거나 연결을 해제해 삭제하세요.",
    not_available_here: "이 서버에서는 사용할 수 없음",
    account: "계정",
    unnamed_connection: "연결 {n}",
    no_connections: "아직 연결이 없습니다.",
    add_another: "다른 계정 추가",
    new_label: "새 연결의 이름 (선택)",
    new_label_hint: "예: “개인”, “업무”. 최대 64자.",
    reconnect: "다시 연결하기",
    rename: "이름 바꾸기",
    rename_label: "이 연결의 이름",
    save: "저장",
    renamed: "이름을 “{label}”(으)로 바꿨습니다.",
    label_cleared: "이름을 지웠습니다.",
    confirm_disconnect_one_title: "“{name}” 연결을 해제할까요?",
    confirm_disconnect_one_text: "Qetta가 {provider}에 이 접근의 종료를 요청하고 토큰을 삭제합니다. 다른 연결은 그대로 남습니다. 나중에 다시 연결할 수 있습니다.",
    disconnected_one: "“{name}” 연결을 해제했습니다.",
    disconnected_unrevoked: "“{name}”을(를) 여기서 삭제했지만 {provider}에 알리지 못했습니다. {provider} 계정 설정에서도 접근을 끊을 수 있습니다.",
    state_loading: "불러오는 중…",
    state_not_connected: "연결 안 됨",
    state_active: "사용 중",
    state_needs_reauth: "재동의 필요",
    state_revoked: "해지됨",
    state_not_configured: "사용 불가",
    availability: "사용 가능 여부",
    not_configured_note: "이 서버의 운영자가 이 제공자를 설정하지 않았습니다.",
    scopes: "권한 범위",
    connected_at: "연결일",
    last_refreshed: "마지막 갱신",
    token_expires: "토큰 만료",
    verified: "본인확인 완료",
    last_test: "마지막 테스트",
    yes: "예",
    no: "아니요",
    never: "없음",
    none: "없음",
    connect: "연결하기",
    reconsent: "재동의하기",
    disconnect: "연결 해제",
    popup_open: "새로 열린 창에서 연결을 마무리하세요. 완료되면 이 페이지가 갱신됩니다.",
    popup_redirect: "팝업이 차단되어 이 탭에서 계속합니다…",
    connected_ok: "{provider} 연결이 완료되었습니다.",
    connect_failed: "연결하지 못했습니다: {message}",
    reauth_needed: "은행에서 다시 동의를 요청합니다. 재동의하기를 누르세요.",
    accounts: "연결된 계좌",
    no_accounts: "연결된 계좌가 없습니다.",
    balance: "잔액",
    available: "출금 가능",
    balance_loading: "잔액 불러오는 중…",
    balance_failed: "잔액을 불러올 수 없음",
    show_transactions: "거래내역",
    hide_transactions: "거래내역 닫기",
    transactions_of: "{account} 최근 3개월 거래내역",
    no_transactions: "최근 3개월 동안 거래가 없습니다.",
    more: "더 보기",
    loading: "불러오는 중…",
    col_date: "일시",
    col_description: "내용",
    col_amount: "금액",
    col_balance: "거래 후 잔액",
    dir_in: "입금",
    dir_out: "출금",
    dir_other: "기타",
    test_connection: "연결 테스트",
    testing: "테스트 중…",
    test_ok: "정상적으로 연결됩니다 ({ms}ms).",
    test_failed: "“{step}” 단계에서 실패했습니다{code} ({ms}ms).",
    verify_identity: "본인확인 요청",
    request_type: "요청 유형",
    type_personal: "이용자 정보를 입력해 요청 (USER_PERSONAL)",
    type_none: "이용자가 토스에서 직접 입력 (USER_NONE)",
    name: "이름",
    phone: "휴대폰 번호",
    phone_hint: "숫자만 입력, 예: 01012345678",
    birthday: "생년월일",
    birthday_hint: "8자리: YYYYMMDD",
    start_verification: "요청 보내기",
    check_name: "이름을 입력하세요.",
    check_phone: "01로 시작하는 10~11자리 휴대폰 번호를 입력하세요.",
    check_birthday: "생년월일을 8자리(YYYYMMDD)로 입력하세요.",
    verification_sent: "요청 {tx}을(를) 보냈습니다. 이용자가 토스 앱에서 확인합니다.",
    open_toss: "토스 열기",
    v_status: "상태",
    v_REQUESTED: "요청됨: 이용자 확인 대기 중",
    v_IN_PROGRESS: "진행 중",
    v_COMPLETED: "완료",
    v_EXPIRED: "만료됨: 새로 요청하세요",
    v_stopped: "상태 확인을 멈췄습니다. 필요하면 새로 요청하세요.",
    identity: "확인된 본인 정보",
    id_name: "이름",
    id_birth_year: "출생 연도",
    id_gender: "성별",
    id_nationality: "국적",
    id_age_group: "연령대",
    id_verified_at: "확인 일시",
    confirm_account_title: "이 Qetta 계정에 연결할까요?",
    confirm_account_text: "링크로 로그인되었습니다. 은행 계좌가 Qetta 계정 {account}에 연결됩니다. 본인 계정일 때만 계속하세요.",
    confirm_account_ok: "네, 연결합니다",
    this_account: "이 계정",
    confirm_disconnect_title: "{provider} 연결을 해제할까요?",
    confirm_disconnect_text: "Qetta가 보관한 {provider} 토큰을 삭제합니다. 나중에 다시 연결할 수 있습니다.",
    cancel: "취소",
    disconnected: "{provider} 연결을 해제했습니다.",
    request_id: "요청 ID",
    network_error: "서비스에 연결할 수 없습니다. 네트워크를 확인하고 다시 시도하세요.",
    error_generic: "문제가 발생했습니다.",
  },
};

const KEY = "qetta.lang";
const listeners = [];

function detect() {
  try {
    const saved = localStorage.getItem(KEY);
    if (saved === "ko" || saved === "en") return saved;
  } catch (_) { /* storage disabled: fall through */ }
  const langs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || "en"];
  return String(langs[0]).toLowerCase().startsWith("ko") ? "ko" : "en";
}

let lang = detect();

export function currentLang() {
  return lang;
}

/** The string for `key` in the current language, with `{name}` placeholders filled from `vars`. */
export function t(key, vars = {}) {
  const s = STRINGS[lang][key] ?? STRINGS.en[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
}

/** Whether `key` has a string (provider names and intros exist for the built-in providers only). */
export function hasString(key) {
  return key in STRINGS.en;
}

/** Fills every `[data-i18n]` element under `root` and sets <html lang>. */
export function translate(root = document) {
  document.documentElement.lang = lang;
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  const toggle = document.getElementById("lang-toggle");
  if (toggle) {
    toggle.textContent = t("switch_to");
    toggle.lang = lang === "ko" ? "en" : "ko";
    toggle.setAttribute("aria-label", t("switch_label"));
  }
}

/** Switches language, remembers it, re-translates and tells the page (to re-render dynamic parts). */
export function setLang(next) {
  lang = next === "ko" ? "ko" : "en";
  try { localStorage.setItem(KEY, lang); } catch (_) { /* not remembered; still switched */ }
  translate();
  for (const fn of listeners) fn(lang);
}

export function onLangChange(fn) {
  listeners.push(fn);
}

/** Wires the header toggle button and translates the static parts of the page. */
export function initLang() {
  translate();
  const toggle = document.getElementById("lang-toggle");
  if (toggle) toggle.addEventListener("click", () => setLang(lang === "ko" ? "en" : "ko"));
}

const locale = () => (lang === "ko" ? "ko-KR" : "en-GB");

/** A date and time in the browser's time zone (or `timeZone`), e.g. "2026. 4. 1. 오후 3:04". */
export function formatDateTime(iso, timeZone) {
  if (!iso) return t("never");
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return new Intl.DateTimeFormat(locale(), { dateStyle: "medium", timeStyle: "short", timeZone }).format(d);
}

/** "in 89 days" / "89일 후", "3 hours ago" / "3시간 전". */
export function relativeTime(iso, now = Date.now()) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const secs = Math.round((d.getTime() - now) / 1000);
  const abs = Math.abs(secs);
  const rtf = new Intl.RelativeTimeFormat(locale(), { numeric: "always" });
  if (abs < 60) return rtf.format(secs, "second");
  if (abs < 3600) return rtf.format(Math.round(secs / 60), "minute");
  if (abs < 86400) return rtf.format(Math.round(secs / 3600), "hour");
  return rtf.format(Math.round(secs / 86400), "day");
}

/** Whole won, with sign: "₩1,234,000" / "-₩5,000". */
export function formatKRW(n) {
  if (typeof n !== "number") return "—";
  return new Intl.NumberFormat(locale(), { style: "currency", currency: "KRW", maximumFractionDigits: 0 }).format(n);
}
