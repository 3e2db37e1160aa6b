// task-orchestrator dashboard: plain JavaScript, no build step, nothing from outside this server.
// Views are chosen by the URL's hash: #/ (overview), #/tasks?..., #/tasks/<id>.
// Live data arrives as server-sent events: the overview once a second, a task when it changes.
"use strict";

const STATES = ["scheduled", "pending", "running", "succeeded", "failed", "cancelled"];
const HISTORY_SECONDS = 300;
const WRITE_HEADERS = { "X-Orchestrator-Dashboard": "1" };

const $ = (selector, root = document) => root.querySelector(selector);
const samples = []; // {t, finishedPerSecond, pending, running}
let lastOverview = null;
let overviewSource = null;
let taskSource = null;
let listRevision = -1;
let listRefreshAt = 0;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "style") Object.assign(node.style, value); // CSSOM: allowed by the CSP
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const stateName = (value) => String(value || "").replace(/^TASK_STATE_/, "").toLowerCase();
const outcomeName = (value) =>
  String(value || "").replace(/^ATTEMPT_OUTCOME_/, "").toLowerCase().replace("unspecified", "running");

function when(timestamp) {
  // Local time to the millisecond: a task's steps are often milliseconds apart.
  if (!timestamp) return "";
  const d = new Date(timestamp);
  if (isNaN(d) || d.getTime() <= 0) return "";
  const two = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ` +
    `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.` +
    String(d.getMilliseconds()).padStart(3, "0");
}

function ago(timestamp) {
  if (!timestamp) return "";
  const seconds = Math.max(0, (Date.now() - new Date(timestamp).getTime()) / 1000);
  return seconds < 90 ? `${seconds.toFixed(1)} s ago` : `${Math.round(seconds / 60)} min ago`;
}

function stateBadge(state) {
  const name = stateName(state);
  return el("span", { class: `state ${name}`, "data-state": name, text: name });
}

async function getJson(url, options = {}) {
  const response = await fetch(url, { credentials: "same-origin", ...options });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) window.location.assign("/dashboard/login");
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

function setLive(on) {
  const badge = $("#live");
  badge.className = `live ${on ? "on" : "off"}`;
  badge.textContent = on ? "live" : "reconnecting";
}

// -- overview -------------------------------------------------------------------------------

function startOverviewStream() {
  if (overviewSource) return;
  overviewSource = new EventSource("/dashboard/api/events");
  overviewSource.addEventListener("open", () => setLive(true));
  overviewSource.addEventListener("error", () => setLive(false));
  overviewSource.addEventListener("overview", (event) => onOverview(JSON.parse(event.data)));
}

function onOverview(overview) {
  const totals = overview.stats.totals;
  const finished = Number(totals.succeeded) + Number(totals.failed) + Number(totals.cancelled);
  if (lastOverview) {
    const seconds = (overview.time - lastOverview.time) / 1000;
    const before = lastOverview.stats.totals;
    const finishedBefore = Number(before.succeeded) + Number(before.failed) + Number(before.cancelled);
    if (seconds > 0) {
      samples.push({
        t: overview.time,
        finishedPerSecond: Math.max(0, finished - finishedBefore) / seconds,
        pending: Number(totals.pending),
        running: Number(totals.running),
      });
    }
    while (samples.length && samples[0].t < overview.time - HISTORY_SECONDS * 1000) samples.shift();
  }
  lastOverview = overview;
  renderOverview(overview);
  fillTypeFilter(overview.taskTypes);
  if (currentView() === "tasks" && overview.revision !== listRevision) refreshTaskList();
}

function renderOverview(overview) {
  const totals = overview.stats.totals;
  $("#totals").replaceChildren(
    ...STATES.map((state) =>
      el("div", { class: `card ${state}`, "data-count": state },
        el("div", { class: "n", text: Number(totals[state] || 0).toLocaleString() }),
        el("div", { class: "l", text: state }))),
    el("div", { class: "card" },
      el("div", { class: "n", text: Number(overview.stats.connectedWorkers || 0) }),
      el("div", { class: "l", text: "workers" })),
    el("div", { class: "card" },
      el("div", { class: "n", text: Number(overview.stats.finishedLastMinute || 0).toLocaleString() }),
      el("div", { class: "l", text: "finished last minute" })),
  );
  $("#types tbody").replaceChildren(...overview.taskTypes.map(typeRow));
  $("#workers tbody").replaceChildren(...overview.workers.map(workerRow));
  drawChart();
}

function typeRow(type) {
  const paused = type.state === "TASK_TYPE_STATE_PAUSED";
  const button = el("button", {
    "data-action": paused ? "resume" : "pause",
    text: paused ? "Resume" : "Pause",
    onclick: () => setPaused(type.name, !paused, button),
  });
  return el("tr", { "data-type": type.name, "data-paused": String(paused) },
    el("td", {}, el("a", { href: `#/tasks?types=${encodeURIComponent(type.name)}`, text: type.name })),
    el("td", { class: paused ? "paused" : "", text: paused ? "paused" : "active" }),
    ...STATES.map((state) => el("td", { class: "num", text: Number(type.counts[state] || 0).toLocaleString() })),
    el("td", { class: "num", text: type.connectedWorkers }),
    el("td", {}, button));
}

async function setPaused(name, pause, button) {
  button.disabled = true;
  try {
    const action = pause ? "pause" : "resume";
    const type = await getJson(`/dashboard/api/task-types/${encodeURIComponent(name)}/${action}`, {
      method: "POST",
      headers: WRITE_HEADERS,
    });
    if (lastOverview) {
      lastOverview.taskTypes = lastOverview.taskTypes.map((t) => (t.name === type.name ? type : t));
      renderOverview(lastOverview);
    }
  } catch (error) {
    alert(`Could not ${pause ? "pause" : "resume"} ${name}: ${error.message}`);
  } finally {
    button.disabled = false;
  }
}

function workerRow(worker) {
  return el("tr", { "data-worker": worker.id },
    el("td", { text: worker.id + (worker.draining ? " (draining)" : "") }),
    el("td", { text: worker.hostname }),
    el("td", { class: "num", text: worker.pid }),
    el("td", { text: (worker.taskTypes || []).join(", ") }),
    el("td", { class: "num", text: worker.slots }),
    el("td", { class: "num", text: worker.inFlight }),
    el("td", { text: ago(worker.lastHeartbeatAt) }),
    el("td", { text: when(worker.connectedAt) }),
    el("td", { text: worker.schedulerId }));
}

function drawChart() {
  const canvas = $("#chart");
  if (canvas.clientWidth && canvas.width !== canvas.clientWidth) canvas.width = canvas.clientWidth;
  const context = canvas.getContext("2d");
  const width = canvas.width, height = canvas.height, pad = 30;
  context.clearRect(0, 0, width, height);
  context.strokeStyle = "#e3e6eb";
  context.fillStyle = "#6b7280";
  context.font = "11px system-ui";
  const top = Math.max(1, ...samples.map((h) => Math.max(h.finishedPerSecond, h.pending, h.running)));
  for (let i = 0; i <= 4; i++) {
    const y = pad / 2 + ((height - pad) * i) / 4;
    context.beginPath(); context.moveTo(pad + 10, y); context.lineTo(width, y); context.stroke();
    const value = top * (1 - i / 4);
    context.fillText(top < 8 ? value.toFixed(1) : String(Math.round(value)), 0, y + 4);
  }
  if (samples.length < 2) {
    context.fillText("collecting samples…", width / 2 - 50, height / 2);
    return;
  }
  // The time axis grows with the samples, from 30 s up to HISTORY_SECONDS.
  const now = samples[samples.length - 1].t;
  const windowMs = Math.min(HISTORY_SECONDS * 1000, Math.max(30000, now - samples[0].t));
  const x = (t) => pad + 10 + ((width - pad - 10) * (t - (now - windowMs))) / windowMs;
  context.fillText(`${Math.round(windowMs / 1000)} s`, pad + 10, height - 2);
  context.fillText("now", width - 24, height - 2);
  const y = (v) => pad / 2 + (height - pad) * (1 - v / top);
  const colours = { finishedPerSecond: "#16a34a", pending: "#f59e0b", running: "#3b82f6" };
  for (const [key, colour] of Object.entries(colours)) {
    context.strokeStyle = colour;
    context.lineWidth = 2;
    context.beginPath();
    samples.forEach((h, i) => (i ? context.lineTo(x(h.t), y(h[key])) : context.moveTo(x(h.t), y(h[key]))));
    context.stroke();
  }
  context.lineWidth = 1;
}

// -- task list ------------------------------------------------------------------------------

function fillTypeFilter(types) {
  const select = $("#filters select[name=types]");
  const known = new Set([...select.options].map((o) => o.value));
  for (const type of types) {
    if (!known.has(type.name)) select.append(el("option", { value: type.name, text: type.name }));
  }
}

function listQuery() {
  const params = new URLSearchParams(window.location.hash.split("?")[1] || "");
  const query = new URLSearchParams();
  for (const key of ["states", "types", "group", "client", "labels", "task_id"]) {
    for (const value of params.getAll(key)) if (value) query.append(key, value);
  }
  return query;
}

function showFilters() {
  const params = new URLSearchParams(window.location.hash.split("?")[1] || "");
  const form = $("#filters");
  form.states.value = params.get("states") || "";
  form.types.value = params.get("types") || "";
  form.group.value = params.get("group") || "";
  form.client.value = params.get("client") || "";
  form.q.value = params.get("task_id") || params.get("labels") || "";
}

function onSearch(event) {
  event.preventDefault();
  const form = $("#filters");
  const params = new URLSearchParams();
  const q = form.q.value.trim();
  if (q.includes("=")) params.set("labels", q);
  else if (q) params.set("task_id", q);
  for (const key of ["states", "types", "group", "client"]) {
    if (form[key].value.trim()) params.set(key, form[key].value.trim());
  }
  window.location.hash = `#/tasks?${params}`;
}

async function refreshTaskList(pageToken = "") {
  const now = Date.now();
  if (!pageToken && now - listRefreshAt < 500) return;
  listRefreshAt = now;
  const query = listQuery();
  if (pageToken) query.set("page_token", pageToken);
  const errorLine = $("#tasks-error");
  try {
    const page = await getJson(`/dashboard/api/tasks?${query}`);
    errorLine.hidden = true;
    const rows = page.tasks.map(taskRow);
    if (pageToken) $("#tasks tbody").append(...rows);
    else {
      $("#tasks tbody").replaceChildren(...rows);
      listRevision = page.revision;
    }
    const more = $("#more");
    more.hidden = !page.nextPageToken;
    more.onclick = () => refreshTaskList(page.nextPageToken);
  } catch (error) {
    errorLine.textContent = error.message;
    errorLine.hidden = false;
  }
}

function taskRow(task) {
  return el("tr", { "data-task": task.id, "data-state": stateName(task.state) },
    el("td", {}, el("a", { href: `#/tasks/${task.id}` }, el("code", { text: task.id }))),
    el("td", { text: task.type }),
    el("td", {}, stateBadge(task.state)),
    el("td", { class: "num", text: `${task.attempts}/${task.maxAttempts}` }),
    el("td", { text: when(task.createdAt) }),
    el("td", { text: when(task.updatedAt) }),
    el("td", { class: "err", text: task.error || "" }));
}

// -- one task -------------------------------------------------------------------------------

function openTask(id) {
  closeTaskStream();
  $("#task-id").textContent = id;
  $("#task-missing").hidden = true;
  taskSource = new EventSource(`/dashboard/api/tasks/${encodeURIComponent(id)}/events`);
  taskSource.addEventListener("task", (event) => renderTask(JSON.parse(event.data)));
  taskSource.addEventListener("deleted", () => {
    $("#task-missing").textContent = "This task was deleted.";
    $("#task-missing").hidden = false;
    closeTaskStream();
  });
  taskSource.addEventListener("error", async () => {
    // A 404 or 400 ends the stream for good: say why, instead of retrying forever.
    try {
      await getJson(`/dashboard/api/tasks/${encodeURIComponent(id)}`);
    } catch (error) {
      $("#task-missing").textContent = error.message;
      $("#task-missing").hidden = false;
      closeTaskStream();
    }
  });
}

function closeTaskStream() {
  if (taskSource) taskSource.close();
  taskSource = null;
}

function renderTask(task) {
  $("#task-state").replaceChildren(stateBadge(task.state));
  $("#task-state").dataset.state = stateName(task.state);
  const fields = [
    ["type", task.type], ["priority", task.priority], ["attempts", `${task.attempts} of ${task.maxAttempts}`],
    ["created", when(task.createdAt)], ["run at", when(task.runAt)], ["due", when(task.dueAt)],
    ["started", when(task.startedAt)], ["finished", when(task.finishedAt)],
    ["updated", when(task.updatedAt)], ["timeout", task.timeout], ["group", task.group],
    ["client", task.client], ["idempotency key", task.idempotencyKey], ["worker", task.workerId],
    ["lease", task.leaseId], ["labels", Object.entries(task.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ")],
    ["progress", task.progress ? `${task.progress.percent ?? ""}% ${task.progress.message || ""}` : ""],
    ["revision", task.revision],
  ];
  $("#task-fields tbody").replaceChildren(
    ...fields.filter(([, value]) => value !== "" && value !== undefined && value !== null)
      .map(([name, value]) => el("tr", {}, el("th", { text: name }), el("td", { text: value }))));
  $("#task-payload").textContent = JSON.stringify(task.payload ?? {}, null, 2);
  $("#task-result").textContent = task.result ? JSON.stringify(task.result, null, 2) : "—";
  $("#task-error").textContent = task.error || "—";
  const attempts = task.attemptHistory || [];
  $("#attempts tbody").replaceChildren(...attempts.map((a) =>
    el("tr", { "data-attempt": a.number, "data-outcome": outcomeName(a.outcome) },
      el("td", { class: "num", text: a.number }),
      el("td", { text: outcomeName(a.outcome) }),
      el("td", { text: a.workerId }),
      el("td", { text: when(a.dueAt) }),
      el("td", { text: when(a.leasedAt) }),
      el("td", { text: when(a.startedAt) }),
      el("td", { text: when(a.finishedAt) }),
      el("td", { class: "err", text: a.error || "" }))));
  renderTimeline(task, attempts);
}

function renderTimeline(task, attempts) {
  const box = $("#timeline");
  const ms = (t) => (t ? new Date(t).getTime() : NaN);
  const start = ms(task.createdAt);
  const end = Math.max(Date.now() * (task.finishedAt ? 0 : 1), ms(task.finishedAt) || 0,
    ...attempts.map((a) => ms(a.finishedAt) || ms(a.startedAt) || 0));
  const span = Math.max(1, end - start);
  const pct = (t) => `${Math.min(100, Math.max(0, ((t - start) / span) * 100)).toFixed(2)}%`;
  const rows = attempts.map((a) => {
    const due = ms(a.dueAt) || ms(a.leasedAt) || ms(a.startedAt);
    const began = ms(a.startedAt);
    const finished = ms(a.finishedAt) || Date.now();
    const row = el("div", { class: "row", title: `attempt ${a.number}: ${outcomeName(a.outcome)}` });
    row.append(el("span", { class: "wait", style: { left: pct(due), width: `calc(${pct(began)} - ${pct(due)})` } }));
    row.append(el("span", { class: `run ${outcomeName(a.outcome)}`,
      style: { left: pct(began), width: `max(3px, calc(${pct(finished)} - ${pct(began)}))` } }));
    return row;
  });
  box.replaceChildren(
    el("div", { class: "legend", text: `from creation (${when(task.createdAt)}) to ${task.finishedAt ? "the end" : "now"}: ` +
      `${(span / 1000).toFixed(3)} s; grey waits for a worker, colour runs` }),
    ...rows);
}

// -- routing --------------------------------------------------------------------------------

function currentView() {
  const hash = window.location.hash || "#/";
  if (/^#\/tasks\/[^?/]+/.test(hash)) return "task";
  if (hash.startsWith("#/tasks")) return "tasks";
  return "overview";
}

function route() {
  const view = currentView();
  for (const name of ["overview", "tasks", "task"]) $(`#view-${name}`).hidden = name !== view;
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.dataset.nav === (view === "task" ? "tasks" : view));
  }
  if (view !== "task") closeTaskStream();
  if (view === "tasks") {
    showFilters();
    listRefreshAt = 0;
    refreshTaskList();
  }
  if (view === "task") openTask(decodeURIComponent(window.location.hash.split("/")[2].split("?")[0]));
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", () => {
  $("#filters").addEventListener("submit", onSearch);
  startOverviewStream();
  route();
});
