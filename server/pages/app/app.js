// The grid worker's field app: enrol, my grid, a household's file, visits, hazards with photos,
// requests, today's check-in exceptions. Offline first: every edit goes to the phone's own
// replica (IndexedDB) and syncs when the network allows. See docs/app.md.

import { IndexedDBStore, Replica } from "/app/sdk/index.js";
import { LANGUAGES, currentLanguage, label, setLanguage, t } from "/app/i18n.js";
import { LiveUpdates } from "/app/live.js";

const ORIGIN = location.origin;
const DEVICE_KEY = "gridsync.device";
const ME_KEY = "gridsync.me";
const NO_SIGNAL_KEY = "gridsync.no-signal";
const LIST_LIMIT = 80;
const PHOTO_EDGE = 1600;

// The request loop (docs/domain.md); a handler moves dispatched requests to accepted or done only.
const REQUEST_MOVES = {
  "": ["submitted"],
  submitted: ["dispatched", "cancelled"],
  dispatched: ["accepted", "cancelled"],
  accepted: ["done", "cancelled"],
  done: ["rated", "reopened"],
  rated: ["reopened"],
  cancelled: ["reopened"],
  reopened: ["dispatched", "cancelled"],
};
const HANDLER_MOVES = new Set(["accepted", "done"]);
const PURPOSES = ["routine", "elderly-care", "hazard-check", "request-follow-up", "registry-update", "other"];
const HAZARD_CATEGORIES = ["fire", "gas", "electrical", "structural", "water-leak", "road-collapse", "other"];
const SEVERITIES = ["low", "medium", "high", "critical"];
const REQUEST_CATEGORIES = ["repair", "plumbing", "electrical", "cleaning", "elderly-care", "dispute", "paperwork", "other"];

const app = {
  device: JSON.parse(localStorage.getItem(DEVICE_KEY) || "null"),
  me: JSON.parse(localStorage.getItem(ME_KEY) || "null"),
  replica: null,
  live: null,
  liveMode: "polling",
  syncing: false,
  syncAgain: false,
  lastError: null,
  editTimer: null,
};

// ------------------------------------------------------------------ DOM helpers

function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "class") element.className = value;
    else element.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

const $ = (selector) => document.querySelector(selector);

// An element's children replaced by these, leaving out the parts a condition left empty.
function fill(element, ...children) {
  element.replaceChildren(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
}

function newId(prefix) {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  const random = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${prefix}-${Date.now().toString(36)}-${random}`;
}

// RFC 3339 with the phone's own offset, as the server wants a Moment.
function nowMoment() {
  const now = new Date();
  const offset = -now.getTimezoneOffset();
  const pad = (n) => String(Math.abs(Math.trunc(n))).padStart(2, "0");
  const local = new Date(now.getTime() + offset * 60_000).toISOString().slice(0, 19);
  return `${local}${offset >= 0 ? "+" : "-"}${pad(offset / 60)}:${pad(offset % 60)}`;
}

function today() {
  return nowMoment().slice(0, 10);
}

function when(ms) {
  if (!ms) return t("never");
  const date = new Date(ms);
  const sameDay = date.toDateString() === new Date().toDateString();
  const time = date.toLocaleTimeString(currentLanguage() === "zh" ? "zh-CN" : "en-GB", { hour: "2-digit", minute: "2-digit" });
  return sameDay ? time : `${date.toISOString().slice(5, 10)} ${time}`;
}

function shortMoment(value) {
  return typeof value === "string" ? value.slice(0, 16).replace("T", " ") : "";
}

function show(value) {
  if (value === null || value === undefined || value === "") return "—";
  if (typeof value === "boolean") return value ? t("yes") : t("no");
  if (Array.isArray(value)) return value.length ? value.join("、") : "—";
  return String(value);
}

function toast(message) {
  const box = $("#toast");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => {
    box.hidden = true;
  }, 2500);
}

// ------------------------------------------------------------------ the status bar

function renderStatus() {
  const online = navigator.onLine && app.replica?.status().online !== false;
  const net = $("#net");
  net.dataset.state = online ? "online" : "offline";
  net.textContent = online ? `${t("online")} · ${t(app.liveMode === "live" ? "live" : "polling")}` : t("offline");
  const status = app.replica?.status();
  // Counted in records, as a worker thinks of them (a visit is several changes).
  const waiting = app.replica ? new Set(app.replica.pending().map((change) => `${change.collection}/${change.record_id}`)).size : 0;
  $("#waiting").textContent = t("waiting", waiting);
  $("#waiting").dataset.count = String(waiting);
  $("#uploads").textContent = status?.uploads ? t("uploads", status.uploads) : "";
  $("#uploads").hidden = !status?.uploads;
  $("#last").textContent = t("lastSync", when(status?.lastSyncAt));
  $("#waiting").hidden = !app.replica;
  $("#last").hidden = !app.replica;
  $("#sync-now").textContent = app.syncing ? t("syncing") : t("syncNow");
  $("#sync-now").disabled = !app.replica;
  for (const tab of document.querySelectorAll("#tabs a")) {
    tab.textContent = t(tab.dataset.word);
    tab.classList.toggle("here", location.hash.startsWith(tab.getAttribute("href")));
  }
  $("#tabs").hidden = !app.replica;
}

// ------------------------------------------------------------------ sync

function cursorSeq() {
  const cursor = app.replica?.status().cursor;
  return cursor ? Number(cursor.split(".")[1]) || 0 : 0;
}

async function syncNow() {
  if (!app.replica) return;
  if (app.syncing) {
    app.syncAgain = true;
    return;
  }
  app.syncing = true;
  renderStatus();
  try {
    do {
      app.syncAgain = false;
      const report = await app.replica.sync();
      app.lastError = null;
      if (report.rejected.length) toast(`${t("rejectedList")}: ${report.rejected.length}`);
      if (report.pulled || report.pushed || report.resynced) route();
    } while (app.syncAgain);
  } catch (error) {
    app.lastError = error?.code ?? "offline";
    if (error?.status === 401) unlinked();
  } finally {
    app.syncing = false;
    renderStatus();
  }
}

// The server no longer knows the token (an admin unlinked the phone, or it expired): stop
// trying, and say so; what is on the phone stays until the worker sets it up again.
function unlinked() {
  app.live?.stop();
  const banner = $("#unlinked");
  banner.hidden = false;
  banner.replaceChildren(h("strong", {}, t("unlinked")), h("button", { type: "button", class: "secondary", id: "set-up-again", onclick: relink }, t("setUpAgain")));
}

// A new code for this phone: the records and the changes still waiting stay, and go up with
// the new token.
function relink() {
  localStorage.removeItem(DEVICE_KEY);
  localStorage.removeItem(ME_KEY);
  location.replace("/app/");
}

function forget() {
  app.live?.stop();
  localStorage.removeItem(DEVICE_KEY);
  localStorage.removeItem(ME_KEY);
  localStorage.removeItem(NO_SIGNAL_KEY);
  indexedDB.deleteDatabase("gridsync-app");
  location.replace("/app/");
}

// An edit syncs soon after, once the worker pauses.
function edited() {
  renderStatus();
  clearTimeout(app.editTimer);
  app.editTimer = setTimeout(() => navigator.onLine && syncNow(), 800);
}

async function loadMe() {
  try {
    const reply = await fetch(`${ORIGIN}/v1/me`, { headers: { authorization: `Bearer ${app.device.token}` } });
    if (reply.ok) {
      app.me = await reply.json();
      localStorage.setItem(ME_KEY, JSON.stringify(app.me));
    }
  } catch {
    // Offline: the last answer stays.
  }
}

async function openReplica() {
  app.replica = await Replica.open({
    url: ORIGIN,
    token: app.device.token,
    replicaId: app.device.replicaId,
    store: new IndexedDBStore("gridsync-app"),
    // The browser's fetch, called as a plain function (never as a method of the replica).
    fetch: (input, init) => fetch(input, init),
  });
  // Whatever changed the records (an edit here, a sync), the screen follows.
  app.replica.onChange(() => refresh());
  app.live = new LiveUpdates({
    url: ORIGIN,
    token: app.device.token,
    onHead: (seq) => {
      if (seq > cursorSeq()) syncNow();
    },
    onMode: (mode) => {
      app.liveMode = mode;
      renderStatus();
      if (mode === "live") syncNow();
    },
  });
  app.live.start();
  loadMe();
}

// ------------------------------------------------------------------ screens

function screen(title, ...content) {
  const main = $("#view");
  fill(main, h("h1", {}, title), content);
  main.scrollTop = 0;
}

function back(href) {
  return h("a", { class: "back", href }, `‹ ${t("back")}`);
}

function enrolScreen() {
  const error = h("p", { class: "error", id: "enrol-error", hidden: true });
  const code = h("input", { id: "code", name: "code", autocomplete: "one-time-code", required: true, autocapitalize: "characters" });
  const name = h("input", { id: "device-name", name: "name", placeholder: t("deviceNameHint"), required: true });
  const video = h("video", { id: "scanner", hidden: true, playsinline: true, muted: true });
  const scan = "BarcodeDetector" in window && navigator.mediaDevices ? h("button", { type: "button", class: "secondary", id: "scan", onclick: () => scanCode(video, code) }, t("scan")) : null;
  const form = h(
    "form",
    {
      id: "enrol",
      onsubmit: async (event) => {
        event.preventDefault();
        error.hidden = true;
        if (!navigator.onLine) {
          error.textContent = t("enrolOffline");
          error.hidden = false;
          return;
        }
        try {
          await enrol(code.value.trim(), name.value.trim());
        } catch (failure) {
          error.textContent = t("enrolFailed") + (failure.message || failure);
          error.hidden = false;
        }
      },
    },
    h("p", { class: "help" }, t("enrolHelp")),
    h("label", { for: "code" }, t("code")),
    h("div", { class: "row" }, code, scan),
    video,
    h("label", { for: "device-name" }, t("deviceName")),
    name,
    h("button", { type: "submit", class: "primary" }, t("enrol")),
    error,
  );
  screen(t("enrolTitle"), form, languageSwitch());
}

async function scanCode(video, input) {
  if (video.srcObject) {
    video.srcObject.getTracks().forEach((track) => track.stop());
    video.srcObject = null;
    video.hidden = true;
    return;
  }
  const detector = new window.BarcodeDetector({ formats: ["qr_code"] });
  video.srcObject = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
  video.hidden = false;
  await video.play();
  while (video.srcObject) {
    const [found] = await detector.detect(video).catch(() => []);
    if (found) {
      // A QR code holds the bare code, or a link to /app/#/enrol?code=...
      const match = /code=([^&]+)/.exec(found.rawValue);
      input.value = decodeURIComponent(match ? match[1] : found.rawValue);
      return scanCode(video, input);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

async function enrol(code, name) {
  const replicaId = newId("app");
  const reply = await fetch(`${ORIGIN}/v1/enrol`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ code, name, replica_id: replicaId }),
  });
  const body = await reply.json().catch(() => ({}));
  if (!reply.ok) throw new Error(body.detail || body.message || body.code || reply.status);
  app.device = { token: body.token, deviceId: body.device_id, replicaId, name };
  localStorage.setItem(DEVICE_KEY, JSON.stringify(app.device));
  screen(t("firstSync"), h("p", { class: "help", id: "first-sync" }, t("firstSync")));
  await openReplica();
  await loadMe();
  await syncNow();
  location.hash = "#/grid";
}

function matches(household, words) {
  const f = household.fields;
  const text = [f.address, f.head_name, f.phone, ...(f.tags ?? []), household.id, ...(household.memberNames ?? [])]
    .filter(Boolean)
    .join(" ")
    .toLowerCase();
  return words.every((word) => text.includes(word));
}

function gridScreen(query = sessionStorage.getItem("gridsync.search") || "") {
  const search = h("input", { id: "search", type: "search", placeholder: t("search"), value: query, autocomplete: "off" });
  const list = h("ul", { class: "list", id: "households" });
  const count = h("p", { class: "count", id: "household-count" });
  const names = new Map();
  for (const resident of app.replica.list("residents")) {
    const home = resident.fields.household_id;
    if (home && resident.fields.name) names.set(home, [...(names.get(home) ?? []), resident.fields.name]);
  }
  const households = app.replica
    .list("households")
    .filter((household) => !household.fields.moved_out)
    .map((household) => ({ ...household, memberNames: names.get(household.id) }))
    .sort((a, b) => String(a.fields.address ?? a.id).localeCompare(String(b.fields.address ?? b.id), "zh"));
  const showMatches = () => {
    const words = search.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    sessionStorage.setItem("gridsync.search", search.value);
    const found = households.filter((household) => matches(household, words));
    count.textContent = found.length ? t("households", found.length) : t("noneFound");
    fill(
      list,
      ...found.slice(0, LIST_LIMIT).map((household) => {
        const f = household.fields;
        const conflicted = Object.keys(household.conflicts ?? {}).length > 0;
        return h(
          "li",
          {},
          h(
            "a",
            { href: `#/h/${encodeURIComponent(household.id)}`, class: "card", "data-id": household.id },
            h("strong", {}, f.address ?? household.id),
            h("span", {}, [f.head_name, f.phone].filter(Boolean).join(" · ")),
            (f.tags ?? []).length ? h("span", { class: "tags" }, ...(f.tags ?? []).map((tag) => h("em", {}, tag))) : null,
            conflicted ? h("span", { class: "badge conflict" }, t("conflict")) : null,
          ),
        );
      }),
      found.length > LIST_LIMIT ? h("li", { class: "more" }, t("moreHidden", found.length - LIST_LIMIT)) : null,
    );
  };
  search.addEventListener("input", showMatches);
  showMatches();
  screen(t("tabGrid"), search, count, list);
}

function conflictNote(record, field) {
  const heads = record.conflicts?.[field];
  if (!heads || heads.length < 2) return null;
  return h(
    "div",
    { class: "conflict-note", "data-field": field },
    h("strong", {}, `⚠ ${t("conflict")}`),
    h("span", {}, t("conflictHelp")),
    h("ul", {}, ...heads.map((head) => h("li", { class: "conflict-value" }, show(head.value), head.value === record.fields[field] ? h("small", {}, ` (${t("shownNow")})`) : null))),
  );
}

function fieldRow(record, field, word, { editable = false, type = "text" } = {}) {
  const value = record.fields[field];
  const row = h(
    "div",
    { class: "field", "data-field": field },
    h("span", { class: "name" }, word),
    h("span", { class: "value", id: `value-${field}` }, show(value)),
    editable ? h("button", { type: "button", class: "small", id: `edit-${field}`, onclick: () => editField(record, field, word, type) }, t("edit")) : null,
  );
  return [row, conflictNote(record, field)];
}

function editField(record, field, word, type) {
  const input = h("input", { id: `input-${field}`, type, value: record.fields[field] ?? "", inputmode: type === "tel" ? "tel" : null });
  const form = h(
    "form",
    {
      class: "inline-edit",
      onsubmit: async (event) => {
        event.preventDefault();
        const value = input.value.trim();
        await app.replica.set(record.collection, record.id, field, value === "" ? null : value);
        toast(t("saved"));
        edited();
        route();
      },
    },
    h("label", { for: `input-${field}` }, word),
    input,
    h("div", { class: "row" }, h("button", { type: "submit", class: "primary", id: `save-${field}` }, t("save")), h("button", { type: "button", class: "secondary", onclick: () => route() }, t("cancel"))),
  );
  $(`.field[data-field="${field}"]`).replaceWith(form);
  input.focus();
}

function related(collection, householdId) {
  return app.replica.list(collection, { household: householdId });
}

function section(title, records, item) {
  return h("section", {}, h("h2", {}, `${title} (${records.length})`), records.length ? h("ul", { class: "list compact" }, ...records.map(item)) : h("p", { class: "empty" }, t("none")));
}

function newestFirst(field) {
  return (a, b) => String(b.fields[field] ?? "").localeCompare(String(a.fields[field] ?? ""));
}

function householdScreen(id) {
  const household = app.replica.get("households", id);
  if (!household) return gridScreen();
  const members = related("residents", id);
  const visits = related("visits", id).sort(newestFirst("visited_at"));
  const hazards = related("hazards", id).sort(newestFirst("reported_at"));
  const requests = related("requests", id).sort(newestFirst("submitted_at"));
  const checkins = related("checkins", id).sort(newestFirst("day"));
  const actions = h(
    "div",
    { class: "actions" },
    h("a", { class: "button primary", id: "record-visit", href: `#/h/${encodeURIComponent(id)}/visit` }, t("recordVisit")),
    h("a", { class: "button", id: "report-hazard", href: `#/h/${encodeURIComponent(id)}/hazard` }, t("reportHazard")),
    h("a", { class: "button", id: "new-request", href: `#/h/${encodeURIComponent(id)}/request` }, t("newRequest")),
    (household.fields.tags ?? []).includes("elderly-alone") ? h("button", { type: "button", id: "signal-seen", onclick: () => recordSignal(id) }, t("signalSeen")) : null,
  );
  screen(
    household.fields.address ?? id,
    back("#/grid"),
    household.deleted ? h("p", { class: "error" }, t("deleted")) : null,
    h(
      "div",
      { class: "file", id: "household" },
      fieldRow(household, "head_name", t("headName"), { editable: true }),
      fieldRow(household, "phone", t("phone"), { editable: true, type: "tel" }),
      fieldRow(household, "members_count", t("membersCount")),
      fieldRow(household, "tags", t("tags")),
      fieldRow(household, "notes", t("notes"), { editable: true }),
    ),
    actions,
    section(t("members"), members, (resident) => h("li", {}, h("strong", {}, resident.fields.name ?? resident.id), h("span", {}, [resident.fields.birth_year, resident.fields.phone, resident.fields.id_number].filter(Boolean).join(" · ")), conflictNote(resident, "phone"))),
    section(t("visits"), visits, (visit) => h("li", { class: "visit" }, h("strong", {}, `${label("purpose", visit.fields.purpose)} · ${shortMoment(visit.fields.visited_at)}`), visit.fields.notes ? h("span", {}, visit.fields.notes) : null, visit.fields.follow_up ? h("em", { class: "badge" }, t("followUp")) : null)),
    section(t("hazards"), hazards, (hazard) =>
      h(
        "li",
        { class: "hazard" },
        h("strong", {}, `${label("category", hazard.fields.category)} · ${label("severity", hazard.fields.severity)} · ${label("hazardStatus", hazard.fields.status)}`),
        hazard.fields.description ? h("span", {}, hazard.fields.description) : null,
        (hazard.fields.photos ?? []).length ? h("span", { class: "photos" }, `📷 ${hazard.fields.photos.length}`) : null,
      ),
    ),
    section(t("requests"), requests, (request) => h("li", {}, h("a", { href: `#/r/${encodeURIComponent(request.id)}` }, h("strong", {}, request.fields.title ?? request.id), h("span", {}, `${label("category", request.fields.category)} · ${label("requestStatus", request.fields.status)}`)))),
    section(t("checkins"), checkins.slice(0, 7), (checkin) => h("li", {}, `${checkin.fields.day ?? ""} · ${checkin.fields.signal ? "✓" : "✗"} ${checkin.fields.checked_by ?? ""}`)),
  );
}

function me() {
  return app.me?.user_name || app.device?.name || "app";
}

async function recordSignal(householdId) {
  const id = newId("checkin");
  await app.replica.set("checkins", id, "household_id", householdId);
  await app.replica.set("checkins", id, "day", today());
  await app.replica.set("checkins", id, "signal", true);
  await app.replica.set("checkins", id, "checked_by", me());
  await app.replica.set("checkins", id, "checked_at", nowMoment());
  toast(t("saved"));
  edited();
  route();
}

function choice(name, word, values, kind) {
  return [h("label", { for: name }, word), h("select", { id: name, name }, ...values.map((value) => h("option", { value }, label(kind, value))))];
}

function visitScreen(householdId) {
  const form = h(
    "form",
    {
      id: "visit-form",
      onsubmit: async (event) => {
        event.preventDefault();
        const data = new FormData(form);
        const id = newId("visit");
        await app.replica.set("visits", id, "household_id", householdId);
        await app.replica.set("visits", id, "worker", me());
        await app.replica.set("visits", id, "visited_at", nowMoment());
        await app.replica.set("visits", id, "purpose", data.get("purpose"));
        if (data.get("notes")) await app.replica.set("visits", id, "notes", String(data.get("notes")));
        await app.replica.set("visits", id, "follow_up", data.get("follow_up") === "on");
        toast(t("saved"));
        edited();
        location.hash = `#/h/${encodeURIComponent(householdId)}`;
      },
    },
    choice("purpose", t("purpose"), PURPOSES, "purpose"),
    h("label", { for: "notes" }, t("notes")),
    h("textarea", { id: "notes", name: "notes", rows: 4, maxlength: 10000 }),
    h("label", { class: "check" }, h("input", { type: "checkbox", id: "follow-up", name: "follow_up" }), t("followUp")),
    h("button", { type: "submit", class: "primary", id: "save-visit" }, t("save")),
  );
  screen(t("recordVisit"), back(`#/h/${encodeURIComponent(householdId)}`), form);
}

// A phone photo is megabytes: sent at most PHOTO_EDGE pixels on its longer side, as JPEG.
async function shrink(file) {
  try {
    const bitmap = await createImageBitmap(file);
    const scale = Math.min(1, PHOTO_EDGE / Math.max(bitmap.width, bitmap.height));
    if (scale === 1 && file.size < 1_000_000) return file;
    const canvas = document.createElement("canvas");
    canvas.width = Math.round(bitmap.width * scale);
    canvas.height = Math.round(bitmap.height * scale);
    canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    return await new Promise((resolve) => canvas.toBlob((blob) => resolve(blob ?? file), "image/jpeg", 0.8));
  } catch {
    return file;
  }
}

function hazardScreen(householdId) {
  const photos = h("input", { type: "file", id: "photos", name: "photos", accept: "image/*", capture: "environment", multiple: true });
  const photoCount = h("p", { class: "help", id: "photo-count" });
  photos.addEventListener("change", () => {
    photoCount.textContent = t("photosQueued", photos.files.length);
  });
  const form = h(
    "form",
    {
      id: "hazard-form",
      onsubmit: async (event) => {
        event.preventDefault();
        const data = new FormData(form);
        const id = newId("hazard");
        await app.replica.set("hazards", id, "household_id", householdId);
        await app.replica.set("hazards", id, "category", data.get("category"));
        await app.replica.set("hazards", id, "severity", data.get("severity"));
        await app.replica.set("hazards", id, "status", "open");
        if (data.get("description")) await app.replica.set("hazards", id, "description", String(data.get("description")));
        await app.replica.set("hazards", id, "reported_by", me());
        await app.replica.set("hazards", id, "reported_at", nowMoment());
        for (const file of photos.files) {
          const blob = await shrink(file);
          const sha256 = await app.replica.upload(blob, blob.type || "image/jpeg");
          await app.replica.add("hazards", id, "photos", sha256);
        }
        toast(t("saved"));
        edited();
        location.hash = `#/h/${encodeURIComponent(householdId)}`;
      },
    },
    choice("category", t("category"), HAZARD_CATEGORIES, "category"),
    choice("severity", t("severity"), SEVERITIES, "severity"),
    h("label", { for: "description" }, t("description")),
    h("textarea", { id: "description", name: "description", rows: 3, maxlength: 10000 }),
    h("label", { for: "photos", class: "button photo-button" }, `📷 ${t("takePhoto")}`),
    photos,
    photoCount,
    h("button", { type: "submit", class: "primary", id: "save-hazard" }, t("save")),
  );
  screen(t("reportHazard"), back(`#/h/${encodeURIComponent(householdId)}`), form);
}

function requestFormScreen(householdId) {
  const form = h(
    "form",
    {
      id: "request-form",
      onsubmit: async (event) => {
        event.preventDefault();
        const data = new FormData(form);
        const title = String(data.get("title") || "").trim();
        if (!title) return toast(`${t("required")}: ${t("title")}`);
        const id = newId("request");
        await app.replica.set("requests", id, "household_id", householdId);
        await app.replica.set("requests", id, "category", data.get("category"));
        await app.replica.set("requests", id, "title", title);
        if (data.get("description")) await app.replica.set("requests", id, "description", String(data.get("description")));
        await app.replica.set("requests", id, "status", "submitted");
        await app.replica.set("requests", id, "submitted_at", nowMoment());
        toast(t("saved"));
        edited();
        location.hash = `#/r/${encodeURIComponent(id)}`;
      },
    },
    choice("category", t("category"), REQUEST_CATEGORIES, "category"),
    h("label", { for: "title" }, t("title")),
    h("input", { id: "title", name: "title", maxlength: 200, required: true }),
    h("label", { for: "description" }, t("description")),
    h("textarea", { id: "description", name: "description", rows: 3, maxlength: 10000 }),
    h("button", { type: "submit", class: "primary", id: "save-request" }, t("save")),
  );
  screen(t("newRequest"), back(`#/h/${encodeURIComponent(householdId)}`), form);
}

function allowedMoves(status) {
  const moves = REQUEST_MOVES[status ?? ""] ?? [];
  return app.me?.role === "handler" ? moves.filter((move) => HANDLER_MOVES.has(move)) : moves;
}

function requestScreen(id) {
  const request = app.replica.get("requests", id);
  if (!request) return gridScreen();
  const moves = allowedMoves(request.fields.status);
  screen(
    request.fields.title ?? id,
    back(request.fields.household_id ? `#/h/${encodeURIComponent(request.fields.household_id)}` : "#/grid"),
    h(
      "div",
      { class: "file", id: "request" },
      fieldRow(request, "status", t("status")),
      fieldRow(request, "category", t("category")),
      fieldRow(request, "description", t("description")),
      fieldRow(request, "dispatched_to", "→"),
    ),
    h("h2", {}, t("moveTo")),
    moves.length
      ? h(
          "div",
          { class: "actions", id: "moves" },
          ...moves.map((move) =>
            h(
              "button",
              {
                type: "button",
                "data-status": move,
                onclick: async () => {
                  await app.replica.set("requests", id, "status", move);
                  if (move === "done") await app.replica.set("requests", id, "done_at", nowMoment());
                  toast(t("saved"));
                  edited();
                  route();
                },
              },
              label("requestStatus", move),
            ),
          ),
        )
      : h("p", { class: "empty" }, t("noMoves")),
  );
  $("#value-status").textContent = label("requestStatus", request.fields.status);
  $("#value-category").textContent = label("category", request.fields.category);
}

async function checkinsScreen() {
  const body = h("div", { id: "no-signal" });
  screen(t("noSignalTitle"), body);
  let answer = null;
  let at = null;
  if (navigator.onLine) {
    try {
      const reply = await fetch(`${ORIGIN}/v1/checkins/no-signal`, { headers: { authorization: `Bearer ${app.device.token}` } });
      if (reply.ok) {
        answer = await reply.json();
        at = Date.now();
        localStorage.setItem(NO_SIGNAL_KEY, JSON.stringify({ answer, at }));
      }
    } catch {
      // Offline after all: the last answer, if any.
    }
  }
  if (!answer) ({ answer, at } = JSON.parse(localStorage.getItem(NO_SIGNAL_KEY) || "{}"));
  if (!answer) return body.replaceChildren(h("p", { class: "empty" }, t("needsNetwork")));
  // Households seen since the answer was made, on this phone, drop off the list at once.
  const seen = new Set(app.replica.list("checkins").filter((c) => c.fields.day === today() && c.fields.signal === true).map((c) => c.fields.household_id));
  const missing = answer.households.filter((household) => !seen.has(household.id));
  fill(
    body,
    h("p", { class: "help" }, t("asOf", when(at))),
    answer.past_cutoff ? null : h("p", { class: "help" }, t("beforeCutoff", answer.cutoff, answer.waiting)),
    missing.length
      ? h("ul", { class: "list" }, ...missing.map((household) => h("li", {}, h("a", { class: "card", href: `#/h/${encodeURIComponent(household.id)}` }, h("strong", {}, household.address ?? household.id), h("span", {}, [household.head_name, household.phone].filter(Boolean).join(" · "))))))
      : answer.past_cutoff
        ? h("p", { class: "empty" }, t("allSeen"))
        : null,
  );
}

function languageSwitch() {
  return h(
    "div",
    { class: "row", id: "languages" },
    ...LANGUAGES.map((language) =>
      h(
        "button",
        {
          type: "button",
          class: language === currentLanguage() ? "primary" : "secondary",
          id: `lang-${language}`,
          onclick: () => {
            setLanguage(language);
            renderStatus();
            route();
          },
        },
        language === "zh" ? "中文" : "English",
      ),
    ),
  );
}

function meScreen() {
  const pending = app.replica.pending();
  const rejected = app.replica.rejected();
  screen(
    t("meTitle"),
    h("div", { class: "file" }, h("div", { class: "field" }, h("span", { class: "name" }, t("signedInAs")), h("span", { class: "value", id: "user-name" }, app.me?.user_name ?? "—")), h("div", { class: "field" }, h("span", { class: "name" }, t("role")), h("span", { class: "value" }, label("role", app.me?.role ?? "")))),
    h("h2", {}, t("language")),
    languageSwitch(),
    h("h2", {}, `${t("pendingList")} (${pending.length})`),
    h("ul", { class: "list compact", id: "pending" }, ...pending.slice(0, 50).map((change) => h("li", {}, `${change.collection} · ${change.field ?? change.op} · ${show(change.value)}`))),
    h("h2", {}, `${t("rejectedList")} (${rejected.length})`),
    h("ul", { class: "list compact", id: "rejected" }, ...rejected.slice(0, 50).map((change) => h("li", {}, `${change.collection} · ${change.field ?? ""} · ${change.message ?? change.code}`))),
    h(
      "button",
      {
        type: "button",
        class: "danger",
        onclick: () => {
          if (confirm(t("forgetConfirm"))) forget();
        },
      },
      t("forget"),
    ),
  );
}

// ------------------------------------------------------------------ routing

function route() {
  renderStatus();
  if (!app.replica) return enrolScreen();
  const path = location.hash.replace(/^#/, "") || "/grid";
  const parts = path.split("/").map(decodeURIComponent);
  if (parts[1] === "h" && parts[2]) {
    if (parts[3] === "visit") return visitScreen(parts[2]);
    if (parts[3] === "hazard") return hazardScreen(parts[2]);
    if (parts[3] === "request") return requestFormScreen(parts[2]);
    return householdScreen(parts[2]);
  }
  if (parts[1] === "r" && parts[2]) return requestScreen(parts[2]);
  if (parts[1] === "checkins") return checkinsScreen();
  if (parts[1] === "me") return meScreen();
  return gridScreen();
}

// Re-render what is on screen when a sync brought news, unless the worker is typing.
function refresh() {
  const active = document.activeElement;
  if (active && ["INPUT", "TEXTAREA", "SELECT"].includes(active.tagName)) return;
  route();
}

async function start() {
  setLanguage(currentLanguage());
  window.addEventListener("hashchange", route);
  window.addEventListener("online", () => {
    renderStatus();
    syncNow();
  });
  window.addEventListener("offline", renderStatus);
  $("#sync-now").addEventListener("click", () => syncNow());
  if ("serviceWorker" in navigator) navigator.serviceWorker.register("/app/sw.js", { scope: "/app/" }).catch(() => {});
  if (app.device) {
    await openReplica();
    route();
    if (navigator.onLine) syncNow();
  } else {
    route();
  }
  setInterval(renderStatus, 30_000);
  document.body.dataset.ready = "true";
}

start();
