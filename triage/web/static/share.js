// The admins' share control of the study page: make a read-only, expiring link to this study
// for a remote consultant (POST .../shares), copy it (its token is shown only then), list the
// study's links with their state and uses (GET .../shares) and revoke one (DELETE .../shares/{id}).

import { api, el, formatTime } from "./common.js";

const $ = (elementId) => document.getElementById(elementId);
const STATES = { active: "active", expired: "expired", revoked: "revoked" };

function uses(link) {
  if (!link.uses) return "not used yet";
  const times = link.uses === 1 ? "once" : `${link.uses} times`;
  return `used ${times}, last ${formatTime(link.last_used_at)}`;
}

function linkItem(link, studyUrl, reload) {
  const until = link.state === "revoked"
    ? `revoked by ${link.revoked_by} ${formatTime(link.revoked_at)}`
    : `${link.state === "active" ? "expires" : "expired"} ${formatTime(link.expires_at)}`;
  const item = el("li", { "data-link": link.id, "data-state": link.state },
    el("strong", { text: link.note ? `For ${link.note}` : `Link ${link.id}` }), " ",
    el("span", { class: `chip share-${link.state}`, text: STATES[link.state] || link.state }),
    el("div", { class: "small muted", text: `Made by ${link.created_by} ${formatTime(link.created_at)}; ${until}; ${uses(link)}.` }));
  if (link.state === "active") {
    const revoke = el("button", { type: "button", class: "share-revoke", text: "Revoke" });
    revoke.addEventListener("click", async () => {
      revoke.disabled = true;
      try {
        await api("DELETE", `${studyUrl}/shares/${link.id}`);
        $("share-status").textContent = `Link ${link.id} revoked: it no longer opens the study.`;
      } catch (error) {
        $("share-status").textContent = `The link was not revoked: ${error.message}.`;
      }
      await reload();
    });
    item.append(revoke);
  }
  return item;
}

async function copyLink() {
  const field = $("share-url");
  try {
    await navigator.clipboard.writeText(field.value);
  } catch {
    field.select();
    document.execCommand("copy"); // pages served over plain HTTP have no clipboard API
  }
  $("share-copied").textContent = "Copied.";
}

/** Show the share control for the study whose API URL is `studyUrl` (for admins only). */
export function initSharePanel(studyUrl) {
  const reload = async () => {
    try {
      const answer = await api("GET", `${studyUrl}/shares`);
      $("share-links").replaceChildren(...answer.links.map((link) => linkItem(link, studyUrl, reload)));
    } catch (error) {
      $("share-status").textContent = `The links could not be listed: ${error.message}.`;
    }
  };
  $("share-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("share-create").disabled = true;
    try {
      const body = { hours: Number($("share-hours").value), note: $("share-note").value || null };
      const link = await api("POST", `${studyUrl}/shares`, body);
      $("share-url").value = location.origin + link.path;
      $("share-copied").textContent = "";
      $("share-new").hidden = false;
      $("share-status").textContent = `Link ${link.id} made; it expires ${formatTime(link.expires_at)}.`;
      $("share-note").value = "";
    } catch (error) {
      $("share-status").textContent = `No link was made: ${error.message}.`;
    }
    $("share-create").disabled = false;
    await reload();
  });
  $("share-copy").addEventListener("click", copyLink);
  $("share").hidden = false;
  return reload();
}
