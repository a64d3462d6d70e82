// CanWatch player page: the API at the site's root, streams through the gate at
// /watch/{streamId}/. No third-party code: a small HLS player on Media Source Extensions.
//
// Chromium plays neither HLS nor MPEG-TS in <video> by itself, but its MSE takes MPEG-TS
// with H.264 (MediaSource.isTypeSupported('video/mp2t; codecs="avc1.4D401E"')), so the
// player reads the playlist, fetches each segment through the gate and appends it. Every
// fetch carries the identity in a header (x-userid, or Authorization in jwt mode), as the
// API calls do: the page needs no cookie.
"use strict";

const PLAYLIST = "demo/playlist.m3u8";
const MIME = 'video/mp2t; codecs="avc1.4D401E"';
const BUFFER_AHEAD_S = 12; // fetch the next segment when less than this is buffered
const KEEP_BEHIND_S = 20; // drop what was played longer ago (MSE's memory is bounded)
const REFRESH_MS = 2000; // the active streams panel

const page = {
  identity: "header", // or "jwt", from /player/config.json
  cards: new Map(), // streamId -> Card
};

const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function credentials() {
  if (page.identity === "jwt") {
    const token = $("token").value.trim();
    return token ? { Authorization: `Bearer ${token}` } : null;
  }
  const user = $("user").value.trim();
  return user ? { "x-userid": user } : null;
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

function notice(text) {
  $("notice").textContent = text;
}

// A refusal of the gate: the server's JSON message, else the status.
async function refusal(response) {
  try {
    const body = await response.json();
    if (body && body.error) return `${response.status} ${body.error}`;
  } catch {
    // not JSON
  }
  return `${response.status} ${response.statusText}`;
}

class Refused extends Error {}

// Plays /watch/{streamId}/demo/playlist.m3u8 into a <video>, looping over the playlist
// until stopped; each segment fetch goes through the gate (and refreshes the lease).
class HlsPlayer {
  constructor(video, streamId, headers, onRefused) {
    this.video = video;
    this.base = new URL(`/watch/${encodeURIComponent(streamId)}/`, location.href);
    this.headers = headers;
    this.onRefused = onRefused;
    this.stopped = false;
  }

  async fetchGated(url) {
    const response = await fetch(url, { headers: this.headers, cache: "no-store" });
    if (!response.ok) throw new Refused(await refusal(response));
    return response;
  }

  async start() {
    const playlistUrl = new URL(PLAYLIST, this.base);
    const text = await (await this.fetchGated(playlistUrl)).text();
    // Media playlist: every line that is not a tag names a segment, relative to it.
    this.segments = text
      .split("\n")
      .map((line) => line.trim())
      .filter((line) => line && !line.startsWith("#"))
      .map((uri) => new URL(uri, playlistUrl));
    if (!this.segments.length) throw new Refused("the playlist names no segment");
    this.source = new MediaSource();
    this.video.src = URL.createObjectURL(this.source);
    await new Promise((resolve) => this.source.addEventListener("sourceopen", resolve, { once: true }));
    this.buffer = this.source.addSourceBuffer(MIME);
    // Sequence mode: each segment is placed right after the previous one, so the loop
    // back to the first segment continues the timeline instead of rewinding it.
    this.buffer.mode = "sequence";
    this.pump().catch((error) => this.fail(error));
  }

  async append(data) {
    await new Promise((resolve, reject) => {
      this.buffer.addEventListener("updateend", resolve, { once: true });
      this.buffer.addEventListener("error", () => reject(new Error("append failed")), { once: true });
      this.buffer.appendBuffer(data);
    });
  }

  ahead() {
    const ranges = this.buffer.buffered;
    return ranges.length ? ranges.end(ranges.length - 1) - this.video.currentTime : 0;
  }

  async pump() {
    for (let n = 0; !this.stopped; ) {
      if (this.ahead() > BUFFER_AHEAD_S) {
        await sleep(500);
        continue;
      }
      const index = n % this.segments.length;
      const data = await (await this.fetchGated(this.segments[index])).arrayBuffer();
      if (this.stopped) return;
      // Back at the first segment: its timestamps restart, so the parser starts afresh.
      if (index === 0 && n > 0) this.buffer.abort();
      await this.append(data);
      n += 1;
      const played = this.video.currentTime;
      if (played > KEEP_BEHIND_S * 2) {
        await new Promise((resolve) => {
          this.buffer.addEventListener("updateend", resolve, { once: true });
          this.buffer.remove(0, played - KEEP_BEHIND_S);
        });
      }
      if (this.video.paused && !this.video.ended) this.video.play().catch(() => {});
    }
  }

  fail(error) {
    if (this.stopped) return;
    this.stop();
    this.onRefused(error instanceof Refused ? error.message : `playback failed: ${error.message}`);
  }

  stop() {
    this.stopped = true;
    if (this.video.src) {
      URL.revokeObjectURL(this.video.src);
      this.video.removeAttribute("src");
      this.video.load();
    }
  }
}

// One stream on the page: its <video>, its state and its buttons.
class Card {
  constructor(streamId) {
    this.streamId = streamId;
    const node = $("card-template").content.firstElementChild.cloneNode(true);
    node.dataset.stream = streamId;
    node.querySelector(".stream").textContent = streamId;
    node.querySelector(".stop").addEventListener("click", () => this.stop());
    node.querySelector(".retry").addEventListener("click", () => this.start());
    this.node = node;
    this.video = node.querySelector("video");
    $("streams").append(node);
  }

  show(state, message = "") {
    this.node.dataset.state = state;
    this.node.querySelector(".state").textContent = state;
    this.node.querySelector(".message").textContent = message;
    this.node.querySelector(".stop").hidden = state !== "playing" && state !== "starting";
    this.node.querySelector(".retry").hidden = state !== "refused" && state !== "stopped";
  }

  async start() {
    const headers = credentials();
    if (!headers) return notice("Get a user id (or paste a token) first.");
    this.show("starting");
    const activated = await api("PATCH", `/streams/${encodeURIComponent(this.streamId)}/activate`, headers);
    refreshActive();
    if (activated.status !== 200) {
      return this.show("refused", activated.body.error || `status ${activated.status}`);
    }
    this.player = new HlsPlayer(this.video, this.streamId, headers, (message) => {
      this.show("refused", message);
      refreshActive();
    });
    try {
      await this.player.start();
      this.show("playing");
    } catch (error) {
      this.player.fail(error);
    }
  }

  async stop() {
    if (this.player) this.player.stop();
    const headers = credentials();
    if (headers) await api("PATCH", `/streams/${encodeURIComponent(this.streamId)}/deactivate`, headers);
    this.show("stopped");
    refreshActive();
  }
}

async function startStream() {
  if (!credentials()) return notice("Get a user id (or paste a token) first.");
  notice("");
  const issued = await api("GET", "/streams/newId");
  if (issued.status !== 200) return notice(`No stream id: ${issued.body.error || issued.status}`);
  const card = new Card(issued.body.streamId);
  page.cards.set(card.streamId, card);
  await card.start();
}

async function newUser() {
  const issued = await api("GET", "/users/newId");
  if (issued.status !== 200) return notice(`No user id: ${issued.body.error || issued.status}`);
  $("user").value = issued.body.userId;
  notice("");
  refreshActive();
}

function secondsLeft(expiresAt) {
  if (expiresAt === null) return "never";
  return `${Math.max(0, Math.round((expiresAt - Date.now()) / 1000))} s`;
}

// The user's active streams, their expiry and the limit, as the API says.
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
      for (const text of [lease.streamId, secondsLeft(lease.expiresAt)]) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.append(cell);
      }
      return row;
    }),
  );
}

async function main() {
  $("new-user").addEventListener("click", newUser);
  $("start").addEventListener("click", startStream);
  for (const id of ["user", "token"]) $(id).addEventListener("change", refreshActive);
  try {
    const config = await (await fetch("config.json", { cache: "no-store" })).json();
    page.identity = config.identity === "jwt" ? "jwt" : "header";
  } catch {
    page.identity = "header";
  }
  $(page.identity === "jwt" ? "who-jwt" : "who-header").hidden = false;
  if (!window.MediaSource || !MediaSource.isTypeSupported(MIME)) {
    notice(`This browser cannot play ${MIME} through Media Source Extensions.`);
  }
  setInterval(refreshActive, REFRESH_MS);
  document.body.dataset.identity = page.identity; // the page is ready
}

main();
