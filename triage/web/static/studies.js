// Study list: GET /api/studies (newest first, as the API orders them) every POLL_MS, one row
// per analysed series with its status, volumes, decision and quality.

import { api, decisionBadge, el, formatMl, formatRatio, formatTime, qualityChip, signedInUser } from "./common.js";

const POLL_MS = 4000;

const body = document.querySelector("#studies tbody");
const empty = document.getElementById("empty");
const refreshed = document.getElementById("refreshed");
const listError = document.getElementById("list-error");

/** A cell with its column name (shown beside the value in the narrow card layout). */
function cell(label, content, className = "") {
  return el("td", { "data-label": label, class: className }, content);
}

function statusChip(study) {
  const chip = el("span", { class: `chip status-${study.status}`, text: study.status });
  if (study.error) chip.title = study.error;
  return chip;
}

function row(study) {
  const link = el("a", { href: `/studies/${encodeURIComponent(study.id)}`,
    text: study.description || study.series_uid });
  const title = el("div", {}, link);
  if (study.generation > 1) title.append(el("span", { class: "muted", text: ` (generation ${study.generation})` }));
  if (study.error) title.append(el("div", { class: "error small", text: study.error }));
  return el("tr", { "data-id": study.id },
    cell("Received", formatTime(study.last_received ?? study.first_received)),
    cell("Series", title, "series"),
    cell("Status", statusChip(study)),
    cell("Core", formatMl(study.core_ml), "num"),
    cell("Tmax > 6 s", formatMl(study.tmax6_ml), "num"),
    cell("Mismatch", formatMl(study.mismatch_ml), "num"),
    cell("Ratio", formatRatio(study.mismatch_ratio), "num"),
    cell("DEFUSE 3", decisionBadge(study.defuse3)),
    cell("DAWN", decisionBadge(study.dawn)),
    cell("Quality", qualityChip(study.quality_level)));
}

async function refresh() {
  try {
    const { studies } = await api("GET", "/api/studies");
    body.replaceChildren(...studies.map(row));
    empty.hidden = studies.length > 0;
    listError.hidden = true;
    refreshed.textContent = `Updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    listError.textContent = `The list could not be refreshed: ${error.message}.`;
    listError.hidden = false;
  }
}

/** Poll while the page is visible; refresh at once when it becomes visible again. */
async function poll() {
  if (!document.hidden) await refresh();
  setTimeout(poll, POLL_MS);
}

signedInUser().then(poll).catch(() => null);
document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
