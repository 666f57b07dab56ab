// jitgate's pages work without this script (forms post, links link); with it, times show in
// the viewer's zone, grants count down, pages follow changes live, and passkeys can be used.
"use strict";

const csrf = () => document.body.dataset.csrf || "";

function decorate(root) {
  for (const t of root.querySelectorAll("time[data-local]")) {
    const d = new Date(t.getAttribute("datetime"));
    if (!isNaN(d)) t.textContent = d.toLocaleString();
  }
}

function left(ms) {
  if (ms <= 0) return "0s";
  const s = Math.floor(ms / 1000), d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  const parts = [];
  if (d) parts.push(d + "d");
  if (h) parts.push(h + "h");
  if (m) parts.push(m + "m");
  parts.push((s % 60) + "s");
  return parts.join(" ");
}

let refreshAsked = false;
function tick() {
  for (const c of document.querySelectorAll("[data-countdown]")) {
    const ms = new Date(c.dataset.countdown) - Date.now();
    c.textContent = left(ms);
    if (ms <= 0 && !c.dataset.ended) {
      c.dataset.ended = "1";
      const status = c.closest("[data-grant]")?.querySelector("[data-status]");
      if (status) { status.textContent = "ending"; }
      // The server ends it; the page shows the server's word as soon as it is said.
      if (!refreshAsked) { refreshAsked = true; setTimeout(refresh, 300); }
    }
  }
}

async function refresh() {
  refreshAsked = false;
  const live = document.querySelectorAll("[data-live][id]");
  if (!live.length) return;
  try {
    // Marked as the page's own refresh: it does not keep an unattended session alive.
    const r = await fetch(location.href, { credentials: "same-origin", headers: { accept: "text/html", "x-jitgate-refresh": "1" } });
    if (r.redirected || !r.ok) { if (r.status === 401 || r.redirected) location.reload(); return; }
    const doc = new DOMParser().parseFromString(await r.text(), "text/html");
    for (const el of live) {
      const fresh = doc.getElementById(el.id);
      if (fresh && fresh.innerHTML !== el.innerHTML) { el.innerHTML = fresh.innerHTML; decorate(el); }
    }
    document.body.dataset.refreshed = String(Date.now());
    // A grant that ended is shown ended by the server; one still shown live retries shortly.
    if ([...document.querySelectorAll("[data-countdown]")].some((c) => new Date(c.dataset.countdown) <= Date.now())) {
      refreshAsked = true;
      setTimeout(refresh, 1000);
    }
  } catch (_) { /* the next change or tick tries again */ }
}

function follow() {
  if (!document.querySelector("[data-live]") || !window.EventSource) return;
  const events = new EventSource("/live");
  events.addEventListener("changed", refresh);
  events.addEventListener("open", () => { document.body.dataset.live = "open"; });
}

// WebAuthn's binary fields travel as base64url in JSON.
const fromB64 = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(s.length / 4) * 4, "=")), (c) => c.charCodeAt(0)).buffer;
const toB64 = (b) => btoa(String.fromCharCode(...new Uint8Array(b))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

async function assertion(challengeUrl) {
  const r = await fetch(challengeUrl, { method: "POST", credentials: "same-origin", headers: { "x-csrf-token": csrf() } });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error ? body.error.message : "the server refused");
  const pk = body.options.publicKey;
  pk.challenge = fromB64(pk.challenge);
  for (const c of pk.allowCredentials || []) c.id = fromB64(c.id);
  const cred = await navigator.credentials.get({ publicKey: pk });
  const resp = cred.response;
  return {
    challenge_id: body.challenge_id,
    credential: {
      id: cred.id,
      rawId: toB64(cred.rawId),
      type: cred.type,
      response: {
        authenticatorData: toB64(resp.authenticatorData),
        clientDataJSON: toB64(resp.clientDataJSON),
        signature: toB64(resp.signature),
        userHandle: resp.userHandle ? toB64(resp.userHandle) : null,
      },
      extensions: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
    },
  };
}

function showError(message) {
  const el = document.getElementById("passkey-error");
  if (el) { el.textContent = message; el.hidden = false; el.focus?.(); } else { alert(message); }
}

async function passkeySubmit(button) {
  const form = button.closest("form");
  if (!form.reportValidity()) return;
  button.disabled = true;
  try {
    const proof = await assertion("/mfa/passkey/challenge");
    form.querySelector("[data-webauthn]").value = JSON.stringify(proof);
    if (button.dataset.decision) {
      const d = document.createElement("input");
      d.type = "hidden"; d.name = "decision"; d.value = button.dataset.decision;
      form.appendChild(d);
    }
    form.submit();
  } catch (e) {
    showError("The passkey was not used: " + e.message);
    button.disabled = false;
  }
}

async function passkeySignIn(button) {
  button.disabled = true;
  try {
    const proof = await assertion("/signin/passkey/challenge");
    const r = await fetch("/signin/passkey", {
      method: "POST", credentials: "same-origin",
      headers: { "content-type": "application/json", "x-csrf-token": csrf() },
      body: JSON.stringify({ ...proof, next: button.dataset.next || "/" }),
    });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error ? body.error.message : "the server refused");
    location.assign(body.next);
  } catch (e) {
    showError("Signing in with the passkey did not work: " + e.message);
    button.disabled = false;
  }
}

document.addEventListener("click", (e) => {
  const submit = e.target.closest("[data-passkey-submit]");
  if (submit) { e.preventDefault(); passkeySubmit(submit); return; }
  const signin = e.target.closest("[data-signin-passkey]");
  if (signin) { e.preventDefault(); passkeySignIn(signin); }
});

document.addEventListener("DOMContentLoaded", () => {
  decorate(document);
  tick();
  setInterval(tick, 1000);
  follow();
});

async function passkeyRegister(button) {
  const form = button.closest("form");
  if (!form.reportValidity()) return;
  button.disabled = true;
  const post = async (url, body) => {
    const r = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "content-type": "application/json", "x-csrf-token": csrf() },
      body: JSON.stringify(body),
    });
    const answer = await r.json();
    if (!r.ok) throw new Error(answer.error ? answer.error.message : "the server refused");
    return answer;
  };
  try {
    const start = await post("/mfa/passkeys/start", { name: form.elements.name.value });
    const pk = start.options.publicKey;
    pk.challenge = fromB64(pk.challenge);
    pk.user.id = fromB64(pk.user.id);
    for (const c of pk.excludeCredentials || []) c.id = fromB64(c.id);
    const cred = await navigator.credentials.create({ publicKey: pk });
    const added = await post("/mfa/passkeys/finish", {
      challenge_id: start.challenge_id,
      credential: {
        id: cred.id,
        rawId: toB64(cred.rawId),
        type: cred.type,
        response: {
          attestationObject: toB64(cred.response.attestationObject),
          clientDataJSON: toB64(cred.response.clientDataJSON),
        },
        extensions: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
      },
    });
    if (added.recovery_codes && added.recovery_codes.length) {
      const box = document.getElementById("recovery-codes-new");
      const list = box.querySelector("[data-codes]");
      for (const c of added.recovery_codes) {
        const li = document.createElement("li");
        const code = document.createElement("code");
        code.textContent = c;
        li.appendChild(code);
        list.appendChild(li);
      }
      box.hidden = false;
      document.body.dataset.passkeyAdded = "1";
    } else {
      location.reload();
    }
  } catch (e) {
    showError("The passkey was not added: " + e.message);
    button.disabled = false;
  }
}

document.addEventListener("click", (e) => {
  const register = e.target.closest("[data-passkey-register]");
  if (register) { e.preventDefault(); passkeyRegister(register); }
});

// A duration as the server reads it (humantime's units; "1h 30m", "90m"); null when the page
// cannot tell, and the server then answers.
const UNITS = { s: 1, sec: 1, secs: 1, second: 1, seconds: 1, m: 60, min: 60, mins: 60, minute: 60, minutes: 60,
  h: 3600, hr: 3600, hrs: 3600, hour: 3600, hours: 3600, d: 86400, day: 86400, days: 86400, w: 604800, week: 604800, weeks: 604800 };
function seconds(text) {
  const parts = [...text.trim().matchAll(/(\d+)\s*([a-zA-Z]+)\s*/g)];
  if (!parts.length || parts.map((p) => p[0]).join("") !== text.trim().replace(/^\s+/, "")) return null;
  let total = 0;
  for (const [, n, unit] of parts) {
    if (!(unit in UNITS)) return null;
    total += Number(n) * UNITS[unit];
  }
  return total;
}

document.addEventListener("input", (e) => {
  const field = e.target;
  if (!field.dataset || !field.dataset.maxSecs) return;
  const s = field.value.trim() ? seconds(field.value) : null;
  let problem = "";
  if (s !== null && s < 60) problem = "At least one minute.";
  else if (s !== null && s > Number(field.dataset.maxSecs)) problem = "At most " + field.dataset.maxText + " for this role.";
  field.setCustomValidity(problem);
});
