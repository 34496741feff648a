// The inference-service console: plain JavaScript over the service's own API, no build step.
//
// Model states arrive live from GET /v1/events (read with fetch, not EventSource, because
// EventSource cannot send the Authorization header). Process figures (RSS, CPU, in-flight)
// are refreshed from GET /v1/models every few seconds while the tab is visible.
"use strict";

const KEY_STORAGE = "inference-service-api-key";
const ACTIVITY_ROWS = 50; // a page of history
const ACTIVITY_MAX_ROWS = 500; // live rows beyond this drop the oldest (the Older button brings them back)
const LOG_LINES = 1000;
const REFRESH_MS = 5000;

const $ = (selector) => document.querySelector(selector);
const models = new Map(); // id -> {card, row, eventTime, history, progress}
let keyWaiters = [];

// ------------------------------------------------------------------ API access and the key

function authHeaders() {
  const key = sessionStorage.getItem(KEY_STORAGE);
  return key ? {Authorization: `Bearer ${key}`} : {};
}

function askForKey(message) {
  const form = $("#key-form");
  form.hidden = false;
  $("#key-error").textContent = message || "";
  $("#key-input").focus();
  return new Promise((resolve) => keyWaiters.push(resolve));
}

$("#key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY_STORAGE, $("#key-input").value);
  $("#key-form").hidden = true;
  const waiters = keyWaiters;
  keyWaiters = [];
  waiters.forEach((resolve) => resolve());
});

// fetch() with the stored key; a 401 asks for the key (once for all callers) and retries.
async function api(path, options = {}) {
  for (;;) {
    const response = await fetch(path, {...options, headers: {...(options.headers || {}), ...authHeaders()}});
    if (response.status !== 401) return response;
    const hadKey = Boolean(sessionStorage.getItem(KEY_STORAGE));
    sessionStorage.removeItem(KEY_STORAGE);
    await askForKey(hadKey ? "That key was refused." : "");
  }
}

async function apiJson(path, options) {
  const response = await api(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error?.message || `HTTP ${response.status}`);
  return body;
}

// Server-Sent Events over fetch: yields the data of each event (comments are skipped).
async function* sse(path, options = {}, signal) {
  const response = await api(path, {...options, signal});
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.error?.message || `HTTP ${response.status}`);
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\n").filter((line) => line.startsWith("data:")).map((line) => line.slice(5).trimStart());
      const comments = block.split("\n").filter((line) => line.startsWith(":")).map((line) => line.slice(1).trim());
      if (data.length) yield {data: data.join("\n")};
      else if (comments.length) yield {comment: comments.join("\n")};
    }
  }
}

// ------------------------------------------------------------------ formatting

const fmt = {
  mb: (value) => (value == null ? "–" : `${Math.round(value)} MB`),
  pct: (value) => (value == null ? "–" : `${value.toFixed(0)} %`),
  ms: (value) => (value == null ? "–" : value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${Math.round(value)} ms`),
  time: (epoch) => (epoch ? new Date(epoch * 1000).toLocaleTimeString() : "–"),
  countdown: (epoch) => {
    if (!epoch) return "–";
    const seconds = Math.max(0, Math.round(epoch - Date.now() / 1000));
    return seconds >= 60 ? `${Math.floor(seconds / 60)}m ${seconds % 60}s` : `${seconds}s`;
  },
  or: (value) => (value == null ? "–" : String(value)),
};

// A crash restart is a `loading` entered with a reason (the crash); shown as `restarting`.
function displayState(state, reason) {
  return state === "loading" && reason ? "restarting" : state;
}

// ------------------------------------------------------------------ models table

function cell(row, name) {
  return row.querySelector(`[data-field="${name}"]`);
}

function modelRow(id) {
  const row = document.createElement("tr");
  row.dataset.model = id;
  row.dataset.history = "";
  row.innerHTML = `
    <td data-field="id"></td><td data-field="runtime"></td>
    <td><span data-field="status" class="badge"></span><div class="progress" hidden><div></div></div>
        <div data-field="progress-text" class="muted"></div><div data-field="reason" class="error"></div>
        <div data-field="replicas" class="muted"></div></td>
    <td data-field="pid"></td><td data-field="port"></td><td data-field="rss"></td><td data-field="cpu"></td>
    <td data-field="in_flight"></td><td data-field="queue"></td><td data-field="since"></td><td data-field="until"></td>
    <td data-needs="admin"><button data-action="load">Load</button> <button data-action="unload">Unload</button></td>`;
  cell(row, "id").textContent = id;
  row.querySelector('[data-action="load"]').addEventListener("click", () => modelAction(id, "load"));
  row.querySelector('[data-action="unload"]').addEventListener("click", () => modelAction(id, "unload"));
  $("#models tbody").append(row);
  return row;
}

async function modelAction(id, action) {
  const entry = models.get(id);
  cell(entry.row, "reason").textContent = "";
  try {
    await apiJson(`/v1/models/${encodeURIComponent(id)}/${action}`, {method: "POST"});
  } catch (error) {
    cell(entry.row, "reason").textContent = `${action} failed: ${error.message}`;
  }
  refreshModels();
}

function setState(entry, state, reason, since, fromEvent) {
  const label = displayState(state, reason);
  const badge = cell(entry.row, "status");
  badge.textContent = label;
  badge.dataset.state = label;
  entry.row.dataset.status = label;
  entry.state = state;
  entry.stateSince = since;
  if (fromEvent) {
    const history = entry.row.dataset.history ? entry.row.dataset.history.split(" ") : [];
    if (history[history.length - 1] !== label) history.push(label);
    entry.row.dataset.history = history.slice(-20).join(" ");
  }
  const failed = state === "failed";
  cell(entry.row, "reason").textContent = failed || label === "restarting" ? reason || "" : "";
  if (state !== "loading") entry.progress = null;
  entry.row.querySelector('[data-action="load"]').disabled = state === "loaded" || state === "loading";
  entry.row.querySelector('[data-action="unload"]').disabled = state === "unloaded" || state === "unloading";
  renderProgress(entry);
}

function renderProgress(entry) {
  const bar = entry.row.querySelector(".progress");
  const text = cell(entry.row, "progress-text");
  if (entry.state !== "loading") {
    bar.hidden = true;
    text.textContent = "";
    return;
  }
  const progress = entry.progress || {};
  const elapsed = Date.now() / 1000 - (entry.stateSince || Date.now() / 1000);
  const expected = progress.expected_s;
  bar.hidden = false;
  bar.classList.toggle("indeterminate", !expected);
  bar.firstElementChild.style.width = expected ? `${Math.min(100, (100 * elapsed) / expected)}%` : "30%";
  text.textContent = `${progress.phase || "loading"} ${elapsed.toFixed(1)}s${expected ? ` of ~${expected.toFixed(1)}s` : ""}`;
}

function applyCard(card) {
  let entry = models.get(card.id);
  if (!entry) {
    entry = {row: modelRow(card.id), eventTime: 0, progress: null};
    models.set(card.id, entry);
    addModelOption(card.id);
  }
  entry.card = card;
  const row = entry.row;
  cell(row, "runtime").textContent = card.runtime;
  // A model with replicas: each one's pid and port, and its state and requests under the badge.
  const replicas = card.replicas || [];
  const each = (field) => replicas.map((r) => `#${r.replica} ${fmt.or(r[field])}`).join(" ");
  cell(row, "pid").textContent = replicas.length ? each("pid") : fmt.or(card.pid);
  cell(row, "port").textContent = replicas.length ? each("port") : fmt.or(card.port);
  cell(row, "replicas").textContent = replicas
    .map((r) => `#${r.replica} ${r.status}${r.devices ? ` gpu ${r.devices.join(",")}` : ""} ${r.in_flight}+${r.queue}`)
    .join(" · ");
  cell(row, "rss").textContent = fmt.mb(card.rss_mb);
  cell(row, "cpu").textContent = fmt.pct(card.cpu_percent);
  cell(row, "in_flight").textContent = fmt.or(card.in_flight);
  cell(row, "queue").textContent = fmt.or(card.queue_depth);
  cell(row, "since").textContent = fmt.time(card.loaded_at);
  cell(row, "until").textContent = card.expires_at ? fmt.countdown(card.expires_at) : card.ttl_s ? "busy" : "–";
  // A poll may answer from before an event already shown: the newer of the two wins.
  if (card.state_since >= entry.eventTime) setState(entry, card.status, card.reason, card.state_since, false);
}

function addModelOption(id) {
  for (const select of [$("#pg-model"), $("#log-source")]) {
    const option = document.createElement("option");
    option.value = id;
    option.textContent = select.id === "log-source" ? `model: ${id}` : id;
    select.append(option);
  }
}

async function refreshModels() {
  try {
    const list = await apiJson("/v1/models");
    list.data.forEach(applyCard);
  } catch (error) {
    console.warn("refreshing models failed", error);
  }
}

// ------------------------------------------------------------------ events

function onEvent(event) {
  if (event.type === "request") {
    if (event.activity_id == null) return; // a record the history dropped: the table shows the history
    addActivity({...event, id: event.activity_id});
    return trimActivity();
  }
  const entry = models.get(event.model);
  if (!entry) return;
  if (event.type === "model_state" && event.replica !== undefined) {
    refreshModels(); // one replica's state: the model's own (the best of its replicas) comes with its card
  } else if (event.type === "model_state") {
    entry.eventTime = event.time;
    setState(entry, event.state, event.reason, event.time, true);
    refreshModels(); // pid, port, loaded-since change with the state
  } else if (event.type === "load_progress") {
    entry.progress = event;
    renderProgress(entry);
  }
}

async function followEvents() {
  for (let delay = 500; ; delay = Math.min(delay * 2, 10000)) {
    try {
      const connection = $("#connection");
      for await (const message of sse("/v1/events")) {
        if (connection.dataset.state !== "live") {
          connection.dataset.state = "live";
          connection.textContent = "live";
          delay = 500;
          refreshModels(); // anything that happened while we were away
          loadActivity(false);
        }
        if (message.data) onEvent(JSON.parse(message.data));
      }
    } catch (error) {
      console.warn("event stream broke", error);
    }
    $("#connection").dataset.state = "offline";
    $("#connection").textContent = "reconnecting";
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}

// ------------------------------------------------------------------ activity

// The table shows the stored history (GET /v1/activity: it survives a restart of the service and
// a reload of the page) merged with the live `request` events: one row per record, keyed by its
// id (an event's activity_id), newest first. A captured record's row opens its capture.
const activityRows = new Map(); // record id -> its row
let historyRead = false;

function activityCells(record) {
  const tokens = record.completion_tokens == null ? "–" : `${record.prompt_tokens ?? "?"} → ${record.completion_tokens}`;
  return [fmt.time(record.time), record.request_id, record.model, record.mode ? `${record.endpoint} (${record.mode})` : record.endpoint,
    record.status, fmt.ms(record.duration_ms), fmt.ms(record.ttft_ms), tokens, fmt.or(record.tokens_per_s)];
}

// The last cell holds the row's buttons.
function activityActions(record) {
  const td = document.createElement("td");
  td.className = "actions";
  if (record.captured) {
    const button = document.createElement("button");
    button.dataset.action = "capture";
    button.dataset.needs = "admin";
    button.textContent = "Capture";
    button.addEventListener("click", () => showCapture(record));
    td.append(button);
  }
  return td;
}

function addActivity(record) {
  if (activityRows.has(record.id)) return; // both in the history and live
  const row = document.createElement("tr");
  row.dataset.id = record.id;
  row.className = record.status >= 400 ? "failed" : "";
  const values = activityCells(record);
  for (const value of values) {
    const td = document.createElement("td");
    td.textContent = fmt.or(value);
    row.append(td);
  }
  row.append(activityActions(record));
  const body = $("#activity tbody");
  const newer = [...activityRows.keys()].filter((id) => id > record.id);
  const after = newer.length ? activityRows.get(Math.min(...newer)) : null;
  if (after) (after.nextElementSibling?.classList.contains("stages") ? after.nextElementSibling : after).after(row);
  else body.prepend(row);
  activityRows.set(record.id, row);
  if (record.orchestration) {
    const detail = document.createElement("tr");
    detail.className = "stages";
    const td = document.createElement("td");
    td.colSpan = values.length + 1;
    td.textContent = record.orchestration.stages
      .map((stage) => `${stage.role} on ${stage.model}: ${fmt.ms(stage.latency_ms)}${stage.error ? ` — ${stage.error}` : ""}`)
      .join("  ·  ");
    detail.append(td);
    row.after(detail);
  }
}

function oldestActivity() {
  return Math.min(...activityRows.keys());
}

// A page of the stored history: the newest (on page load, and whenever the event stream
// reconnects: what ended meanwhile), or the page before the oldest row shown (`older`).
async function loadActivity(older) {
  try {
    const query = new URLSearchParams({limit: String(ACTIVITY_ROWS)});
    if (older && activityRows.size) query.set("before", String(oldestActivity()));
    const page = await apiJson(`/v1/activity?${query}`);
    page.data.forEach(addActivity);
    if (older || !historyRead) $("#activity-older").hidden = !page.has_more;
    historyRead = true;
    $("#activity-note").textContent = page.complete ? "" : "(history unavailable: the service's database cannot be read)";
  } catch (error) {
    console.warn("loading the activity history failed", error);
  }
}

$("#activity-older").addEventListener("click", () => loadActivity(true));

function trimActivity() {
  while (activityRows.size > ACTIVITY_MAX_ROWS) {
    const id = oldestActivity();
    const row = activityRows.get(id);
    if (row.nextElementSibling?.classList.contains("stages")) row.nextElementSibling.remove();
    row.remove();
    activityRows.delete(id);
    $("#activity-older").hidden = false;
  }
}

async function showCapture(record) {
  const dialog = $("#capture-dialog");
  $("#capture-request-id").textContent = record.request_id;
  for (const part of ["request", "response"]) {
    $(`#capture-${part}`).textContent = "";
    $(`#capture-${part}-size`).textContent = "";
  }
  dialog.showModal();
  try {
    const capture = await apiJson(`/v1/activity/${record.id}/capture`);
    for (const part of ["request", "response"]) {
      const {body, bytes, truncated} = capture[part];
      $(`#capture-${part}`).textContent = body;
      $(`#capture-${part}-size`).textContent = truncated ? `(the first ${new Blob([body]).size} of ${bytes} bytes)` : `(${bytes} bytes)`;
    }
    dialog.dataset.loaded = String(record.id);
  } catch (error) {
    $("#capture-request").textContent = `[capture not available: ${error.message}]`;
  }
}

// ------------------------------------------------------------------ in flight

// The inference requests queued or running (GET /v1/requests, admin), each with a Cancel button
// (POST /v1/requests/{id}/cancel), refreshed with the models. Rows are kept by request id: a row
// stays put while it runs.

async function refreshInFlight() {
  let listing;
  try {
    listing = await apiJson("/v1/requests");
  } catch (error) {
    console.warn("refreshing requests in flight failed", error);
    return;
  }
  const body = $("#in-flight tbody");
  const running = new Set(listing.data.map((request) => request.id));
  for (const row of [...body.rows]) if (!running.has(row.dataset.request)) row.remove();
  const shown = new Set([...body.rows].map((row) => row.dataset.request));
  for (const request of listing.data.filter((request) => !shown.has(request.id))) {
    const row = document.createElement("tr");
    row.dataset.request = request.id;
    const endpoint = request.mode ? `${request.endpoint} (${request.mode})` : request.endpoint;
    for (const value of [fmt.time(request.started_at), request.id, request.key, request.model, endpoint]) {
      const td = document.createElement("td");
      td.textContent = fmt.or(value);
      row.append(td);
    }
    const button = document.createElement("button");
    button.dataset.action = "cancel";
    button.textContent = "Cancel";
    button.addEventListener("click", () => cancelRequest(request.id, button));
    const action = document.createElement("td");
    action.append(button);
    row.append(action);
    body.append(row);
  }
}

function followInFlight() {
  refreshInFlight();
  setInterval(() => document.hidden || refreshInFlight(), REFRESH_MS);
}

async function cancelRequest(id, button) {
  button.disabled = true;
  try {
    await apiJson(`/v1/requests/${encodeURIComponent(id)}/cancel`, {method: "POST"});
  } catch (error) {
    button.title = error.message; // it finished meanwhile (404)
  }
  refreshInFlight();
}

// ------------------------------------------------------------------ logs

let logStream = null;

async function followLog() {
  if (logStream) logStream.abort();
  const controller = new AbortController();
  logStream = controller;
  const source = $("#log-source").value;
  const follow = $("#log-follow").checked;
  const base = source ? `/v1/models/${encodeURIComponent(source)}/logs` : "/v1/logs";
  const pre = $("#log");
  pre.textContent = "";
  const append = (line) => {
    pre.append(line + "\n");
    while (pre.childNodes.length > LOG_LINES) pre.firstChild.remove();
    pre.scrollTop = pre.scrollHeight;
  };
  try {
    if (!follow) {
      (await apiJson(`${base}?tail=200`, {signal: controller.signal})).lines.forEach(append);
      return;
    }
    for await (const message of sse(`${base}?follow=true&tail=200`, {}, controller.signal)) {
      if (message.data) append(JSON.parse(message.data).line);
    }
  } catch (error) {
    if (error.name !== "AbortError") append(`[log stream ended: ${error.message}]`);
  }
}

$("#log-source").addEventListener("change", followLog);
$("#log-follow").addEventListener("change", followLog);

// ------------------------------------------------------------------ playground

let playground = null;

$("#playground").addEventListener("submit", async (event) => {
  event.preventDefault();
  const output = $("#pg-output");
  const stages = $("#pg-stages");
  output.textContent = "";
  output.dataset.chunks = "0";
  output.dataset.done = "false";
  stages.textContent = "";
  $("#pg-orchestration-box").hidden = true;
  const body = {
    model: $("#pg-model").value,
    messages: [{role: "user", content: $("#pg-message").value}],
    max_tokens: Number($("#pg-max-tokens").value) || 64,
    stream: true,
    stream_options: {include_usage: true},
  };
  if ($("#pg-mode").value) body.orchestration_mode = $("#pg-mode").value;
  playground = new AbortController();
  $("#pg-send").disabled = true;
  $("#pg-stop").disabled = false;
  try {
    const request = {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)};
    for await (const message of sse("/v1/chat/completions", request, playground.signal)) {
      if (message.comment && message.comment.startsWith("stage")) stages.append(`${message.comment}\n`);
      if (!message.data || message.data === "[DONE]") continue;
      const chunk = JSON.parse(message.data);
      if (chunk.error) throw new Error(chunk.error.message);
      const text = (chunk.choices || []).map((choice) => choice.delta?.content || "").join("");
      if (text) {
        output.append(text);
        output.dataset.chunks = String(Number(output.dataset.chunks) + 1);
      }
      if (chunk.orchestration) {
        $("#pg-orchestration").textContent = JSON.stringify(chunk.orchestration, null, 2);
        $("#pg-orchestration-box").hidden = false;
      }
    }
    output.dataset.done = "true";
  } catch (error) {
    if (error.name !== "AbortError") output.append(`\n[error: ${error.message}]`);
    output.dataset.done = "error";
  } finally {
    $("#pg-send").disabled = false;
    $("#pg-stop").disabled = true;
  }
});

$("#pg-stop").addEventListener("click", () => playground && playground.abort());

// ------------------------------------------------------------------ usage

const USAGE_WINDOW_S = 24 * 3600;

// GET /v1/usage (an admin key: every key; any other: its own), summed per key and model.
async function refreshUsage() {
  try {
    const since = Math.floor(Date.now() / 1000) - USAGE_WINDOW_S;
    const usage = await apiJson(`/v1/usage?since=${since}`);
    const sums = new Map();
    for (const row of usage.data) {
      const id = `${row.key}\u0000${row.model}`;
      const sum = sums.get(id) || {key: row.key, model: row.model, requests: 0, prompt_tokens: 0, completion_tokens: 0, errors: 0, upstream_seconds: 0};
      for (const field of ["requests", "prompt_tokens", "completion_tokens", "errors", "upstream_seconds"]) sum[field] += row[field];
      sums.set(id, sum);
    }
    const body = $("#usage tbody");
    body.textContent = "";
    for (const sum of [...sums.values()].sort((a, b) => a.key.localeCompare(b.key) || a.model.localeCompare(b.model))) {
      const row = document.createElement("tr");
      row.dataset.key = sum.key;
      row.dataset.model = sum.model;
      const values = [sum.key, sum.model, sum.requests, sum.prompt_tokens, sum.completion_tokens, sum.errors, fmt.ms(sum.upstream_seconds * 1000)];
      for (const value of values) {
        const td = document.createElement("td");
        td.textContent = String(value);
        row.append(td);
      }
      body.append(row);
    }
  } catch (error) {
    console.warn("refreshing usage failed", error);
  }
}

// ------------------------------------------------------------------ start

// What this tab's key may do (GET /v1/key): sections and buttons that need another scope are
// hidden (console.css keys them on body[data-scopes]), and their requests are never sent.
let scopes = [];

async function loadScopes() {
  scopes = (await apiJson("/v1/key")).scopes;
  document.body.dataset.scopes = scopes.join(" ");
}

async function main() {
  await loadScopes();
  if (scopes.includes("read") || scopes.includes("inference")) await refreshModels();
  if (scopes.includes("read")) followEvents(); // it loads the activity history once it listens: none is missed
  else if (scopes.includes("admin")) loadActivity(false);
  if (scopes.includes("admin")) followLog();
  if (scopes.includes("admin")) followInFlight();
  refreshUsage();
  apiJson("/openapi.json").then((spec) => ($("#version").textContent = `v${spec.info.version}`)).catch(() => {});
  setInterval(() => {
    if (!document.hidden) refreshModels();
    if (!document.hidden) refreshUsage();
    for (const entry of models.values()) renderProgress(entry);
  }, REFRESH_MS);
  setInterval(() => {
    for (const entry of models.values()) {
      if (entry.card?.expires_at) cell(entry.row, "until").textContent = fmt.countdown(entry.card.expires_at);
      if (entry.state === "loading") renderProgress(entry);
    }
  }, 1000);
}

main();
