// The linq-hooks dashboard: reads the API of the `serve` that served this page, with the
// bearer token the user gives (kept in sessionStorage), and polls it every 2 s while the tab is
// visible. No library, no build step; every value from the API is inserted as text, never as
// HTML. The endpoints it uses are those of schemas/openapi.json, served by the same binary.
"use strict";

const TOKEN_KEY = "linq-hooks-token";
const POLL_MS = 2000;
const PAGE = 50;

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  paused: false,
  waitingForToken: false,
  stats: null, // null: not asked yet; false: no /v1/stats/deliveries; else its answer
  filters: {},
  cursor: null,
  nextCursor: null,
  selected: null,
  events: new Map(), // event id -> {body} | {error}, for the selected delivery
  workflows: [],
  rendered: new Map(), // region -> the data last drawn there, to skip redrawing what is unchanged
  busy: false,
  timer: null,
};

// ---------------------------------------------------------------------------------------------
// The API

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(method, path) {
  const headers = { Accept: "application/json" };
  const token = state.token;
  if (token) headers.Authorization = "Bearer " + token;
  let response;
  try {
    response = await fetch(path, { method, headers, cache: "no-store" });
  } catch (e) {
    throw new ApiError(0, "cannot reach serve: " + e.message);
  }
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (e) {
    body = null;
  }
  if (response.status === 401) {
    // Only if the token sent is still the one in use: calls sent before the user gave one
    // answer 401 after the form is gone.
    if (token === state.token) {
      askForToken(token ? "That token was refused: give the one serve was started with." : null);
    }
    throw new ApiError(401, "a token is needed");
  }
  if (!response.ok) {
    throw new ApiError(response.status, errorText(response, body, text));
  }
  return body;
}

// The API's own words: {"errors": [{"path", "message"}]} as "path: message; …".
function errorText(response, body, text) {
  if (body && Array.isArray(body.errors)) {
    return body.errors.map((e) => (e.path ? e.path + ": " : "") + e.message).join("; ");
  }
  return response.status + " " + response.statusText + (text ? ": " + text.slice(0, 200) : "");
}

// ---------------------------------------------------------------------------------------------
// Small DOM helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "text") el.textContent = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const $ = (id) => document.getElementById(id);

function pad(n) {
  return String(n).padStart(2, "0");
}

// A time in the reader's zone: "14:03:07" today, "2026-11-29 14:03:07" otherwise.
function when(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const now = new Date();
  const time = pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  const day = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate());
  const same = d.toDateString() === now.toDateString();
  return h("time", { datetime: iso, title: iso }, same ? time : day + " " + time);
}

// A datetime-local value (the reader's zone) as RFC 3339 UTC; "" stays "".
function toRfc3339(local) {
  if (!local) return "";
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString();
}

function stateBadge(name) {
  return h("span", { class: "badge state-" + name, "data-field": "state" }, name);
}

function statusText(status) {
  if (status === null || status === undefined) return h("span", { class: "muted" }, "—");
  return h("span", { class: "status s" + String(status)[0] }, String(status));
}

// Redraws `region` with `draw()` only when `data` changed; keeps the keyboard focus on the
// element with the same data-focus key.
function redraw(region, data, draw) {
  const key = JSON.stringify(data);
  if (state.rendered.get(region) === key) return;
  state.rendered.set(region, key);
  const container = $(region);
  const active = document.activeElement;
  const focusKey = active && container.contains(active) ? active.getAttribute("data-focus") : null;
  container.replaceChildren(...[].concat(draw()).filter((child) => child !== null && child !== undefined));
  if (focusKey) {
    const again = container.querySelector('[data-focus="' + CSS.escape(focusKey) + '"]');
    if (again) again.focus();
  }
}

// ---------------------------------------------------------------------------------------------
// Notices, the token, the live status

let noticeTimer = null;

function notice(text, kind) {
  const el = $("notice");
  el.textContent = text;
  el.className = "notice " + (kind || "error");
  el.hidden = false;
  clearTimeout(noticeTimer);
  if (kind === "ok") noticeTimer = setTimeout(() => (el.hidden = true), 8000);
}

function askForToken(why) {
  state.waitingForToken = true;
  const form = $("token-form");
  if (why) $("token-why").textContent = why;
  if (form.hidden) {
    form.hidden = false;
    $("token").value = "";
    $("token").focus();
  }
  liveStatus("Waiting for the token");
}

function liveStatus(text) {
  $("live-status").textContent = text;
}

// ---------------------------------------------------------------------------------------------
// Workflows and hooks

async function loadWorkflows() {
  const all = [];
  let after = null;
  for (let page = 0; page < 20; page++) {
    const query = "limit=1000" + (after ? "&after=" + encodeURIComponent(after) : "");
    const body = await api("GET", "/v1/workflows?" + query);
    all.push(...body.workflows);
    after = body.next_after;
    if (!after) break;
  }
  state.workflows = all;
  fillHookChoices();
  // The minute too: the chart's bars move left as time passes, activity or not.
  redraw("workflows", { all, stats: state.stats, minute: Math.floor(Date.now() / 60000) }, drawWorkflows);
}

async function loadStats() {
  if (state.stats === false) return;
  try {
    state.stats = await api("GET", "/v1/stats/deliveries?minutes=60");
  } catch (e) {
    // 404: this serve has no stats; the chart column is left out. Anything else: try again later.
    if (e.status === 404) state.stats = false;
  }
}

function drawWorkflows() {
  if (state.workflows.length === 0) {
    return h("p", { class: "muted" }, "No workflows yet: PUT /v1/workflows/{id} or serve --hooks FILE registers one.");
  }
  const charts = state.stats && Array.isArray(state.stats.per_minute);
  return state.workflows.map((workflow) =>
    h("div", { class: "workflow" },
      h("h3", {}, "Workflow ", h("code", {}, workflow.workflow_id),
        h("span", { class: "muted small" }, " · ", workflow.hooks.length, workflow.hooks.length === 1 ? " hook" : " hooks")),
      workflow.hooks.length === 0 ? h("p", { class: "muted" }, "No hooks.") :
      h("table", { class: "hooks" },
        h("caption", { class: "visually-hidden" }, "Hooks of " + workflow.workflow_id),
        h("thead", {}, h("tr", {},
          h("th", { scope: "col", class: "c-id" }, "Hook"),
          h("th", { scope: "col", class: "c-url" }, "Destination"),
          h("th", { scope: "col", class: "c-state" }, "State"),
          h("th", { scope: "col", class: "c-num" }, "Pending"),
          h("th", { scope: "col", class: "c-num" }, "Failed"),
          h("th", { scope: "col", class: "c-time" }, "Last attempt"),
          charts ? h("th", { scope: "col", class: "c-chart", title: "Deliveries (up) and failed attempts (down) per minute" }, "Last hour") : null,
          h("th", { scope: "col", class: "c-actions" }, "Actions"))),
        h("tbody", {}, workflow.hooks.map((hook) => drawHook(hook, charts))))));
}

function drawHook(hook, charts) {
  const s = hook.state || {};
  const url = (hook.parameters && hook.parameters.url) || "";
  const stateCell = s.enabled === false
    ? h("span", { class: "badge state-failed", "data-field": "hook-state", title: s.disabled_at ? "disabled at " + s.disabled_at : null }, "disabled (410)")
    : s.consecutive_failures > 0
      ? h("span", { class: "badge state-pending", "data-field": "hook-state", title: s.consecutive_failures + " failed attempts in a row" }, "failing ×" + s.consecutive_failures)
      : h("span", { class: "badge state-delivered", "data-field": "hook-state" }, "enabled");
  const last = s.last_attempt_at === undefined
    ? h("span", { class: "muted" }, "—")
    : h("span", {}, when(s.last_attempt_at), " ", s.last_status !== undefined ? statusText(s.last_status) : null);
  return h("tr", { "data-hook": hook.id },
    h("th", { scope: "row", class: "c-id" }, h("code", {}, hook.id), h("div", { class: "muted small" }, hook.filter)),
    h("td", { class: "c-url" }, h("span", { class: "url", title: url }, url)),
    h("td", { class: "c-state" }, stateCell),
    h("td", { class: "c-num" }, String(s.pending ?? "—")),
    h("td", { class: "c-num" }, s.failed === undefined ? h("span", { class: "muted" }, "—") : String(s.failed)),
    h("td", { class: "c-time" }, last),
    charts ? h("td", { class: "c-chart" }, chart(hook.id)) : null,
    h("td", { class: "c-actions" },
      s.pending > 0 && s.enabled !== false
        ? h("button", { type: "button", "data-action": "hook-retry", "data-hook": hook.id, "data-focus": "hook-retry-" + hook.id,
            title: "Attempt its waiting delivery now" }, "Retry now")
        : null,
      s.enabled === false
        ? h("button", { type: "button", "data-action": "enable", "data-hook": hook.id, "data-focus": "enable-" + hook.id }, "Enable")
        : null,
      h("button", { type: "button", "data-action": "show-hook", "data-hook": hook.id, "data-focus": "show-" + hook.id,
        title: "List this hook's deliveries" }, "Deliveries")));
}

// Deliveries per minute of one hook over the last hour, as bars: delivered up, failed attempts
// down. Drawn by hand in SVG (presentation by CSS classes: the page's policy allows no inline
// style).
function chart(hookId) {
  const minutes = 60;
  const now = Math.floor(Date.now() / 60000);
  const delivered = new Array(minutes).fill(0);
  const failed = new Array(minutes).fill(0);
  for (const row of state.stats.per_minute) {
    if (row.hook !== hookId) continue;
    const age = now - Math.floor(new Date(row.minute).getTime() / 60000);
    if (age < 0 || age >= minutes) continue;
    delivered[minutes - 1 - age] += row.delivered || 0;
    failed[minutes - 1 - age] += row.failed_attempts || 0;
  }
  const top = Math.max(1, ...delivered, ...failed);
  const width = 120, height = 28, mid = 18, bar = width / minutes;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  const total = delivered.reduce((a, b) => a + b, 0);
  const totalFailed = failed.reduce((a, b) => a + b, 0);
  const label = total + " delivered, " + totalFailed + " failed attempts in the last hour";
  svg.setAttribute("viewBox", "0 0 " + width + " " + height);
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  svg.setAttribute("class", "chart");
  const title = document.createElementNS(ns, "title");
  title.textContent = label;
  svg.append(title);
  const line = document.createElementNS(ns, "line");
  for (const [k, v] of Object.entries({ x1: 0, x2: width, y1: mid, y2: mid, class: "axis" })) line.setAttribute(k, v);
  svg.append(line);
  for (let i = 0; i < minutes; i++) {
    for (const [value, cls, up] of [[delivered[i], "ok", true], [failed[i], "bad", false]]) {
      if (!value) continue;
      const size = Math.max(1, Math.round((value / top) * (up ? mid - 1 : height - mid - 1)));
      const rect = document.createElementNS(ns, "rect");
      rect.setAttribute("x", (i * bar).toFixed(2));
      rect.setAttribute("width", Math.max(1, bar - 0.4).toFixed(2));
      rect.setAttribute("y", up ? mid - size : mid);
      rect.setAttribute("height", size);
      rect.setAttribute("class", cls);
      svg.append(rect);
    }
  }
  return svg;
}

// The hook and workflow choices of the filters and of the recover form, kept as chosen.
function fillHookChoices() {
  const hooks = state.workflows.flatMap((w) => w.hooks.map((hook) => hook.id));
  const workflows = state.workflows.map((w) => w.workflow_id);
  const fill = (select, values, any) => {
    const chosen = select.value;
    const have = Array.from(select.options).map((o) => o.value);
    const want = (any ? [""] : []).concat(values);
    if (have.length === want.length && have.every((v, i) => v === want[i])) return;
    select.replaceChildren(...want.map((v) => h("option", { value: v }, v || "any")));
    if (want.includes(chosen)) select.value = chosen;
  };
  fill($("f-hook"), hooks, true);
  fill($("f-workflow"), workflows, true);
  fill($("recover-hook"), hooks, false);
}

// ---------------------------------------------------------------------------------------------
// Deliveries

async function loadDeliveries() {
  // A page examines a bounded number of deliveries, so a narrow filter may answer a short
  // page (even an empty one) with a cursor: read on, a few pages at most, to fill this one.
  const rows = [];
  let cursor = state.cursor;
  for (let read = 0; read < 5 && rows.length < PAGE; read++) {
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(state.filters)) if (value) query.set(name, value);
    query.set("limit", String(PAGE - rows.length));
    if (cursor) query.set("cursor", cursor);
    const body = await api("GET", "/v1/deliveries?" + query);
    rows.push(...body.deliveries);
    cursor = body.next_cursor || null;
    if (!cursor) break;
  }
  state.nextCursor = cursor;
  $("older").hidden = !state.nextCursor;
  $("newest").hidden = !state.cursor;
  const disabled = state.workflows.flatMap((w) => w.hooks).filter((h) => h.state && h.state.enabled === false).map((h) => h.id);
  redraw("deliveries", { rows, selected: state.selected, disabled }, () => drawDeliveries(rows));
}

// Whether a hook is enabled, as the last read of the workflows says (unknown: true).
function hookEnabled(id) {
  for (const workflow of state.workflows) {
    const hook = workflow.hooks.find((h) => h.id === id);
    if (hook) return !(hook.state && hook.state.enabled === false);
  }
  return true;
}

function deliveryActions(d, where) {
  return [
    // A disabled hook's deliveries wait for its "Enable", not for a retry (409).
    d.state === "pending" && hookEnabled(d.hook)
      ? h("button", { type: "button", "data-action": "retry", "data-id": d.id, "data-focus": where + "retry-" + d.id,
          title: "Attempt it now" }, "Retry now")
      : null,
    d.state === "failed"
      ? h("button", { type: "button", "data-action": "replay", "data-id": d.id, "data-focus": where + "replay-" + d.id,
          title: "Send it again, same webhook-id" }, "Replay")
      : null,
  ];
}

function drawDeliveries(rows) {
  if (rows.length === 0) return h("p", { class: "muted" }, "No deliveries match.");
  return h("table", { class: "deliveries-table" },
    h("caption", { class: "visually-hidden" }, "Deliveries, newest first"),
    h("thead", {}, h("tr", {},
      h("th", { scope: "col", class: "c-nid" }, "ID"),
      h("th", { scope: "col", class: "c-hook" }, "Hook"),
      h("th", { scope: "col", class: "c-state" }, "State"),
      h("th", { scope: "col", class: "c-num" }, "Tries"),
      h("th", { scope: "col", class: "c-status" }, "Last"),
      h("th", { scope: "col", class: "c-time" }, "Created"),
      h("th", { scope: "col", class: "c-time" }, "Next / done"),
      h("th", { scope: "col", class: "c-actions" }, "Actions"))),
    h("tbody", {}, rows.map((d) =>
      h("tr", { "data-delivery": d.id, class: d.id === state.selected ? "selected" : null },
        h("th", { scope: "row", class: "c-nid" }, String(d.id)),
        h("td", { class: "c-hook" }, h("code", {}, d.hook), h("div", { class: "muted small" }, d.workflow_id || "")),
        h("td", { class: "c-state" }, stateBadge(d.state)),
        h("td", { class: "c-num" }, String(d.attempts)),
        h("td", { class: "c-status" }, statusText(d.last_status)),
        h("td", { class: "c-time" }, when(d.created_at)),
        h("td", { class: "c-time" }, when(d.state === "pending" ? d.next_attempt_at : d.finished_at)),
        h("td", { class: "c-actions" },
          h("button", { type: "button", "data-action": "view", "data-id": d.id, "data-focus": "view-" + d.id,
            "aria-label": "View delivery " + d.id }, "View"),
          deliveryActions(d, "row-"))))));
}

// ---------------------------------------------------------------------------------------------
// One delivery

async function loadDetail() {
  const id = state.selected;
  if (id === null) return;
  let delivery;
  try {
    delivery = await api("GET", "/v1/deliveries/" + id);
  } catch (e) {
    if (e.status === 401) throw e;
    redraw("detail-body", { id, error: e.message }, () => h("p", { class: "error" }, "Delivery " + id + ": " + e.message));
    return;
  }
  if (!state.events.has(delivery.event)) {
    try {
      state.events.set(delivery.event, { body: (await api("GET", "/v1/events/" + delivery.event)).body });
    } catch (e) {
      if (e.status === 401) throw e;
      state.events.set(delivery.event, { error: e.message });
    }
  }
  if (state.selected !== id) return;
  const event = state.events.get(delivery.event);
  redraw("detail-body", { delivery, event, enabled: hookEnabled(delivery.hook) }, () => drawDetail(delivery, event));
}

function drawDetail(d, event) {
  // Two fields a row; a wide one has a row of its own.
  const field = (name, value, wide) => [h("dt", { class: wide ? "first" : null }, name), h("dd", { class: wide ? "wide" : null }, value)];
  const attempts = d.attempt_log || [];
  const actions = deliveryActions(d, "detail-").filter(Boolean);
  return [
    h("p", { class: "detail-title" }, "Delivery ", h("strong", {}, String(d.id)), " ", stateBadge(d.state)),
    h("dl", { class: "fields" },
      field("Hook", h("code", {}, d.hook)),
      field("Workflow", d.workflow_id || "—"),
      field("Event", String(d.event)),
      field("Created", when(d.created_at)),
      field("Attempts", String(d.attempts)),
      d.state === "pending" ? field("Next attempt", when(d.next_attempt_at)) : field("Finished", when(d.finished_at)),
      field("webhook-id", h("code", {}, d.webhook_id), true),
      d.failure ? field("Why", d.failure, true) : null),
    actions.length ? h("div", { class: "actions" }, actions) : null,
    h("h3", {}, "Attempts (" + attempts.length + ")"),
    attempts.length === 0 ? h("p", { class: "muted" }, "None yet.") :
    h("ol", { class: "attempts" }, attempts.map((a, i) =>
      h("li", { "data-attempt": i + 1 },
        h("div", { class: "attempt-head" },
          h("span", { class: "muted" }, "#" + (i + 1)), " ", when(a.at), " ",
          a.status !== null && a.status !== undefined ? statusText(a.status) : h("span", { class: "badge state-failed" }, "no answer"),
          " ", h("span", { class: "muted" }, Math.round(a.latency_ms) + " ms")),
        a.error ? h("div", { class: "error" }, a.error) : null,
        a.response_body === undefined || a.response_body === null ? null :
          h("details", { open: i === attempts.length - 1 },
            h("summary", {}, "Response body" + (a.response_body_truncated ? " (first 1 KiB)" : ""),
              h("span", { class: "muted" }, ": " + preview(a.response_body))),
            h("pre", {}, a.response_body + (a.response_body_truncated ? "\n…" : "")))))),
    h("h3", {}, "Event body"),
    event.error ? h("p", { class: "error" }, "Cannot show it: " + event.error)
      : event.body === null ? h("p", { class: "muted" }, "Pruned from the store.")
      : h("pre", { class: "event-body" }, JSON.stringify(event.body, null, 2)),
  ];
}

// The start of a text on one line, for a summary.
function preview(text) {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length > 60 ? line.slice(0, 59) + "…" : line;
}

function select(id) {
  state.selected = id;
  state.events.clear();
  state.rendered.delete("detail-body");
  state.rendered.delete("deliveries");
  $("detail-body").replaceChildren(h("p", { class: "muted" }, "Loading delivery " + id + "…"));
  $("detail-heading").focus();
  refresh();
}

// ---------------------------------------------------------------------------------------------
// Actions

async function act(button) {
  const action = button.getAttribute("data-action");
  const id = button.getAttribute("data-id");
  const hook = button.getAttribute("data-hook");
  if (action === "view") return select(Number(id));
  if (action === "show-hook") {
    $("f-hook").value = hook;
    $("f-workflow").value = "";
    readFilters();
    $("deliveries-heading").focus();
    return refresh();
  }
  button.disabled = true;
  try {
    if (action === "retry" || action === "replay") {
      const out = await api("POST", "/v1/deliveries/" + id + "/retry");
      notice((action === "replay" ? "Delivery " + id + " replayed" : "Delivery " + id + " is being attempted now") +
        ": " + out.state + ".", "ok");
    } else if (action === "hook-retry") {
      const out = await api("POST", "/v1/hooks/" + hook + "/retry");
      notice(hook + ": its waiting delivery is being attempted now (" + out.pending + " pending).", "ok");
    } else if (action === "enable") {
      await api("POST", "/v1/hooks/" + hook + "/enable");
      notice(hook + " enabled: its waiting deliveries go out again.", "ok");
    }
  } catch (e) {
    if (e.status !== 401) notice(describe(action, id || hook) + ": " + e.message);
  } finally {
    button.disabled = false;
  }
  refresh();
}

function describe(action, what) {
  return { retry: "Retry of delivery ", replay: "Replay of delivery ", "hook-retry": "Retry of ", enable: "Enabling " }[action] + what;
}

async function recover(event) {
  event.preventDefault();
  const hook = $("recover-hook").value;
  const since = toRfc3339($("recover-since").value);
  if (!hook || !since) return notice("Recover: choose a hook and a time.");
  try {
    const out = await api("POST", "/v1/hooks/" + encodeURIComponent(hook) + "/recover?since=" + encodeURIComponent(since));
    const ids = out.replayed || [];
    notice(hook + ": " + ids.length + " failed " + (ids.length === 1 ? "delivery" : "deliveries") + " since " + since +
      " pending again" + (ids.length ? " (" + ids.join(", ") + ")" : "") + ".", "ok");
  } catch (e) {
    if (e.status !== 401) notice("Recover " + hook + ": " + e.message);
  }
  refresh();
}

function readFilters() {
  const form = $("filters");
  const value = (name) => form.elements[name].value;
  state.filters = {
    workflow: value("workflow"),
    hook: value("hook"),
    state: value("state"),
    status: value("status"),
    since: toRfc3339(value("since")),
    until: toRfc3339(value("until")),
  };
  state.cursor = null;
}

// ---------------------------------------------------------------------------------------------
// Polling

async function refresh() {
  if (state.busy) {
    state.again = true;
    return;
  }
  if (state.waitingForToken) return;
  state.busy = true;
  try {
    await loadStats();
    await Promise.all([loadWorkflows(), loadDeliveries(), loadDetail()]);
    const at = new Date();
    liveStatus((state.paused ? "Paused" : "Live") + " · updated " + pad(at.getHours()) + ":" + pad(at.getMinutes()) + ":" + pad(at.getSeconds()));
  } catch (e) {
    if (e.status !== 401) liveStatus("Cannot update: " + e.message);
  } finally {
    state.busy = false;
  }
  if (state.again) {
    state.again = false;
    refresh();
  }
}

function schedule() {
  clearTimeout(state.timer);
  state.timer = setTimeout(async () => {
    if (!state.paused && !document.hidden) await refresh();
    schedule();
  }, POLL_MS);
}

function start() {
  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (button) act(button);
  });
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.token = $("token").value.trim();
    sessionStorage.setItem(TOKEN_KEY, state.token);
    $("token-form").hidden = true;
    state.waitingForToken = false;
    state.rendered.clear();
    $("notice").hidden = true;
    refresh();
  });
  $("token-cancel").addEventListener("click", () => {
    $("token-form").hidden = true;
    // Back to the token in use: updates go on (a 401 asks again).
    state.waitingForToken = false;
    refresh();
  });
  $("change-token").addEventListener("click", () => askForToken(null));
  $("pause").addEventListener("click", () => {
    state.paused = !state.paused;
    $("pause").textContent = state.paused ? "Resume updates" : "Pause updates";
    $("pause").setAttribute("aria-pressed", String(state.paused));
    liveStatus(state.paused ? "Paused" : "Live");
    if (!state.paused) refresh();
  });
  $("refresh").addEventListener("click", () => refresh());
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    readFilters();
    refresh();
  });
  $("filters").addEventListener("reset", () => setTimeout(() => {
    readFilters();
    refresh();
  }));
  $("older").addEventListener("click", () => {
    state.cursor = state.nextCursor;
    refresh();
  });
  $("newest").addEventListener("click", () => {
    state.cursor = null;
    refresh();
  });
  $("recover-form").addEventListener("submit", recover);
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) liveStatus("Updates paused while this tab is hidden");
    else refresh();
  });
  refresh();
  schedule();
}

start();
