// Study page (/studies/{id}): the result of one analysed series from GET /api/studies/{id}
// (volumes, imaging criteria, quality), its maps in a slice viewer and its AIF/VOF curves; for
// admins, re-running the analysis with the AIF at a clicked pixel (POST .../reprocess) and
// share links. Opened from a share link (/share/{token}) it is a read-only view of that study
// (GET /share/{token}/study...), without sign-in, saying so and until when.

import { api, decisionBadge, el, formatMl, formatRatio, formatTime, qualityChip, signedInUser } from "./common.js";
import { plotCurves } from "./curves.js";
import { initSharePanel } from "./share.js";
import { MapViewer } from "./slices.js";

const POLL_MS = 3000;
const POLL_RUNNING_MS = 1000;  // queued or analysing: the alert may be read before the maps are written
const SETTLED = new Set(["done", "failed", "ignored"]);
const NO_RESULT = {
  receiving: "Images are arriving; the analysis starts once the series is complete.",
  incomplete: "The series is incomplete; it waits for its missing images.",
  ignored: "This series is not a CT perfusion series; it is not analysed.",
  queued: "The analysis is queued.",
  analysing: "The analysis is running.",
  failed: "The analysis failed; there is no result.",
};

const last = location.pathname.replace(/\/+$/, "").split("/").pop();
const shareToken = location.pathname.startsWith("/share/") ? last : null;
const url = shareToken ? `/share/${shareToken}/study` : `/api/studies/${encodeURIComponent(decodeURIComponent(last))}`;
const $ = (elementId) => document.getElementById(elementId);

let me = null;
let viewer = null;
let shownResult = null; // JSON text of the result on screen
let pending = null; // {generation, aif} of a re-run asked for here

function renderHead(study) {
  const result = study.result;
  const title = result?.series_description || study.description || "Series";
  $("title").textContent = title;
  document.title = `${title} – stroke-triage`;
  const shown = study.generation ? ` · result of generation ${study.generation}` : "";
  $("meta").replaceChildren(`Status ${study.status}${shown}`,
    el("span", { class: "uid small", text: `Series ${study.series_uid}` }));
  let problem = "Waiting for images";
  if (study.status === "failed") {
    problem = study.result ? `The newest analysis failed (shown: generation ${study.generation})` : "Analysis failed";
  }
  $("study-error").hidden = !study.error;
  $("study-error").textContent = study.error ? `${problem}: ${study.error}` : "";
  $("no-result").hidden = Boolean(study.result);
  $("no-result").textContent = study.result ? "" : NO_RESULT[study.status] || `Status: ${study.status}.`;
}

function volumeRow(label, field, text) {
  return [el("dt", { text: label }), el("dd", { "data-field": field, text })];
}

function renderSummary(result, generation) {
  const profile = result.profile || {};
  const core = profile.core_rcbf_below !== undefined ? ` (rCBF < ${Math.round(profile.core_rcbf_below * 100)} %)` : "";
  const tmax = profile.hypoperfusion_tmax_above_s ?? 6;
  const severe = profile.severe_tmax_above_s ?? 10;
  $("volumes").replaceChildren(
    ...volumeRow(`Core${core}`, "core_ml", formatMl(result.core_ml)),
    ...volumeRow(`Tmax > ${tmax} s`, "tmax6_ml", formatMl(result.tmax6_ml)),
    ...volumeRow(`Tmax > ${severe} s`, "tmax10_ml", formatMl(result.tmax10_ml)),
    ...volumeRow("Mismatch", "mismatch_ml", formatMl(result.mismatch_ml)),
    ...volumeRow("Mismatch ratio", "mismatch_ratio", formatRatio(result.mismatch_ratio)),
    ...volumeRow(`HIR (Tmax > ${severe} s / > ${tmax} s)`, "hir", formatRatio(result.hir)));

  const eligibility = result.eligibility || {};
  const reasons = eligibility.reasons || {};
  $("decisions").replaceChildren(...[["defuse3", "DEFUSE 3"], ["dawn", "DAWN"]].map(([key, name]) => {
    return el("li", { "data-decision": key }, el("strong", { text: `${name}: ` }), decisionBadge(eligibility[key]),
      reasons[key] ? el("div", { class: "small", text: reasons[key] }) : "");
  }));

  const quality = result.quality || {};
  const warnings = quality.warnings || [];
  $("quality-level").replaceChildren(qualityChip(quality.level), warnings.length ? "" : " no warnings");
  $("warnings").replaceChildren(...warnings.map((warning) => el("li", { text: warning })));
  const banner = $("quality-banner");
  banner.hidden = quality.level !== "limited";
  banner.replaceChildren(el("strong", { text: "Quality limited: the input limits trust in these numbers." }),
    el("ul", {}, ...warnings.map((warning) => el("li", { text: warning }))));
  const reference = result.reference || {};
  const pictures = el("span", {}, " Pictures: ",
    el("a", { href: `${url}/summary.png?generation=${generation}`, text: "summary" }), ", ",
    el("a", { href: `${url}/images/aif.png?generation=${generation}`, text: "AIF/VOF" }), ".");
  $("reference").replaceChildren(
    `Reference: ${reference.method || "–"}${reference.cbf ? ` = ${reference.cbf} mL/100 g/min` : ""}. `
    + `Profile ${profile.name || "–"}, model ${result.model || "–"}.`, pictures);
  $("summary").hidden = false;
}

function locationText(part) {
  const xyz = part?.location?.source_xyz;
  return xyz ? `column ${xyz[0]}, row ${xyz[1]}, slice ${xyz[2]}` : "not found";
}

function renderCurves(result) {
  const quality = result.quality || {};
  const times = result.acquisition?.times_s;
  if (!times || !quality.aif?.curve_hu) {
    $("curves").hidden = true;
    return;
  }
  plotCurves($("curve-plot"), { times, aif: quality.aif.curve_hu, vof: quality.vof?.curve_hu,
    tissue: quality.mean_tissue_curve_hu });
  const manual = quality.aif.manual ? " (chosen by hand)" : "";
  const vof = quality.vof?.curve_hu
    ? [el("span", { class: "key key-vof" }), ` VOF at ${locationText(quality.vof)}; `] : ["VOF not found; "];
  const tissue = quality.mean_tissue_curve_hu
    ? [el("span", { class: "key key-tissue" }), " mean tissue (right axis)."] : [];
  $("curve-caption").replaceChildren(
    el("span", { class: "key key-aif" }), ` AIF${manual} at ${locationText(quality.aif)}; `, ...vof, ...tissue,
    " Enhancement in HU against time in s.");
  $("curves").hidden = false;
}

/** The AIF's slice, or the middle slice when the result has no AIF location. */
function aifSlice(study) {
  const xyz = study.result?.quality?.aif?.location?.source_xyz;
  return xyz ? xyz[2] : Math.floor(study.slices / 2);
}

function renderViewer(study) {
  const slider = $("slice");
  const keep = viewer ? viewer.z : aifSlice(study);
  viewer = new MapViewer($("maps"), study, { onPick: confirmAif, base: url, prefetch: !shareToken });
  slider.max = String(study.slices - 1);
  viewer.setLayout(document.querySelector("input[name=layout]:checked").value);
  viewer.setOverlay("core", $("show-core").checked);
  viewer.setOverlay("hypoperfusion", $("show-hypoperfusion").checked);
  viewer.setMarks($("show-markers").checked);
  viewer.setSlice(keep);
  $("to-aif").hidden = !study.result?.quality?.aif?.location;
  $("rerun").hidden = me?.role !== "admin";
  setPicking(false);
  $("viewer").hidden = false;
}

let expiryTimer = null;

/** A share link's page: say so and until when; at its expiry take the study off the screen. */
function renderShare(share) {
  $("share-banner").textContent = "Shared read-only view of this one study, for research use only. "
    + `The link expires ${formatTime(share.expires_at)}.`;
  $("share-banner").hidden = false;
  if (expiryTimer !== null) return;
  expiryTimer = setTimeout(() => {
    for (const part of ["viewer", "summary", "curves"]) $(part).hidden = true;
    $("share-banner").textContent = "This share link has expired: ask the sender for a new one.";
  }, Math.max(0, share.expires_at * 1000 - Date.now()));
}

function render(study) {
  renderHead(study);
  if (study.share) renderShare(study.share);
  const text = JSON.stringify(study.result);
  if (!study.result || text === shownResult) return;
  shownResult = text;
  renderSummary(study.result, study.generation);
  renderCurves(study.result);
  renderViewer(study);
}

/** How the re-run asked for here is getting on: the status is that of the newest generation. */
function reportPending(study) {
  if (!pending) return;
  const status = $("rerun-status");
  if (study.status === "done" && study.generation >= pending.generation) {
    status.textContent = `Generation ${pending.generation} is done; the result shown is the new one.`;
    pending = null;
  } else if (study.status === "failed") {
    status.textContent = `Generation ${pending.generation} failed: ${study.error || "see the node's log"}.`;
    pending = null;
  } else {
    status.textContent = `Generation ${pending.generation} ${study.status} (AIF at ${pending.aif.join(", ")}).`;
  }
}

async function refresh() {
  const study = await api("GET", url);
  render(study);
  reportPending(study);
  if (!study.result) {
    $("viewer").hidden = true;
    $("summary").hidden = true;
    $("curves").hidden = true;
  }
  return study;
}

let timer = null;

/** Poll again in POLL_MS, or POLL_RUNNING_MS while ``status`` is queued or analysing (one poll
 * outstanding at a time). */
function schedule(status) {
  clearTimeout(timer);
  timer = setTimeout(poll, status === "queued" || status === "analysing" ? POLL_RUNNING_MS : POLL_MS);
}

/** Refresh until the study has settled and no re-run asked for here is outstanding. */
async function poll() {
  let study = null;
  try {
    study = await refresh();
  } catch (error) {
    $("study-error").textContent = `The study could not be loaded: ${error.message}.`;
    $("study-error").hidden = false;
    if (error.status === 404 || error.status === 410) return;
  }
  if (!study || !SETTLED.has(study.status) || pending) schedule(study?.status);
}

function setPicking(picking) {
  viewer?.setPicking(picking);
  $("pick-aif").setAttribute("aria-pressed", String(picking));
  $("pick-hint").hidden = !picking;
}

/** Ask before re-running with the AIF at (x, y, z); on yes, POST the re-run and follow it. */
function confirmAif(x, y, z) {
  setPicking(false);
  const dialog = $("confirm-aif");
  $("confirm-aif-text").textContent = `Re-run the analysis with the arterial input function measured at column ${x}, row ${y}, slice ${z}?`;
  dialog.returnValue = "";
  dialog.addEventListener("close", async () => {
    if (dialog.returnValue !== "confirm") return;
    const status = $("rerun-status");
    status.textContent = "Asking for a re-run…";
    try {
      const answer = await api("POST", `${url}/reprocess`, { aif: [x, y, z] });
      pending = { generation: answer.generation, aif: [x, y, z] };
      status.textContent = `Generation ${answer.generation} queued: re-analysis with the AIF at column ${x}, row ${y}, slice ${z}.`;
      schedule("queued");
    } catch (error) {
      status.textContent = `The re-run was not accepted: ${error.message}.`;
    }
  }, { once: true });
  dialog.showModal();
}

/** Arrow keys, Page Up/Down, Home/End step through slices unless a control needs them; Escape
 * disarms picking an AIF. */
function onKey(event) {
  if (!viewer || $("viewer").hidden || $("confirm-aif").open) return;
  if (event.key === "Escape" && viewer.picking) {
    setPicking(false);
    return;
  }
  const target = event.target;
  if (target.matches?.("input[type=radio], input[type=range], input[type=text], input[type=password], select, textarea")) return;
  const steps = { ArrowUp: 1, ArrowRight: 1, ArrowDown: -1, ArrowLeft: -1, PageUp: 5, PageDown: -5 };
  let z = null;
  if (event.key in steps) z = viewer.z + steps[event.key];
  else if (event.key === "Home") z = 0;
  else if (event.key === "End") z = viewer.slices - 1;
  if (z === null) return;
  event.preventDefault();
  viewer.setSlice(z);
}

function wireControls() {
  const narrow = window.matchMedia("(max-width: 700px)").matches;
  document.querySelector(`input[name=layout][value=${narrow ? "cbf" : "all"}]`).checked = true;
  $("options").open = !narrow;
  for (const radio of document.querySelectorAll("input[name=layout]")) {
    radio.addEventListener("change", () => viewer?.setLayout(radio.value));
  }
  $("show-core").addEventListener("change", (event) => viewer?.setOverlay("core", event.target.checked));
  $("show-hypoperfusion").addEventListener("change", (event) => viewer?.setOverlay("hypoperfusion", event.target.checked));
  $("show-markers").addEventListener("change", (event) => viewer?.setMarks(event.target.checked));
  $("opacity").addEventListener("input", (event) => $("maps").style.setProperty("--overlay-opacity", event.target.value));
  $("slice").addEventListener("input", (event) => viewer?.setSlice(Number(event.target.value)));
  $("slice-down").addEventListener("click", () => viewer?.setSlice(viewer.z - 1));
  $("slice-up").addEventListener("click", () => viewer?.setSlice(viewer.z + 1));
  $("to-aif").addEventListener("click", () => viewer?.setSlice(aifSlice(viewer.study)));
  $("pick-aif").addEventListener("click", () => setPicking(!viewer?.picking));
  $("maps").addEventListener("slice", (event) => {
    $("slice").value = String(event.detail);
    $("slice-label").textContent = `${event.detail} of 0–${viewer.slices - 1}`;
  });
  $("maps").addEventListener("wheel", (event) => viewer?.onWheel(event), { passive: false });
  document.addEventListener("keydown", onKey);
}

wireControls();
if (shareToken) {
  $("all-studies").hidden = true;
  $("user-area").hidden = true;
  poll();
} else {
  signedInUser().then((user) => {
    me = user;
    if (me.role === "admin") initSharePanel(url);
    return poll();
  }).catch(() => null);
}
