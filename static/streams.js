// Cameras page: add RTSP streams, watch one over WebRTC, record, snapshot, delete.
"use strict";

const $ = (id) => document.getElementById(id);
const ui = {
  add: $("add"), url: $("url"), background: $("background"), record: $("record"), addButton: $("add-button"),
  apikey: $("apikey"), settings: $("settings"), status: $("status"), streams: $("streams"),
  watch: $("watch"), remote: $("remote"), caption: $("watch-caption"), closeWatch: $("close-watch"),
  fps: $("stat-fps"), res: $("stat-res"), snapshots: $("snapshots"), recordings: $("recordings"),
};

// The stream being watched; null fields when none.
const viewer = { pc: null, streamId: null, timer: null, last: null };
const POLL_MS = 2000;

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function button(label, onClick) {
  return el("button", { className: "small", type: "button", textContent: label, onclick: onClick });
}

// -- list -------------------------------------------------------------------------

async function refresh() {
  let streams;
  try {
    streams = (await (await api("GET", "/streams")).json()).streams;
  } catch (err) {
    setStatus(`Cannot list cameras: ${err.message}`, true);
    return;
  }
  ui.streams.replaceChildren(...(streams.length ? streams.map(row)
    : [el("tr", {}, el("td", { colSpan: 7, textContent: "No cameras yet." }))]));
  const recordings = streams.flatMap((s) => s.recordings);
  ui.recordings.replaceChildren(...recordings.map((r) =>
    el("li", {}, el("a", { href: withKey(r.url), textContent: r.name, download: r.name }))));
  if (viewer.streamId && !streams.some((s) => s.id === viewer.streamId)) stopWatching();
}

function row(s) {
  const camera = el("td", {}, el("code", { textContent: s.url }));
  if (s.last_error && s.state !== "live") {
    camera.append(el("span", { className: "error", textContent: s.last_error.message }));
  }
  const latency = s.latency_ms.p50 == null ? "–" : `${Math.round(s.latency_ms.p50)} ms`;
  const actions = el("td", { className: "actions" },
    button(viewer.streamId === s.id ? "Watching" : "Watch", () => watch(s.id)),
    button("Snapshot", () => snapshot(s.id)),
    button(s.record ? "■ Stop recording" : "● Record", () => setRecording(s.id, !s.record)),
    button("Delete", () => remove(s.id)));
  return el("tr", {},
    camera,
    el("td", {}, el("span", { className: `state ${s.state}`, textContent: s.state })),
    el("td", { className: "num", textContent: `${s.fps_in.toFixed(1)} / ${s.matting ? s.fps_out.toFixed(1) : "idle"}`,
               title: s.matting ? "" : "not matted while nobody watches or records" }),
    el("td", { className: "num", textContent: latency }),
    el("td", { className: "num", textContent: `${s.reconnects} / ${s.gap_count}` }),
    el("td", { className: "num", textContent: String(s.viewers) }),
    actions);
}

async function add(event) {
  event.preventDefault();
  ui.addButton.disabled = true;
  try {
    const body = { url: ui.url.value.trim(), background: ui.background.value, record: ui.record.checked };
    const stream = await (await api("POST", "/streams", body)).json();
    ui.url.value = "";  // it may hold a password: do not keep it on screen
    setStatus(`Added ${stream.url} (${stream.state}).`);
    await refresh();
    await watch(stream.id);
  } catch (err) {
    setStatus(`Not added: ${err.message}`, true);
  } finally {
    ui.addButton.disabled = false;
  }
}

async function remove(id) {
  try {
    await api("DELETE", `/streams/${id}`);
    if (viewer.streamId === id) stopWatching();
    setStatus("Camera removed.");
  } catch (err) {
    setStatus(`Cannot remove: ${err.message}`, true);
  }
  refresh();
}

async function setRecording(id, on) {
  try {
    await api("POST", `/streams/${id}/recording`, { action: on ? "start" : "stop" });
  } catch (err) {
    setStatus(`Recording: ${err.message}`, true);
  }
  refresh();
}

async function snapshot(id) {
  try {
    const blob = await (await api("POST", `/streams/${id}/snapshot`)).blob();
    const url = URL.createObjectURL(blob);
    const name = `stream-${id}-${Date.now()}.png`;
    ui.snapshots.prepend(el("figure", {}, el("img", { src: url, alt: "Snapshot" }),
      el("figcaption", {}, el("a", { href: url, download: name, textContent: "Download PNG" }))));
  } catch (err) {
    setStatus(`Snapshot: ${err.message}`, true);
  }
}

// -- watching ---------------------------------------------------------------------

// aiortc does not take trickled candidates: send the offer once gathering is done.
async function watch(id) {
  stopWatching();
  const pc = new RTCPeerConnection({ iceServers: [] });
  viewer.pc = pc;
  viewer.streamId = id;
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const media = new MediaStream();
  pc.ontrack = (event) => { media.addTrack(event.track); ui.remote.srcObject = media; };
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === "failed") setStatus("The video connection failed.", true);
  };
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await gatheringComplete(pc);
    const answer = await (await api("POST", `/streams/${id}/offer`,
      { sdp: pc.localDescription.sdp, type: pc.localDescription.type })).json();
    await pc.setRemoteDescription(answer);
  } catch (err) {
    stopWatching();
    setStatus(`Cannot watch: ${err.message}`, true);
    return;
  }
  ui.watch.hidden = false;
  ui.caption.textContent = `Stream ${id}`;
  viewer.timer = setInterval(updateStats, 1000);
  refresh();
}

function stopWatching() {
  if (viewer.pc) viewer.pc.close();
  clearInterval(viewer.timer);
  Object.assign(viewer, { pc: null, streamId: null, timer: null, last: null });
  ui.remote.srcObject = null;
  ui.watch.hidden = true;
  ui.fps.textContent = ui.res.textContent = "–";
}

async function updateStats() {
  if (!viewer.pc) return;
  const stats = await viewer.pc.getStats();
  stats.forEach((r) => {
    if (r.type !== "inbound-rtp" || r.kind !== "video") return;
    if (viewer.last) {
      const seconds = (r.timestamp - viewer.last.timestamp) / 1000;
      ui.fps.textContent = ((r.framesDecoded - viewer.last.framesDecoded) / seconds).toFixed(1);
    }
    if (r.frameWidth) ui.res.textContent = `${r.frameWidth}×${r.frameHeight}`;
    viewer.last = { timestamp: r.timestamp, framesDecoded: r.framesDecoded || 0 };
  });
}

ui.add.addEventListener("submit", add);
ui.closeWatch.addEventListener("click", () => { stopWatching(); refresh(); });
refresh();
setInterval(refresh, POLL_MS);
