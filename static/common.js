"use strict";
// Helpers shared by the live page (app.js) and the cameras page (streams.js). Each page
// defines `ui` with `status`, `apikey` and `settings` elements before calling them.

function setStatus(text, isError = false) {
  ui.status.textContent = text;
  ui.status.classList.toggle("error", isError);
}

function apiHeaders(extra = {}) {
  const key = ui.apikey.value.trim();
  return key ? { ...extra, "X-API-Key": key } : extra;
}

// Links (downloads) cannot send headers; the server also takes the key as a query parameter.
function withKey(url) {
  const key = ui.apikey.value.trim();
  return key ? `${url}?api_key=${encodeURIComponent(key)}` : url;
}

async function api(method, path, body) {
  const init = { method, headers: apiHeaders() };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  if (resp.status === 401) ui.settings.open = true;
  if (!resp.ok) {
    let message = `${resp.status} ${resp.statusText}`;
    try { message = (await resp.json()).error.message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return resp;
}

function gatheringComplete(pc, timeoutMs = 3000) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { pc.removeEventListener("icegatheringstatechange", check); resolve(); };
    const check = () => { if (pc.iceGatheringState === "complete") done(); };
    pc.addEventListener("icegatheringstatechange", check);
    setTimeout(done, timeoutMs);
  });
}
