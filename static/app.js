// Live page: webcam -> WebRTC -> matted stream back, with background, recording and snapshots.
"use strict";

const $ = (id) => document.getElementById(id);
const ui = {
  camera: $("camera"), resolution: $("resolution"), microphone: $("microphone"),
  start: $("start"), stop: $("stop"), record: $("record"), snapshot: $("snapshot"),
  blur: $("blur"), color: $("color"), image: $("image"), apikey: $("apikey"),
  mirror: $("mirror"), listen: $("listen"), settings: $("settings"),
  local: $("local"), remote: $("remote"), status: $("status"), recordingLink: $("recording-link"),
  snapshots: $("snapshots"), recordings: $("recordings"),
};

// Everything about the running session; null fields when stopped.
const live = { pc: null, channel: null, stream: null, sessionId: null, recording: false, timer: null,
               last: null, serverStats: null, rttMs: null };

// -- helpers ----------------------------------------------------------------------

function backgroundSpec() {
  const kind = document.querySelector('input[name="bg"]:checked').value;
  if (kind === "blur") return `blur:${ui.blur.value}`;
  if (kind === "color") return ui.color.value;
  if (kind === "transparent") return "transparent";
  return null; // image: uploaded separately
}

// -- cameras ----------------------------------------------------------------------

async function listCameras() {
  if (!navigator.mediaDevices?.enumerateDevices) return;
  const devices = await navigator.mediaDevices.enumerateDevices();
  const chosen = ui.camera.value;
  ui.camera.replaceChildren(new Option("Default camera", ""));
  devices.filter((d) => d.kind === "videoinput").forEach((d, i) => {
    ui.camera.add(new Option(d.label || `Camera ${i + 1}`, d.deviceId));
  });
  ui.camera.value = chosen;
}

async function openCamera() {
  const [width, height] = ui.resolution.value.split("x").map(Number);
  const video = { width: { ideal: width }, height: { ideal: height }, frameRate: { ideal: 30 } };
  if (ui.camera.value) video.deviceId = { exact: ui.camera.value };
  try {
    return await navigator.mediaDevices.getUserMedia({ video, audio: ui.microphone.checked });
  } catch (err) {
    if (!ui.microphone.checked) throw err;
    setStatus("No microphone; continuing with video only.");
    return navigator.mediaDevices.getUserMedia({ video, audio: false });
  }
}

// -- session ----------------------------------------------------------------------

// aiortc does not take trickled candidates: send the offer once gathering is done
// (or after a short wait, with whatever host candidates exist by then).
async function start() {
  ui.start.disabled = true;
  try {
    setStatus("Opening the camera…");
    live.stream = await openCamera();
    ui.local.srcObject = live.stream;
    listCameras();

    const pc = new RTCPeerConnection({ iceServers: [] });
    live.pc = pc;
    live.stream.getTracks().forEach((track) => pc.addTrack(track, live.stream));
    live.channel = pc.createDataChannel("control");
    live.channel.onmessage = (event) => onMessage(JSON.parse(event.data));
    pc.ontrack = (event) => {
      if (event.track.kind === "video") {
        ui.remote.srcObject = event.streams[0] || new MediaStream([event.track]);
      }
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "connected") setStatus("Live.");
      if (["failed", "closed"].includes(pc.connectionState) && live.pc === pc) {
        stop(`Connection ${pc.connectionState}.`);
      }
    };

    setStatus("Connecting…");
    await pc.setLocalDescription(await pc.createOffer());
    await gatheringComplete(pc);
    const body = { sdp: pc.localDescription.sdp, type: pc.localDescription.type };
    const spec = backgroundSpec();
    if (spec) body.background = spec;
    const answer = await (await api("POST", "/offer", body)).json();
    live.sessionId = answer.session_id;
    await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
    if (!spec && ui.image.files[0]) await uploadImage();
    keepResolution(pc);

    ui.stop.disabled = false;
    ui.record.disabled = false;
    ui.snapshot.disabled = false;
    live.timer = setInterval(updateStats, 1000);
  } catch (err) {
    await stop();
    setStatus(`Could not start: ${err.message}`, true);
  }
}

// Matting quality depends on resolution; the server skips frames anyway when it is
// busy, so ask the encoder to drop frame rate, not resolution, when it must adapt.
async function keepResolution(pc) {
  const sender = pc.getSenders().find((s) => s.track?.kind === "video");
  if (!sender?.getParameters) return;
  try {
    const params = sender.getParameters();
    params.degradationPreference = "maintain-resolution";
    await sender.setParameters(params);
  } catch (_) { /* not supported by this browser: its default adaptation applies */ }
}

async function stop(reason) {
  const { pc, sessionId, stream } = live;
  clearInterval(live.timer);
  Object.assign(live, { pc: null, channel: null, stream: null, sessionId: null, timer: null,
                        last: null, serverStats: null, rttMs: null });
  if (live.recording) setRecording(false);
  // Closing the session on the server finalises any recording at once.
  if (sessionId) api("DELETE", `/sessions/${sessionId}`).then(refreshRecordings, () => {});
  if (pc) pc.close();
  if (stream) stream.getTracks().forEach((t) => t.stop());
  ui.local.srcObject = null;
  ui.remote.srcObject = null;
  ui.start.disabled = false;
  ui.stop.disabled = true;
  ui.record.disabled = true;
  ui.snapshot.disabled = true;
  setStatus(reason || "Stopped.");
}

function onMessage(message) {
  if (message.type === "stats") live.serverStats = message;
  else if (message.type === "pong") live.rttMs = performance.now() - message.t;
  else if (message.type === "error") setStatus(message.message, true);
}

// -- background -------------------------------------------------------------------

async function changeBackground() {
  const spec = backgroundSpec();
  if (!live.sessionId) return;
  if (spec === null) return uploadImage();
  if (live.channel?.readyState === "open") {
    live.channel.send(JSON.stringify({ type: "background", background: spec }));
  } else {
    try { await api("POST", `/sessions/${live.sessionId}/background`, { background: spec }); }
    catch (err) { setStatus(err.message, true); }
  }
}

async function uploadImage() {
  const file = ui.image.files[0];
  if (!file || !live.sessionId) return;
  const form = new FormData();
  form.append("image", file, file.name);
  try {
    await api("POST", `/sessions/${live.sessionId}/background`, form);
    setStatus(`Background: ${file.name}`);
  } catch (err) {
    setStatus(err.message, true);
  }
}

// -- recording and snapshots ------------------------------------------------------

function setRecording(on) {
  live.recording = on;
  ui.record.textContent = on ? "■ Stop recording" : "● Record";
  ui.record.classList.toggle("recording", on);
}

async function toggleRecording() {
  if (!live.sessionId) return;
  ui.record.disabled = true;
  try {
    const action = live.recording ? "stop" : "start";
    const result = await (await api("POST", `/sessions/${live.sessionId}/recording`, { action })).json();
    setRecording(result.recording);
    if (result.recording) {
      ui.recordingLink.textContent = `Recording ${result.name}…`;
    } else if (result.url) {
      const link = Object.assign(document.createElement("a"), { href: withKey(result.url), download: result.name,
                                                               textContent: `Download ${result.name}` });
      ui.recordingLink.replaceChildren(link);
      refreshRecordings();
    } else {
      ui.recordingLink.textContent = "Nothing was recorded.";
    }
  } catch (err) {
    setStatus(err.message, true);
  } finally {
    ui.record.disabled = !live.sessionId;
  }
}

async function takeSnapshot() {
  if (!live.sessionId) return;
  ui.snapshot.disabled = true;
  setStatus("Cutting out the latest frame…");
  try {
    const blob = await (await api("POST", `/sessions/${live.sessionId}/snapshot`)).blob();
    const url = URL.createObjectURL(blob);
    const name = `snapshot-${new Date().toISOString().replace(/[:.]/g, "-")}.png`;
    const figure = document.createElement("figure");
    const img = Object.assign(document.createElement("img"), { src: url, alt: "Snapshot with transparent background" });
    const link = Object.assign(document.createElement("a"), { href: url, download: name, textContent: "Download PNG" });
    const caption = document.createElement("figcaption");
    caption.append(link);
    figure.append(img, caption);
    ui.snapshots.prepend(figure);
    setStatus("Snapshot ready.");
  } catch (err) {
    setStatus(err.message, true);
  } finally {
    ui.snapshot.disabled = !live.sessionId;
  }
}

async function refreshRecordings() {
  try {
    const { recordings } = await (await api("GET", "/recordings")).json();
    ui.recordings.replaceChildren(...recordings.slice(0, 20).map((r) => {
      const li = document.createElement("li");
      const a = Object.assign(document.createElement("a"), { href: withKey(r.url), download: r.name, textContent: r.name });
      const meta = Object.assign(document.createElement("span"), {
        className: "meta", textContent: `${(r.bytes / 1e6).toFixed(1)} MB · ${new Date(r.modified).toLocaleString()}` });
      li.append(a, meta);
      return li;
    }));
  } catch (err) {
    ui.recordings.replaceChildren(Object.assign(document.createElement("li"), { textContent: err.message }));
  }
}

// -- stats ------------------------------------------------------------------------

// Round trip ≈ network RTT + server time (wait + matting) + our jitter buffer + decode
// + encode: the browser cannot time one frame through the whole loop directly.
async function updateStats() {
  const pc = live.pc;
  if (!pc) return;
  if (live.channel?.readyState === "open") live.channel.send(JSON.stringify({ type: "ping", t: performance.now() }));
  const report = await pc.getStats();
  const now = { t: performance.now() };
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") {
      Object.assign(now, { decoded: s.framesDecoded || 0, decodeTime: s.totalDecodeTime || 0,
                           jbDelay: s.jitterBufferDelay || 0, jbCount: s.jitterBufferEmittedCount || 0,
                           width: s.frameWidth, height: s.frameHeight });
    } else if (s.type === "outbound-rtp" && s.kind === "video") {
      Object.assign(now, { encoded: s.framesEncoded || 0, encodeTime: s.totalEncodeTime || 0 });
    } else if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime !== undefined) {
      now.rtt = s.currentRoundTripTime;
    }
  });
  const prev = live.last;
  live.last = now;
  if (!prev || now.decoded === undefined) return;
  const rate = (a, b) => (b > 0 ? a / b : 0);
  const frames = now.decoded - prev.decoded;
  const fps = rate(frames * 1000, now.t - prev.t);
  $("stat-fps").textContent = fps.toFixed(1);
  $("stat-res").textContent = now.width ? `${now.width}×${now.height}` : "–";
  const server = live.serverStats;
  $("stat-server").textContent = server?.latency_p50_ms != null ? `${Math.round(server.latency_p50_ms)} ms` : "–";
  $("stat-dropped").textContent = server ? String(server.dropped) : "–";
  const netMs = now.rtt !== undefined ? now.rtt * 1000 : live.rttMs;
  if (netMs != null && server?.latency_p50_ms != null && frames > 0) {
    const jitterMs = rate(now.jbDelay - prev.jbDelay, now.jbCount - prev.jbCount) * 1000;
    const decodeMs = rate(now.decodeTime - prev.decodeTime, frames) * 1000;
    const encodeMs = rate((now.encodeTime || 0) - (prev.encodeTime || 0), (now.encoded || 0) - (prev.encoded || 0)) * 1000;
    $("stat-rtt").textContent = `${Math.round(netMs + server.latency_p50_ms + jitterMs + decodeMs + encodeMs)} ms`;
  }
}

// -- wiring -----------------------------------------------------------------------

ui.apikey.value = localStorage.getItem("abrar-api-key") || "";
ui.apikey.addEventListener("change", () => { localStorage.setItem("abrar-api-key", ui.apikey.value.trim()); refreshRecordings(); });
ui.start.addEventListener("click", start);
ui.stop.addEventListener("click", () => stop());
ui.record.addEventListener("click", toggleRecording);
ui.snapshot.addEventListener("click", takeSnapshot);
$("refresh-recordings").addEventListener("click", refreshRecordings);
document.querySelectorAll('input[name="bg"]').forEach((el) => el.addEventListener("change", changeBackground));
ui.blur.addEventListener("change", () => { document.querySelector('input[value="blur"]').checked = true; changeBackground(); });
ui.color.addEventListener("change", () => { document.querySelector('input[value="color"]').checked = true; changeBackground(); });
ui.image.addEventListener("change", () => { document.querySelector('input[value="image"]').checked = true; changeBackground(); });
const applyMirror = () => document.querySelector(".stage").classList.toggle("mirror", ui.mirror.checked);
ui.mirror.addEventListener("change", applyMirror);
ui.listen.addEventListener("change", () => { ui.remote.muted = !ui.listen.checked; });
navigator.mediaDevices?.addEventListener?.("devicechange", listCameras);
window.addEventListener("pagehide", () => {
  if (live.sessionId) fetch(`/sessions/${live.sessionId}`, { method: "DELETE", headers: apiHeaders(), keepalive: true });
});
applyMirror();
listCameras();
refreshRecordings();
