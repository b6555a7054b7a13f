// Shared by the viewer's pages: JSON requests to the node's API (a 401 leads to the sign-in
// page), the signed-in user in the page header, DOM building and number formatting.

const TEXTS = JSON.parse(document.getElementById("texts")?.textContent || "{}");

/**
 * The page language's text of catalog `key` (`viewer.*`) with each `{name}` replaced by
 * `values[name]`; the key itself when the page lacks it (so that a missing text shows).
 */
export function t(key, values = {}) {
  const template = TEXTS[key] ?? key;
  return template.replace(/\{([a-z_]+)\}/g, (whole, name) => (name in values ? String(values[name]) : whole));
}

/** Go to the sign-in page, coming back to this page afterwards. */
export function toLogin() {
  const here = location.pathname + location.search;
  location.assign("/login?next=" + encodeURIComponent(here));
}

/** The API's one-line error message of a failed response (FastAPI's `detail`), or its status. */
function errorMessage(status, data) {
  if (data && typeof data.detail === "string") return data.detail;
  return `the server answered ${status}`;
}

/** The session's CSRF token (the `triage_csrf` cookie the sign-in set), or "" without one. */
function csrfToken() {
  const found = document.cookie.split("; ").find((pair) => pair.startsWith("triage_csrf="));
  return found ? found.slice("triage_csrf=".length) : "";
}

/**
 * `method url` with an optional JSON body; resolves to the parsed JSON answer. A change (not
 * GET) carries the CSRF token in `X-CSRF-Token`. A 401 sends the browser to the sign-in page;
 * any other failure rejects with an Error of one line (its `status` the HTTP status, when
 * there was an answer).
 */
export async function api(method, url, body) {
  const options = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (method !== "GET") options.headers["X-CSRF-Token"] = csrfToken();
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, options);
  } catch {
    throw new Error("the triage node cannot be reached");
  }
  const data = await response.json().catch(() => null);
  if (response.status === 401) {
    toLogin();
    throw new Error("not signed in");
  }
  if (!response.ok) throw Object.assign(new Error(errorMessage(response.status, data)), { status: response.status });
  return data;
}

/**
 * An element `tag` with attributes (`class`, `text`, `hidden`, others as attributes) and
 * children (nodes or strings). Text always goes in as text, never as HTML.
 */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else if (name === "hidden") node.hidden = true;
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children);
  return node;
}

/** The signed-in user `{username, role}`, shown in the header with a working sign-out button. */
export async function signedInUser() {
  const me = await api("GET", "/api/me");
  document.getElementById("user").textContent = `${me.username} (${me.role})`;
  const logout = document.getElementById("logout");
  logout.hidden = false;
  logout.addEventListener("click", async () => {
    await api("POST", "/api/logout").catch(() => null);
    location.assign("/login");
  });
  return me;
}

/** A volume in mL with one decimal, or an en dash when there is none. */
export function formatMl(value) {
  return value === null || value === undefined ? "–" : `${value.toFixed(1)} mL`;
}

/** A ratio (mismatch ratio, HIR) with two decimals, or an en dash when undefined. */
export function formatRatio(value) {
  return value === null || value === undefined ? "–" : value.toFixed(2);
}

/** A DEFUSE 3 / DAWN imaging decision (true, false or null = unknown) as a coloured word. */
export function decisionBadge(value) {
  const [text, name] = value === true ? ["eligible", "eligible"]
    : value === false ? ["not eligible", "not-eligible"] : ["unknown", "unknown"];
  return el("span", { class: `decision decision-${name}`, text });
}

/** A quality level (`good`, `limited`) as a chip; an en dash when there is none. */
export function qualityChip(level) {
  return level ? el("span", { class: `chip quality-${level}`, text: level }) : "–";
}

/** POSIX seconds as local date and time, or an en dash. */
export function formatTime(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  return new Date(seconds * 1000).toLocaleString(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
  });
}
