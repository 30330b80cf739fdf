// /login and /register: one form, posted with fetch to /api/v1/auth/{login,register}.

import { initLang, t, onLangChange } from "./i18n.js";
import { api, saveSession, takeFlash, token } from "./api.js";
import { showError, busy } from "./ui.js";

const mode = document.body.dataset.mode; // "login" | "register"
const form = document.getElementById("auth-form");
const errorBox = document.getElementById("auth-error");
const notice = document.getElementById("auth-notice");
const submit = document.getElementById("auth-submit");
let lastError = null;
let flash = takeFlash();

function renderNotice() {
  notice.hidden = !flash;
  notice.textContent = flash ? t(flash) : "";
}

initLang();
renderNotice();
onLangChange(() => {
  renderNotice();
  showError(errorBox, lastError);
});

// Already signed in in this tab: go straight to the page.
if (token() && !flash) location.replace("/oauth");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  lastError = null;
  showError(errorBox, null);
  const email = form.email.value.trim();
  const password = form.password.value;
  if (!email || !password) {
    (email ? form.password : form.email).focus();
    return;
  }
  try {
    const session = await busy(submit, t("working"), () =>
      api("POST", `/auth/${mode}`, { email, password }, { auth: false }),
    );
    saveSession(session.token, session.user && session.user.email);
    location.assign("/oauth");
  } catch (err) {
    lastError = err;
    showError(errorBox, err);
    form.password.focus();
  }
});
