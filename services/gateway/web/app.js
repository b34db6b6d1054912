// Wardrobe's page: photo -> answer -> Yes/No -> "My wardrobe". Plain JavaScript, no build step.
// It talks to the same /v1 API as any client; the browser's identity is an http-only session
// cookie (POST /v1/session), and every state-changing call sends the session's X-CSRF-Token.
"use strict";

const $ = (id) => document.getElementById(id);
const CSRF_HEADER = "X-CSRF-Token";
const SLOW_AFTER_MS = 8000;   // waiting longer than this: say the queue is busy
const WAIT_S = 20;            // ?wait= per request while the photo is being classified

const state = {
  csrf: null,
  taxonomy: null,      // name -> node (display, icon, parent, children, is_leaf)
  job: null,           // the classification on screen
  shown: null,         // the answer on screen (re-hedged for the slider's target)
  pickerAt: null,      // the taxonomy node whose children the "No" picker shows
  removing: null,      // the wardrobe item the remove dialog is about
};

// ---- talking to the gateway -------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status; this.code = code; this.retryAfter = retryAfter;
  }
}

async function api(method, path, body, retried = false) {
  const headers = { "Accept": "application/json" };
  if (method !== "GET") headers[CSRF_HEADER] = state.csrf || "new";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, credentials: "same-origin",
                                   body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, "unreachable", "Wardrobe cannot be reached.");
  }
  if (response.status === 403 && !retried) {          // a stale CSRF token: fetch it again once
    const err = await errorOf(response);
    if (err.code === "csrf_failed") { await ensureSession(); return api(method, path, body, true); }
    throw err;
  }
  if (!response.ok) throw await errorOf(response);
  return response.status === 204 ? null : response.json();
}

async function errorOf(response) {
  let code = "http_" + response.status, message = response.statusText;
  try {
    const body = await response.json();
    if (body && body.error) { code = body.error.code; message = body.error.message; }
  } catch (e) { /* not JSON: a proxy's page */ }
  return new ApiError(response.status, code, message, Number(response.headers.get("Retry-After")) || null);
}

// Upload with progress (fetch has no upload progress; XMLHttpRequest does).
function upload(file, accuracy, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/v1/classifications?wait=${WAIT_S}&accuracy=${accuracy}`);
    xhr.setRequestHeader(CSRF_HEADER, state.csrf || "");
    xhr.setRequestHeader("Accept", "application/json");
    xhr.responseType = "json";
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    xhr.upload.onload = () => onProgress(1);
    xhr.onerror = () => reject(new ApiError(0, "unreachable", "Wardrobe cannot be reached."));
    xhr.onload = () => {
      const body = xhr.response;
      if (xhr.status >= 200 && xhr.status < 300) return resolve(body);
      const err = body && body.error ? body.error : { code: "http_" + xhr.status, message: xhr.statusText };
      reject(new ApiError(xhr.status, err.code, err.message, Number(xhr.getResponseHeader("Retry-After")) || null));
    };
    const form = new FormData();
    form.append("photo", file, file.name || "photo.jpg");
    xhr.send(form);
  });
}

// ---- messages -----------------------------------------------------------------------------------
const PHOTO_PROBLEMS = {
  not_an_image: "That file is not a photo Wardrobe can read. Please choose a JPEG, PNG or WebP photo.",
  corrupt_image: "That photo seems damaged or incomplete. Please take or choose it again.",
  empty_photo: "That file is empty. Please take or choose the photo again.",
  photo_too_large: "That photo is too large. Please choose a smaller one (or a screenshot of it).",
  decompression_bomb: "That image has too many pixels to read. Please choose an ordinary photo.",
};

function explain(err) {
  if (err.status === 0) return "Wardrobe cannot be reached right now (the service may be down or your connection lost). Please try again in a moment.";
  if (PHOTO_PROBLEMS[err.code]) return PHOTO_PROBLEMS[err.code] + " (" + err.message + ")";
  if (err.code === "sessions_disabled") return "This Wardrobe service is set up for apps with API keys only: the web page is turned off here.";
  if (err.status === 401) return "Your session has ended, so this browser no longer opens your wardrobe.";
  if (err.status === 429) return `Too many requests just now. Please wait ${err.retryAfter || 60} seconds and try again.`;
  if (err.status === 503 || err.status === 502 || err.status === 504)
    return "Wardrobe is not ready right now (it may be starting or overloaded). Please try again in a moment.";
  return `Something went wrong (${err.code}): ${err.message}`;
}

function setStatus(text, isError = false) {
  const box = $("status");
  box.textContent = text;
  box.classList.toggle("error", isError);
}

function showBanner(text, actionLabel, action) {
  $("banner-text").textContent = text;
  const button = $("banner-action");
  button.hidden = !actionLabel;
  if (actionLabel) { button.textContent = actionLabel; button.onclick = action; }
  $("banner").hidden = false;
}

function hideBanner() { $("banner").hidden = true; }

function handle(err, where) {
  if (err.status === 401) {
    showBanner(explain(err) + " Start a new session to carry on with an empty wardrobe.",
               "Start a new session", async () => {
                 // the banner goes only once the new session exists: a photo chosen the moment it is
                 // gone is then sent with the new cookie and CSRF token, never in between
                 $("banner-action").disabled = true;
                 try { await ensureSession(true); } catch (e) { handle(e); return; } finally { $("banner-action").disabled = false; }
                 hideBanner();
                 await loadWardrobe();
               });
    return;
  }
  if (where === "work") setStatus(explain(err), true);
  else showBanner(explain(err), "Try again", () => { hideBanner(); start(); });
}

// ---- session ------------------------------------------------------------------------------------
async function ensureSession(startNew = false) {
  if (!startNew) {
    try {
      const s = await api("GET", "/v1/session");
      state.csrf = s.csrf_token;
      localStorage.setItem("wardrobe.client", s.client_id);
      return;
    } catch (err) {
      if (err.status !== 401) throw err;
    }
  }
  const had = localStorage.getItem("wardrobe.client");
  state.csrf = null;
  const s = await api("POST", "/v1/session");
  state.csrf = s.csrf_token;
  localStorage.setItem("wardrobe.client", s.client_id);
  if (had && had !== s.client_id && !startNew)
    showBanner("Your earlier session ended (it expired, or this browser's cookies were cleared): this is a new, empty wardrobe.");
}

// ---- taxonomy -----------------------------------------------------------------------------------
async function loadTaxonomy() {
  const t = await api("GET", "/v1/taxonomy");
  state.taxonomy = Object.fromEntries(t.nodes.map((n) => [n.name, n]));
}

const node = (name) => state.taxonomy[name];
const label = (name) => `${node(name).icon} ${node(name).display}`;

function leavesUnder(name) {
  const n = node(name);
  return n.is_leaf ? [name] : n.children.flatMap(leavesUnder);
}

// ---- adding a garment ---------------------------------------------------------------------------
function pct(p) { return `${Math.round(p * 100)} %`; }

function resetWork() {
  for (const id of ["answer", "refine", "correct", "done"]) $(id).hidden = true;
  $("ask").hidden = false;
  $("progress-box").hidden = false;
  $("progress").value = 0;
  setStatus("");
}

async function onPhoto(file) {
  if (!file) return;
  state.job = null;
  resetWork();
  $("work").hidden = false;
  const preview = $("preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  $("progress-label").textContent = "Uploading…";
  const accuracy = $("accuracy").value;
  let slowTimer = null;
  try {
    let job = await upload(file, accuracy, (f) => {
      $("progress").value = Math.round(f * 100);
      if (f >= 1 && slowTimer === null) {   // upload.onprogress and upload.onload may both say 100 %
        $("progress-label").textContent = "Uploaded. Looking at it…";
        $("progress").removeAttribute("value");   // indeterminate while the model works
        slowTimer = setTimeout(() => setStatus("Lots of photos are waiting in the queue; yours is in line and will be answered."), SLOW_AFTER_MS);
      }
    });
    while (job.status === "pending" || job.status === "running") {   // a slow queue: keep waiting
      setStatus("Lots of photos are waiting in the queue; yours is in line and will be answered.");
      job = await api("GET", `/v1/classifications/${job.id}?wait=${WAIT_S}`);
    }
    clearTimeout(slowTimer);
    $("progress-box").hidden = true;
    if (job.status === "failed") {
      setStatus(`Wardrobe could not classify this photo: ${job.error ? job.error.message : "unknown error"}. Please try another photo.`, true);
      return;
    }
    setStatus("");
    state.job = job;
    if (job.accuracy_target !== Number(accuracy)) await rehedge(); else showAnswer(job);
    $("answer-title").focus();
  } catch (err) {
    clearTimeout(slowTimer);
    $("progress-box").hidden = true;
    handle(err, "work");
  } finally {
    $("photo").value = "";   // choosing the same file again is a new upload
  }
}

function showAnswer(job) {
  state.shown = job.answer;
  const a = job.answer;
  $("answer-icon").textContent = a.node.icon;
  $("answer-text").textContent = a.node.display;
  $("answer-sure").textContent = `${pct(a.node.probability)} likely, for this photo`;
  $("answer-promise").textContent = `Set to be right at least ${pct(a.accuracy_target)} of the time`;
  const path = a.path.filter((p) => p.name !== "").map((p) => p.display).reverse();
  $("answer-path").textContent = path.length > 1 ? path.join(" › ") : "";
  const list = $("alternatives");
  list.replaceChildren();
  for (const alt of a.alternatives.slice(0, 5)) {
    const li = document.createElement("li");
    li.innerHTML = `<span aria-hidden="true"></span><span class="alt-name"></span><span class="pct"></span><span class="bar" aria-hidden="true"><span></span></span>`;
    li.children[0].textContent = alt.icon;
    li.children[1].textContent = alt.display;
    li.children[2].textContent = pct(alt.probability);
    li.querySelector(".bar span").style.width = pct(alt.probability).replace(" ", "");
    li.setAttribute("aria-label", `${alt.display}: ${pct(alt.probability)}`);
    list.append(li);
  }
  $("alternatives-box").hidden = a.alternatives.length === 0;
  $("answer").hidden = false;
}

let rehedgeTimer = null;
async function rehedge() {
  if (!state.job || state.job.status !== "done") return;
  const accuracy = $("accuracy").value;
  try {
    const job = await api("GET", `/v1/classifications/${state.job.id}?accuracy=${accuracy}`);
    if (job.id === (state.job && state.job.id)) showAnswer(job);
  } catch (err) { handle(err, "work"); }
}

function onAccuracy() {
  const text = pct(Number($("accuracy").value));
  $("accuracy-value").textContent = text;
  $("accuracy").setAttribute("aria-valuetext", text);
  clearTimeout(rehedgeTimer);
  rehedgeTimer = setTimeout(rehedge, 120);
}

function optionButton(text, onClick, more = false) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "button option";
  b.textContent = text;
  if (more) {
    const m = document.createElement("span");
    m.className = "more"; m.textContent = "›"; m.setAttribute("aria-hidden", "true");
    b.append(m);
    b.setAttribute("aria-label", `${text}: show the kinds of it`);
  }
  b.addEventListener("click", onClick);
  return b;
}

function onYes() {
  const answered = state.shown.node.name;
  if (node(answered).is_leaf) return verdict(answered);
  // A hedged answer: one more tap makes it a label the trainer can learn from.
  $("ask").hidden = true;
  $("refine-title").textContent = `Great. Which ${node(answered).display.toLowerCase()} exactly?`;
  const box = $("refine-options");
  box.replaceChildren();
  const probs = Object.fromEntries(state.job.top_predictions.map((p) => [p.name, p.probability]));
  const leaves = leavesUnder(answered).sort((x, y) => (probs[y] || 0) - (probs[x] || 0));
  for (const leaf of leaves) box.append(optionButton(label(leaf), () => verdict(leaf)));
  if (answered !== "")   // the root says nothing: feedback must name a class or a group of them
    box.append(optionButton(`I can't say: just ${node(answered).display.toLowerCase()}`, () => verdict(answered)));
  $("refine").hidden = false;
  box.querySelector("button").focus();
}

function onNo() {
  $("ask").hidden = true;
  const answered = node(state.shown.node.name);
  // Start below the answer (it may be right but too vague); for a leaf, among its siblings.
  openPicker(answered.is_leaf ? answered.parent : answered.name);
  $("correct").hidden = false;
}

function openPicker(at) {
  state.pickerAt = at;
  const here = node(at);
  const box = $("correct-options");
  box.replaceChildren();
  $("correct-title").textContent = at === "" ? "What is it?" : `What is it? (${here.display.toLowerCase()})`;
  for (const child of here.children) {
    const c = node(child);
    if (child === state.shown.node.name && c.is_leaf) continue;   // not what was just said to be wrong
    box.append(c.is_leaf ? optionButton(label(child), () => verdict(child))
                         : optionButton(label(child), () => openPicker(child), true));
  }
  if (at !== "" && at !== state.shown.node.name)
    box.append(optionButton(`Other ${here.display.toLowerCase()}`, () => verdict(at)));   // "at least this"
  const up = $("correct-up");
  up.hidden = at === "";
  if (at !== "") {
    const parent = node(here.parent);
    up.textContent = here.parent === "" ? `Not ${here.display.toLowerCase()} at all: show everything`
                                        : `Not ${here.display.toLowerCase()}: show all ${parent.display.toLowerCase()}`;
  }
  const first = box.querySelector("button");
  if (first) first.focus();
}

async function verdict(name) {
  const buttons = document.querySelectorAll("#answer button");
  buttons.forEach((b) => (b.disabled = true));
  try {
    await api("POST", `/v1/classifications/${state.job.id}/feedback`, { node: name });
    for (const id of ["ask", "refine", "correct"]) $(id).hidden = true;
    $("done-text").textContent = `Saved to your wardrobe as ${label(name)}.`;
    $("done").hidden = false;
    $("done-text").focus();
    loadWardrobe();
  } catch (err) {
    handle(err, "work");
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}

// ---- my wardrobe --------------------------------------------------------------------------------
function categoryOf(name) {
  let n = node(name);
  while (n && n.depth > 2) n = node(n.parent);
  return n ? n.name : name;
}

async function loadWardrobe() {
  let wardrobe;
  try {
    wardrobe = await api("GET", "/v1/wardrobe");
  } catch (err) { handle(err, "wardrobe"); return; }
  const items = wardrobe.items.filter((i) => i.status === "done" && i.label);
  $("count").textContent = items.length ? String(items.length) : "";
  $("wardrobe-empty").hidden = items.length > 0;
  const groups = new Map();
  for (const item of items) {
    const cat = node(item.label.name) ? categoryOf(item.label.name) : item.label.name;
    if (!groups.has(cat)) groups.set(cat, []);
    groups.get(cat).push(item);
  }
  const order = Object.keys(state.taxonomy);   // the taxonomy's order: tops before shoes
  const box = $("groups");
  box.replaceChildren();
  for (const cat of [...groups.keys()].sort((a, b) => order.indexOf(a) - order.indexOf(b))) {
    const section = document.createElement("section");
    section.className = "group";
    const h = document.createElement("h3");
    const n = node(cat);
    h.textContent = n ? `${n.icon} ${n.display} (${groups.get(cat).length})` : cat;
    section.append(h);
    const ul = document.createElement("ul");
    ul.className = "grid";
    for (const item of groups.get(cat)) ul.append(wardrobeItem(item));
    section.append(ul);
    box.append(section);
  }
}

function wardrobeItem(item) {
  const li = document.createElement("li");
  li.className = "item";
  li.dataset.id = item.id;
  const img = document.createElement("img");
  img.src = item.thumbnail_url;
  img.alt = `Photo of your ${item.label.display.toLowerCase()}`;
  img.loading = "lazy";
  const meta = document.createElement("div");
  meta.className = "meta";
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = `${item.label.icon} ${item.label.display}`;
  const badge = document.createElement("span");
  badge.className = `badge ${item.verdict || ""}`;
  badge.textContent = { confirmed: "confirmed by you", corrected: "corrected by you" }[item.verdict] || "not confirmed yet";
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "button small quiet remove";
  remove.textContent = "Remove";
  remove.setAttribute("aria-label", `Remove ${item.label.display}`);
  remove.addEventListener("click", () => askRemove(item));
  meta.append(name, badge, remove);
  li.append(img, meta);
  return li;
}

function askRemove(item) {
  state.removing = item;
  $("remove-what").textContent = `${item.label.icon} ${item.label.display}`;
  $("remove-keep").checked = false;
  $("remove-dialog").showModal();
}

async function onRemoveClosed() {
  const item = state.removing;
  state.removing = null;
  if (!item || $("remove-dialog").returnValue !== "remove") return;
  const keep = $("remove-keep").checked;
  try {
    await api("DELETE", `/v1/classifications/${item.id}?keep_for_training=${keep}`);
    showBanner(keep ? `Removed ${item.label.display} from your wardrobe; its photo and your answer are kept for training.`
                    : `Removed ${item.label.display}: its photo and everything about it are deleted.`);
    await loadWardrobe();
  } catch (err) { handle(err, "wardrobe"); }
}

// ---- layout: tabs on a phone, two columns on a desktop ---------------------------------------------
function showTab(which) {
  for (const [tab, panel] of [["tab-add", "add"], ["tab-wardrobe", "wardrobe"]]) {
    const on = panel === which;
    $(tab).toggleAttribute("aria-current", false);
    if (on) $(tab).setAttribute("aria-current", "page");
    $(panel).classList.toggle("is-inactive", !on);
  }
}

// ---- start --------------------------------------------------------------------------------------
async function start() {
  try {
    await ensureSession();
    await loadTaxonomy();
    await loadWardrobe();
    document.body.dataset.ready = "true";
  } catch (err) { handle(err, "start"); }
}

document.addEventListener("DOMContentLoaded", () => {
  $("photo").addEventListener("change", (e) => onPhoto(e.target.files[0]));
  $("accuracy").addEventListener("input", onAccuracy);
  $("yes").addEventListener("click", onYes);
  $("no").addEventListener("click", onNo);
  $("correct-up").addEventListener("click", () => openPicker(node(state.pickerAt).parent));
  $("correct-cancel").addEventListener("click", () => { $("correct").hidden = true; $("ask").hidden = false; $("no").focus(); });
  $("again").addEventListener("click", () => { $("work").hidden = true; $("photo").focus(); });
  $("see-wardrobe").addEventListener("click", () => { showTab("wardrobe"); $("wardrobe-title").focus(); });
  $("tab-add").addEventListener("click", () => showTab("add"));
  $("tab-wardrobe").addEventListener("click", () => showTab("wardrobe"));
  $("remove-dialog").addEventListener("close", onRemoveClosed);
  $("wardrobe-title").tabIndex = -1;
  showTab("add");
  start();
});
