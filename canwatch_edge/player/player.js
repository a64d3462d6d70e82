// CanWatch player page: the API at the site's root, streams through the gate at
// /watch/{streamId}/, played by the web players platforms ship: hls.js for HLS, Shaka
// Player for DASH (both vendored from npm under vendor/, see vendor/vendor.json).
//
// The players get the identity the way a platform's page hands it to a player that sets
// no headers: in the manifest's query (?userid=, or ?token= in jwt mode). The gate answers
// the manifest with a cookie scoped to /watch/{streamId}/, and the players' segment
// fetches (relative URIs, which drop the query) carry it. The page's own API calls send
// the identity as a header (x-userid, or Authorization in jwt mode).
"use strict";

const MANIFESTS = { hls: "demo/playlist.m3u8", dash: "demo/manifest.mpd" };
const FORMAT_NAMES = { hls: "HLS (hls.js)", dash: "DASH (Shaka Player)" };
const REFRESH_MS = 2000; // the active streams panel
const HEARTBEAT_MAX_MS = 30000; // a playing stream's heartbeat, at most this far apart
const STORE = { user: "canwatch.userId", format: "canwatch.format" };

const page = {
  identity: "header", // or "jwt", from /player/config.json
  param: "userid", // the query parameter that carries the identity to the gate
  cards: new Map(), // streamId -> Card
};

const $ = (id) => document.getElementById(id);

// localStorage may be unavailable (a private window's quota, a policy): the page works
// without it, it only forgets.
const remembered = {
  get(key) {
    try {
      return localStorage.getItem(key);
    } catch {
      return null;
    }
  },
  set(key, value) {
    try {
      localStorage.setItem(key, value);
    } catch {
      // not remembered
    }
  },
};

function identityValue() {
  return (page.identity === "jwt" ? $("token") : $("user")).value.trim();
}

function credentials() {
  const value = identityValue();
  if (!value) return null;
  return page.identity === "jwt" ? { Authorization: `Bearer ${value}` } : { "x-userid": value };
}

// One API call: {status, body}; the body is the JSON every answer carries (or {}).
async function api(method, path, headers = {}) {
  const response = await fetch(path, { method, headers, cache: "no-store" });
  let body = {};
  try {
    body = await response.json();
  } catch {
    // not JSON: keep {}
  }
  return { status: response.status, body };
}

const streamPath = (streamId, op) => `/streams/${encodeURIComponent(streamId)}/${op}`;

function notice(text) {
  $("notice").textContent = text;
}

// The gate's JSON error out of a response body (text or bytes), else "".
function gateError(body) {
  try {
    const text = typeof body === "string" ? body : new TextDecoder().decode(body);
    return JSON.parse(text).error || "";
  } catch {
    return "";
  }
}

class Refused extends Error {}

// hls.js on a <video>: resolves once the playlist is parsed; a fatal error after that
// (the gate refusing a segment once retries are spent) goes to onFatal.
class HlsJsPlayer {
  constructor(video, url, onFatal) {
    Object.assign(this, { video, url, onFatal });
  }

  start() {
    return new Promise((resolve, reject) => {
      // The worker from its own file: the page's CSP allows no blob: scripts.
      const hls = new Hls({ workerPath: "vendor/hls.js/hls.worker.js" });
      this.hls = hls;
      let started = false;
      hls.on(Hls.Events.ERROR, (_event, data) => {
        if (!data.fatal) return;
        const status = data.response && data.response.code;
        const xhr = data.networkDetails;
        const said = xhr && "response" in xhr ? gateError(xhr.response) : "";
        const message = status ? `${status} ${said || data.details}` : `${data.type}: ${data.details}`;
        if (started) this.onFatal(message);
        else reject(new Refused(message));
      });
      hls.on(Hls.Events.MANIFEST_PARSED, () => {
        started = true;
        this.video.play().catch(() => {});
        resolve();
      });
      hls.attachMedia(this.video);
      hls.loadSource(this.url);
    });
  }

  stop() {
    if (this.hls) this.hls.destroy();
  }
}

// Shaka Player on a <video>: resolves once the manifest is loaded.
class ShakaPlayer {
  constructor(video, url, onFatal) {
    Object.assign(this, { video, url, onFatal });
  }

  async start() {
    const player = new shaka.Player();
    this.player = player;
    await player.attach(this.video);
    try {
      await player.load(this.url);
    } catch (error) {
      throw new Refused(ShakaPlayer.message(error));
    }
    player.addEventListener("error", (event) => this.onFatal(ShakaPlayer.message(event.detail)));
    this.video.play().catch(() => {});
  }

  // shaka.util.Error BAD_HTTP_STATUS carries [uri, status, body, ...].
  static message(error) {
    if (error && error.code === shaka.util.Error.Code.BAD_HTTP_STATUS) {
      const [, status, body] = error.data;
      return `${status} ${gateError(body || "") || "refused"}`;
    }
    return `Shaka error ${error && error.code}`;
  }

  stop() {
    if (this.player) this.player.destroy();
  }
}

const PLAYERS = { hls: HlsJsPlayer, dash: ShakaPlayer };

function formatTime(ms) {
  if (ms === undefined || ms === null) return "";
  const seconds = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return seconds < 90 ? `${seconds} s ago` : `${Math.round(seconds / 60)} min ago`;
}

function secondsLeft(expiresAt) {
  if (expiresAt === null || expiresAt === undefined) return "never";
  return `${Math.max(0, Math.round((expiresAt - Date.now()) / 1000))} s`;
}

// What the page says about a lease, as the API gives it: its device (deviceId, absent
// for none), its start (startedAt, absent for a lease from before the service kept
// starts) and its last refresh.
function describe(lease) {
  return {
    device: lease.deviceId ? String(lease.deviceId) : "",
    started: formatTime(lease.startedAt),
    refreshed: formatTime(lease.refreshedAt),
  };
}

// The element that shows a lease's start also carries it (ms, the API's clock).
function markStart(node, lease) {
  if (Number.isInteger(lease.startedAt)) node.dataset.startedAt = String(lease.startedAt);
}

// Stop a stream of the user's own: its player here, if any, and its lease.
async function deactivate(streamId, why) {
  const card = page.cards.get(streamId);
  if (card) card.halt("stopped", why);
  const done = await api("PATCH", streamPath(streamId, "deactivate"), credentials() || {});
  refreshActive();
  return done;
}

// One stream on the page: its <video>, its state and its buttons.
class Card {
  constructor(streamId, format) {
    this.streamId = streamId;
    this.format = format;
    const node = $("card-template").content.firstElementChild.cloneNode(true);
    node.dataset.stream = streamId;
    node.dataset.format = format;
    node.querySelector(".stream").textContent = streamId;
    node.querySelector(".format").textContent = FORMAT_NAMES[format];
    node.querySelector(".stop").addEventListener("click", () => this.stop());
    node.querySelector(".retry").addEventListener("click", () => this.start());
    this.node = node;
    this.video = node.querySelector("video");
    $("streams").append(node);
  }

  show(state, message = "", others = []) {
    this.node.dataset.state = state;
    this.node.querySelector(".state").textContent = state;
    this.node.querySelector(".message").textContent = message;
    this.node.querySelector(".stop").hidden = state !== "playing" && state !== "starting";
    this.node.querySelector(".retry").hidden = state !== "refused" && state !== "stopped";
    this.showOthers(others);
  }

  // The refusal lists the user's active streams, each with one click to free its slot.
  showOthers(others) {
    const refusal = this.node.querySelector(".refusal");
    refusal.hidden = others.length === 0;
    this.node.querySelector(".others").replaceChildren(
      ...others.map((lease) => {
        const item = $("other-template").content.firstElementChild.cloneNode(true);
        item.dataset.stream = lease.streamId;
        const shown = describe(lease);
        item.querySelector(".stream").textContent = lease.streamId;
        item.querySelector(".device").textContent = shown.device ? `on ${shown.device}` : "";
        item.querySelector(".started").textContent = shown.started ? `started ${shown.started}` : "";
        markStart(item.querySelector(".started"), lease);
        item.querySelector(".refreshed").textContent = `last refresh ${shown.refreshed}`;
        item.querySelector(".free").addEventListener("click", () => this.freeAndWatch(lease.streamId));
        return item;
      }),
    );
  }

  // "Stop that one and watch here": end the other stream, then activate this one again.
  async freeAndWatch(otherId) {
    this.show("starting", `stopping ${otherId}`);
    const done = await deactivate(otherId, "stopped to watch another stream");
    if (done.status !== 200) return this.show("refused", done.body.error || `status ${done.status}`);
    await this.start();
  }

  async start() {
    const headers = credentials();
    if (!headers) return notice("Get a user id (or paste a token) first.");
    this.halt();
    this.show("starting");
    const activated = await api("PATCH", streamPath(this.streamId, "activate"), headers);
    refreshActive();
    if (activated.status !== 200) {
      const others = Array.isArray(activated.body.activeStreams) ? activated.body.activeStreams : [];
      return this.show("refused", activated.body.error || `status ${activated.status}`, others);
    }
    const url = new URL(`/watch/${encodeURIComponent(this.streamId)}/${MANIFESTS[this.format]}`, location.href);
    url.searchParams.set(page.param, identityValue());
    const player = new PLAYERS[this.format](this.video, url.href, (message) => {
      if (this.player !== player) return;
      this.halt("refused", message);
      refreshActive();
    });
    this.player = player;
    try {
      await player.start();
    } catch (error) {
      if (this.player === player) this.halt("refused", error instanceof Refused ? error.message : String(error));
      return;
    }
    if (this.player !== player) return; // stopped while it loaded
    this.show("playing");
    this.keepAlive(activated.body.expiresAt);
  }

  // Segment fetches refresh the lease, but a player with the whole video buffered (it
  // loops) fetches nothing: a heartbeat well inside the lease's life keeps it, and tells
  // the page when the stream was stopped elsewhere (404 Lease Not Found).
  keepAlive(expiresAt) {
    if (expiresAt === null || expiresAt === undefined) return; // leases never expire
    const every = Math.max(1000, Math.min(HEARTBEAT_MAX_MS, (expiresAt - Date.now()) / 3));
    this.heartbeat = setInterval(async () => {
      const beat = await api("PATCH", streamPath(this.streamId, "heartbeat"), credentials() || {});
      if (beat.status === 404) this.halt("stopped", beat.body.error || "the lease ended");
    }, every);
  }

  // Stop playing here (the lease is left alone); with a state, show it.
  halt(state, message = "") {
    clearInterval(this.heartbeat);
    const player = this.player;
    this.player = null;
    if (player) {
      player.stop();
      this.video.removeAttribute("src");
      this.video.load();
    }
    if (state) this.show(state, message);
  }

  async stop() {
    this.halt("stopped");
    const headers = credentials();
    if (headers) await api("PATCH", streamPath(this.streamId, "deactivate"), headers);
    refreshActive();
  }
}

function card(streamId) {
  let found = page.cards.get(streamId);
  if (!found) {
    found = new Card(streamId, $("format").value);
    page.cards.set(streamId, found);
  }
  return found;
}

async function startStream() {
  if (!credentials()) return notice("Get a user id (or paste a token) first.");
  notice("");
  const issued = await api("GET", "/streams/newId");
  if (issued.status !== 200) return notice(`No stream id: ${issued.body.error || issued.status}`);
  await card(issued.body.streamId).start();
}

function useUser(userId) {
  $("user").value = userId;
  remembered.set(STORE.user, userId);
  refreshActive();
}

async function newUser() {
  const issued = await api("GET", "/users/newId");
  if (issued.status !== 200) return notice(`No user id: ${issued.body.error || issued.status}`);
  notice("");
  useUser(issued.body.userId);
}

function button(text, className, onClick) {
  const node = document.createElement("button");
  node.type = "button";
  node.className = className;
  node.textContent = text;
  node.addEventListener("click", onClick);
  return node;
}

// The user's active streams (whichever device or page started them), as the API says.
async function refreshActive() {
  const headers = credentials();
  if (!headers) return;
  let answer;
  try {
    answer = await api("GET", "/streams/active", headers);
  } catch (error) {
    $("active-error").textContent = String(error);
    return;
  }
  if (answer.status !== 200) {
    $("active-error").textContent = answer.body.error || `status ${answer.status}`;
    return;
  }
  $("active-error").textContent = "";
  const { streams, limit } = answer.body;
  $("usage").textContent = `(${streams.length} of ${limit})`;
  $("usage").dataset.active = String(streams.length);
  $("usage").dataset.limit = String(limit);
  $("leases").replaceChildren(
    ...streams.map((lease) => {
      const row = document.createElement("tr");
      row.dataset.stream = lease.streamId;
      const shown = describe(lease);
      const cells = { stream: lease.streamId, ...shown, expires: secondsLeft(lease.expiresAt) };
      for (const [name, text] of Object.entries(cells)) {
        const cell = document.createElement("td");
        cell.className = name;
        cell.textContent = text;
        if (name === "started") markStart(cell, lease);
        row.append(cell);
      }
      const actions = document.createElement("td");
      const here = page.cards.get(lease.streamId);
      if (!here || here.node.dataset.state !== "playing") {
        actions.append(button("Watch here", "watch", () => card(lease.streamId).start()));
      }
      actions.append(button("Stop", "end", () => deactivate(lease.streamId, "stopped from the list")));
      row.append(actions);
      return row;
    }),
  );
}

async function main() {
  $("new-user").addEventListener("click", newUser);
  $("start").addEventListener("click", startStream);
  $("user").addEventListener("change", () => useUser($("user").value.trim()));
  $("token").addEventListener("change", refreshActive);
  $("format").addEventListener("change", () => remembered.set(STORE.format, $("format").value));
  try {
    const config = await (await fetch("config.json", { cache: "no-store" })).json();
    page.identity = config.identity === "jwt" ? "jwt" : "header";
    page.param = config.param || (page.identity === "jwt" ? "token" : "userid");
  } catch {
    page.identity = "header";
  }
  $(page.identity === "jwt" ? "who-jwt" : "who-header").hidden = false;
  const format = new URLSearchParams(location.search).get("format") || remembered.get(STORE.format);
  if (format in MANIFESTS) $("format").value = format;
  if (page.identity === "header") {
    // The viewer's id: from the page's URL (?userid=), else as remembered from a visit.
    const given = new URLSearchParams(location.search).get(page.param);
    const userId = given || remembered.get(STORE.user);
    if (userId) useUser(userId);
  }
  shaka.polyfill.installAll();
  const missing = [];
  if (!Hls.isSupported()) missing.push("hls.js");
  if (!shaka.Player.isBrowserSupported()) missing.push("Shaka Player");
  if (missing.length) notice(`This browser cannot run ${missing.join(" or ")} (Media Source Extensions).`);
  setInterval(refreshActive, REFRESH_MS);
  document.body.dataset.identity = page.identity; // the page is ready
}

main();
