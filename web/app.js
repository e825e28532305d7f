// The demo client of the rtrec API: signs in as a demo user (a token from the local stack), shows the
// recommendations with their reasons, sends `click` and `view` events with the answer's
// recommendation_id when an item is opened, waits until the user's state has folded them and shows the
// next list and the interests. Plain browser JavaScript: no build step, nothing loaded from elsewhere.
"use strict";

const LIST_SIZE = 10;
const TOP_INTERESTS = 6;
// Events reach the state through the stream (the mapping's batching window, 1 s in the template).
const FOLD_TIMEOUT_MS = 20000;
// Under the per-user request rate of the recommendation routes (5 per second, burst 20).
const POLL_INTERVAL_MS = 300;

const REASONS = {
  model: "picked by the model for you",
  explore: "exploration: the model is unsure here, and your answer teaches it",
  popular: "popular with everyone",
  cold_start: "popular in the genres you like",
  promoted: "promoted",
  similar: "similar to what you chose",
};

class ApiError extends Error {
  constructor(status, body) {
    super(`HTTP ${status}: ${(body && body.message) || "request failed"}`);
    this.status = status;
    this.body = body;
  }
}

const session = { user: null, token: null, titles: {}, answer: null, interests: null };
const byId = (id) => document.getElementById(id);
const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function setState(name) {
  const app = byId("app");
  app.dataset.state = name;
  app.setAttribute("aria-busy", String(name === "loading" || name === "waiting"));
}

function say(text) {
  byId("status").textContent = text;
}

function fail(error) {
  setState(session.token ? "error" : "signed-out");
  say(error.status === 401 ? "Your token was refused or expired: sign in again." : `Something went wrong: ${error.message}`);
  setItemsEnabled(true);
}

// One JSON call; the same code works against API Gateway with a Cognito access token.
async function request(method, path, body) {
  const headers = {};
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  for (let attempt = 1; ; attempt += 1) {
    const response = await fetch(path, init);
    if (response.status === 429 && attempt < 4) {
      // the per-user limit: wait as long as the answer says, then try again
      await delay(1000 * (Number(response.headers.get("Retry-After")) || 1));
      continue;
    }
    const text = await response.text();
    const payload = text ? JSON.parse(text) : null;
    if (!response.ok) throw new ApiError(response.status, payload);
    return payload;
  }
}

function newEventId() {
  if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 12)}`;
}

function titleOf(itemId) {
  return session.titles[itemId] || `Item ${itemId}`;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function setItemsEnabled(enabled) {
  for (const button of byId("recommendations").querySelectorAll("button")) button.disabled = !enabled;
}

function renderAnswer(answer) {
  byId("answer").hidden = false;
  const variant = answer.variant;
  byId("answer-variant-row").hidden = variant === undefined || variant === null;
  byId("answer-variant").textContent = variant == null ? "" : String(variant);
  byId("answer-model-version").textContent = answer.model_version || "";
  byId("answer-source").textContent = answer.degraded ? `${answer.source} (degraded)` : answer.source;
  byId("answer-recommendation-id").textContent = answer.recommendation_id;
}

// `previous`: the list before the click, to mark what is new.
function renderList(answer, previous) {
  const before = new Set(previous ? previous.items.map((item) => item.item_id) : []);
  const list = byId("recommendations");
  list.dataset.recommendationId = answer.recommendation_id;
  if (answer.variant != null) list.dataset.variant = String(answer.variant);
  else delete list.dataset.variant;
  const rows = answer.items.map((item, index) => {
    const position = index + 1;
    const row = element("li", "item");
    row.dataset.itemId = item.item_id;
    row.dataset.position = String(position);
    row.dataset.reason = item.reason;
    const isNew = previous !== null && !before.has(item.item_id);
    row.dataset.new = String(isNew);
    const button = element("button", "item-button");
    button.type = "button";
    button.append(element("span", "item-title", titleOf(item.item_id)));
    const categories = (item.categories || []).join(" · ");
    if (categories) button.append(element("span", "item-categories", categories));
    const reason = element("span", `reason reason-${item.reason}`, item.reason);
    reason.title = REASONS[item.reason] || item.reason;
    button.append(reason);
    if (isNew) button.append(element("span", "badge-new", "new"));
    button.setAttribute(
      "aria-label",
      `${position}. ${titleOf(item.item_id)}${categories ? `, ${categories}` : ""}; ` +
        `reason: ${REASONS[item.reason] || item.reason}${isNew ? "; new in this list" : ""}`,
    );
    button.addEventListener("click", () => openItem(item, position));
    row.append(button);
    return row;
  });
  list.replaceChildren(...rows);
  renderAnswer(answer);
  session.answer = answer;
}

function renderInterests(answer) {
  const entries = Object.entries(answer.interests || {})
    .sort((a, b) => b[1] - a[1])
    .slice(0, TOP_INTERESTS);
  byId("interests-source").textContent =
    answer.source === "model"
      ? "Predicted by the model from your history."
      : `From ${answer.source === "state" ? "your recent events" : "what is popular"} (source: ${answer.source}).`;
  byId("interests").replaceChildren(
    ...entries.map(([genre, share]) => {
      const row = element("li", "interest");
      row.dataset.genre = genre;
      const percent = `${Math.round(share * 100)}%`;
      row.append(element("span", "interest-genre", genre));
      const bar = element("span", "interest-bar");
      bar.setAttribute("aria-hidden", "true");
      const fill = element("span", "interest-fill");
      fill.style.width = `${Math.min(100, share * 100).toFixed(1)}%`;
      bar.append(fill);
      row.append(bar, element("span", "interest-share", percent));
      return row;
    }),
  );
  session.interests = answer;
}

function logEvents(events, result) {
  const log = byId("events");
  const rejected = new Set((result.rejected || []).map((entry) => entry.index));
  events.forEach((event, index) => {
    const row = element("li", "event");
    row.dataset.type = event.type;
    row.dataset.itemId = event.item_id;
    row.dataset.accepted = String(!rejected.has(index));
    row.textContent =
      `${event.type} ${titleOf(event.item_id)} (recommendation ${event.recommendation_id.slice(0, 8)}…)` +
      (rejected.has(index) ? ": rejected" : ": accepted");
    log.prepend(row);
  });
  while (log.children.length > 12) log.lastElementChild.remove();
}

// The interests answer changes as soon as the state holds the new events (the model reads the history):
// polling it, rather than the recommendations, records no impressions of lists nobody saw.
async function waitForFold(before, started) {
  while (performance.now() - started < FOLD_TIMEOUT_MS) {
    const interests = await request("GET", "/v1/interests");
    if (JSON.stringify([interests.source, interests.interests]) !== before) return interests;
    await delay(POLL_INTERVAL_MS);
  }
  return null;
}

async function openItem(item, position) {
  if (byId("app").dataset.state !== "ready") return;
  const shown = session.answer;
  const title = titleOf(item.item_id);
  setState("waiting");
  setItemsEnabled(false);
  const before = JSON.stringify([session.interests.source, session.interests.interests]);
  const timestamp = new Date().toISOString();
  const context = { position: String(position), surface: "web-demo" };
  const events = ["click", "view"].map((type) => ({
    event_id: newEventId(),
    item_id: item.item_id,
    type,
    timestamp,
    recommendation_id: shown.recommendation_id,
    context,
  }));
  try {
    say(`Sending click and view on ${title}…`);
    const result = await request("POST", "/v1/events", { events });
    logEvents(events, result);
    if (!result.accepted) throw new Error(`the events were rejected: ${JSON.stringify(result.rejected)}`);
    const started = performance.now();
    say(`Waiting until your state holds the click on ${title}…`);
    const folded = await waitForFold(before, started);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const [answer, interests] = await Promise.all([
      request("GET", `/v1/recommendations?k=${LIST_SIZE}`),
      folded ? Promise.resolve(folded) : request("GET", "/v1/interests"),
    ]);
    renderInterests(interests);
    renderList(answer, shown);
    const fresh = answer.items.filter((entry) => !shown.items.some((old) => old.item_id === entry.item_id));
    setState("ready");
    say(
      folded
        ? `Your click on ${title} reached your state after ${seconds} s: ${fresh.length} new items in the list.`
        : `Your click on ${title} did not show in your state within ${FOLD_TIMEOUT_MS / 1000} s; the list was asked again.`,
    );
  } catch (error) {
    fail(error);
  }
}

async function signIn(event) {
  event.preventDefault();
  const user = byId("user").value.trim();
  setState("loading");
  say(`Signing in as ${user}…`);
  try {
    session.token = null;
    const signedIn = await request("POST", "/local/token", { user });
    session.user = signedIn.user;
    session.token = signedIn.token;
    const signedInAs = byId("signed-in-as");
    signedInAs.textContent = `Signed in as ${signedIn.user}`;
    signedInAs.hidden = false;
    if (Object.keys(session.titles).length === 0) session.titles = await request("GET", "/local/titles");
    const [answer, interests] = await Promise.all([
      request("GET", `/v1/recommendations?k=${LIST_SIZE}`),
      request("GET", "/v1/interests"),
    ]);
    renderInterests(interests);
    renderList(answer, null);
    byId("events").replaceChildren();
    setState("ready");
    say(`Signed in as ${signedIn.user}: ${answer.items.length} recommendations (source: ${answer.source}).`);
  } catch (error) {
    fail(error);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  byId("sign-in").addEventListener("submit", signIn);
});
