// Sign-in page: POST /api/login with the user name and password as JSON; on success the session
// cookie is set and the browser goes on to `?next=` (a path on this server) or the study list.

import { t } from "./common.js";

const form = document.getElementById("login");
const error = document.getElementById("login-error");

/** Where to go after signing in: `next` when it is a path of this server, else the list. */
function nextPage() {
  const next = new URLSearchParams(location.search).get("next") || "/";
  return next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/login") ? next : "/";
}

function showError(message) {
  error.textContent = message;
  error.hidden = false;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const username = form.username.value.trim();
  const password = form.password.value;
  if (!username || !password) {
    showError(t("viewer.login_missing"));
    return;
  }
  const button = form.querySelector("button");
  button.disabled = true;
  try {
    const response = await fetch("/api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      credentials: "same-origin",
      body: JSON.stringify({ username, password }),
    });
    if (response.ok) {
      location.assign(nextPage());
      return;
    }
    showError(response.status === 401 ? t("viewer.login_wrong")
      : t("viewer.login_failed", { status: response.status }));
  } catch {
    showError(t("viewer.unreachable"));
  } finally {
    button.disabled = false;
  }
});
