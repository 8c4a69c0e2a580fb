// courtbox front panel. No framework, no CDN: this file is embedded in the daemon.
"use strict";

const TEXT = {
  en: {
    sign_in_title: "Sign in", choose_name: "Touch your name, then enter your PIN.", ok: "OK",
    sign_out: "Sign out", recording: "RECORDING", stopped: "STOPPED", recess_state: "RECESS",
    broadcast_muted: "BROADCAST MUTED", case: "Case number", title: "Title", language: "Language",
    hearing: "Hearing", open: "Open", closed: "Closed (never broadcast)", auto: "Detect", start: "Start recording",
    mark: "Add mark", recess: "Recess", resume: "Resume hearing", mute: "Mute broadcast", unmute: "Unmute broadcast",
    broadcast_start: "Start broadcast", broadcast_stop: "Stop broadcast", on_air: "ON AIR (delayed)",
    close_hearing: "Close hearing (no broadcast)", open_hearing: "Open hearing to the public",
    stop: "Stop", confirm_stop: "Stop recording this hearing? The record will be sealed.", yes_stop: "Yes, stop",
    cancel: "Cancel", cameras: "Cameras", microphones: "Microphones", captions: "Live captions",
    no_live_captions: "no live captions with the installed speech model (the recording is not affected)",
    lang_name: { kk: "Kazakh", ru: "Russian", en: "English" },
    wrong_pin: "Wrong PIN.", tries_left: "Tries left before lock-out:", locked: "Too many wrong PINs. Locked; try again in",
    seconds: "s", signed_out: "You were signed out. Please sign in again.", no_people: "No secretary is set up yet: ask the technician.",
    mark_added: "Mark added.", started: "Recording started.", stopped_ok: "Recording stopped and sealed.",
    failed: "Not done:", mark_placeholder: "Note for the record (optional)", offline: "The recorder is not answering.",
    hearing_open: "open hearing", hearing_closed: "closed hearing",
    lost: "lost", jitter: "jitter", last_frame: "last picture",
    alarm_black: "Camera shows a black picture", alarm_frozen: "Camera picture is frozen", alarm_silent: "No sound from microphone",
    alarm_disk: "Disk is nearly full", alarm_store: "Central storage problem", alarm_device: "Device is not working",
    role: { judge: "Judge", prosecutor: "Prosecutor", defence: "Defence", defendant: "Defendant", plaintiff: "Plaintiff",
      witness: "Witness", expert: "Expert", interpreter: "Interpreter", secretary: "Secretary", lawyer: "Lawyer", other: "Other" },
  },
  ru: {
    sign_in_title: "Вход", choose_name: "Коснитесь своего имени и введите PIN-код.", ok: "OK",
    sign_out: "Выйти", recording: "ИДЁТ ЗАПИСЬ", stopped: "ЗАПИСЬ ОСТАНОВЛЕНА", recess_state: "ПЕРЕРЫВ",
    broadcast_muted: "ТРАНСЛЯЦИЯ ЗАГЛУШЕНА", case: "Номер дела", title: "Наименование", language: "Язык",
    hearing: "Заседание", open: "Открытое", closed: "Закрытое (без трансляции)", auto: "Определить", start: "Начать запись",
    mark: "Добавить отметку", recess: "Перерыв", resume: "Продолжить заседание", mute: "Заглушить трансляцию", unmute: "Включить трансляцию",
    broadcast_start: "Начать трансляцию", broadcast_stop: "Остановить трансляцию", on_air: "В ЭФИРЕ (с задержкой)",
    close_hearing: "Закрыть заседание (без трансляции)", open_hearing: "Открыть заседание для публики",
    stop: "Стоп", confirm_stop: "Остановить запись заседания? Запись будет опечатана.", yes_stop: "Да, остановить",
    cancel: "Отмена", cameras: "Камеры", microphones: "Микрофоны", captions: "Субтитры",
    no_live_captions: "нет субтитров с установленной моделью речи (запись идёт как обычно)",
    lang_name: { kk: "Казахский", ru: "Русский", en: "Английский" },
    wrong_pin: "Неверный PIN-код.", tries_left: "Осталось попыток до блокировки:", locked: "Слишком много неверных PIN-кодов. Вход заблокирован; повторите через",
    seconds: "с", signed_out: "Сеанс завершён. Войдите снова.", no_people: "Секретари ещё не заведены: обратитесь к технику.",
    mark_added: "Отметка добавлена.", started: "Запись начата.", stopped_ok: "Запись остановлена и опечатана.",
    failed: "Не выполнено:", mark_placeholder: "Примечание к протоколу (необязательно)", offline: "Регистратор не отвечает.",
    hearing_open: "открытое заседание", hearing_closed: "закрытое заседание",
    lost: "потери", jitter: "джиттер", last_frame: "последний кадр",
    alarm_black: "Камера показывает чёрный экран", alarm_frozen: "Изображение камеры застыло", alarm_silent: "Нет звука с микрофона",
    alarm_disk: "Диск почти заполнен", alarm_store: "Проблема с центральным хранилищем", alarm_device: "Устройство не работает",
    role: { judge: "Судья", prosecutor: "Прокурор", defence: "Защита", defendant: "Подсудимый", plaintiff: "Истец",
      witness: "Свидетель", expert: "Эксперт", interpreter: "Переводчик", secretary: "Секретарь", lawyer: "Адвокат", other: "Другое" },
  },
  kk: {
    sign_in_title: "Кіру", choose_name: "Атыңызды басып, PIN-кодты енгізіңіз.", ok: "OK",
    sign_out: "Шығу", recording: "ЖАЗЫЛУДА", stopped: "ЖАЗБА ТОҚТАТЫЛДЫ", recess_state: "ҮЗІЛІС",
    broadcast_muted: "ТРАНСЛЯЦИЯ ӨШІРІЛДІ", case: "Іс нөмірі", title: "Атауы", language: "Тіл",
    hearing: "Отырыс", open: "Ашық", closed: "Жабық (трансляциясыз)", auto: "Анықтау", start: "Жазуды бастау",
    mark: "Белгі қосу", recess: "Үзіліс", resume: "Отырысты жалғастыру", mute: "Трансляцияны өшіру", unmute: "Трансляцияны қосу",
    broadcast_start: "Трансляцияны бастау", broadcast_stop: "Трансляцияны тоқтату", on_air: "ЭФИРДЕ (кідіріспен)",
    close_hearing: "Отырысты жабу (трансляциясыз)", open_hearing: "Отырысты жұртшылыққа ашу",
    stop: "Тоқтату", confirm_stop: "Отырыс жазбасын тоқтату керек пе? Жазба мөрленеді.", yes_stop: "Иә, тоқтату",
    cancel: "Болдырмау", cameras: "Камералар", microphones: "Микрофондар", captions: "Субтитрлер",
    no_live_captions: "орнатылған сөйлеу моделімен субтитр жоқ (жазба әдеттегідей жүреді)",
    lang_name: { kk: "Қазақ тілі", ru: "Орыс тілі", en: "Ағылшын тілі" },
    wrong_pin: "PIN-код қате.", tries_left: "Бұғатталғанға дейін қалған әрекет:", locked: "Қате PIN-код тым көп. Кіру бұғатталды; қайталаңыз",
    seconds: "с", signed_out: "Сеанс аяқталды. Қайта кіріңіз.", no_people: "Хатшылар әлі тіркелмеген: техникке хабарласыңыз.",
    mark_added: "Белгі қосылды.", started: "Жазу басталды.", stopped_ok: "Жазба тоқтатылып, мөрленді.",
    failed: "Орындалмады:", mark_placeholder: "Хаттамаға ескерту (міндетті емес)", offline: "Тіркегіш жауап бермейді.",
    hearing_open: "ашық отырыс", hearing_closed: "жабық отырыс",
    lost: "жоғалды", jitter: "джиттер", last_frame: "соңғы кадр",
    alarm_black: "Камера қара сурет көрсетеді", alarm_frozen: "Камера суреті қатып қалды", alarm_silent: "Микрофоннан дыбыс жоқ",
    alarm_disk: "Диск толуға жақын", alarm_store: "Орталық қоймада ақау", alarm_device: "Құрылғы жұмыс істемейді",
    role: { judge: "Судья", prosecutor: "Прокурор", defence: "Қорғау", defendant: "Сотталушы", plaintiff: "Талапкер",
      witness: "Куә", expert: "Сарапшы", interpreter: "Аудармашы", secretary: "Хатшы", lawyer: "Адвокат", other: "Басқа" },
  },
};

const $ = (id) => document.getElementById(id);
let lang = localStorage.getItem("courtbox.lang") || "kk";
let csrf = null;
let me = null;
let status = null;
let socket = null;
let captionsSource = null;
let thumbTimer = null;
let chosenName = null;
let pin = "";

function t(key) { return (TEXT[lang] && TEXT[lang][key]) || TEXT.en[key] || key; }
function roleName(role) { return role ? (TEXT[lang].role[role] || role) : ""; }

function applyLanguage() {
  document.documentElement.lang = lang;
  document.querySelectorAll("[data-t]").forEach((el) => { el.textContent = t(el.dataset.t); });
  document.querySelectorAll("#languages button").forEach((b) => b.classList.toggle("active", b.dataset.lang === lang));
  $("mark-text").placeholder = t("mark_placeholder");
  if (status) render(status);
}

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf;
  const response = await fetch(path, { method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await response.json(); } catch (_) { /* not JSON */ }
  if (response.status === 401 && me && path !== "/api/v1/auth/sign-in") { showSignIn(t("signed_out")); }
  return { ok: response.ok, status: response.status, data, retryAfter: response.headers.get("Retry-After") };
}

function say(id, text, good) {
  const el = $(id);
  el.textContent = text || "";
  el.style.color = good ? "#1f7a38" : "";
}

// ---- sign-in ----
async function showSignIn(message) {
  me = null; csrf = null;
  stopLive();
  $("console").hidden = true; $("sign-in").hidden = false; $("sign-out").hidden = true; $("who").textContent = "";
  say("sign-in-message", message || "");
  pin = ""; chosenName = null; $("pin-area").hidden = true; drawPin();
  const r = await fetch("/api/v1/auth/people").then((x) => x.json()).catch(() => []);
  const names = $("names");
  names.replaceChildren();
  if (!r.length) say("sign-in-message", t("no_people"));
  r.forEach((name) => {
    const b = document.createElement("button");
    b.textContent = name;
    b.dataset.name = name;
    b.onclick = () => {
      chosenName = name; pin = ""; drawPin();
      names.querySelectorAll("button").forEach((x) => x.classList.toggle("chosen", x === b));
      $("pin-for").textContent = name;
      $("pin-area").hidden = false;
    };
    names.appendChild(b);
  });
}

function drawPin() { $("pin-dots").textContent = "●".repeat(pin.length); }

async function submitPin() {
  if (!chosenName || !pin) return;
  const r = await api("POST", "/api/v1/auth/sign-in", { name: chosenName, pin });
  pin = ""; drawPin();
  if (r.ok) {
    csrf = r.data.csrf;
    await enter();
  } else if (r.status === 429) {
    say("sign-in-message", `${t("locked")} ${r.retryAfter || "?"} ${t("seconds")}`);
  } else if (r.status === 401) {
    const left = /\((\d+) tries left/.exec((r.data && r.data.error) || "");
    say("sign-in-message", `${t("wrong_pin")} ${left ? `${t("tries_left")} ${left[1]}` : ""}`);
  } else {
    say("sign-in-message", `${t("failed")} ${(r.data && r.data.error) || r.status}`);
  }
}

// ---- console ----
async function enter() {
  const r = await api("GET", "/api/v1/auth/me");
  if (!r.ok) return showSignIn();
  me = r.data;
  if (r.data.csrf) csrf = r.data.csrf;
  $("sign-in").hidden = true; $("console").hidden = false; $("sign-out").hidden = false;
  $("who").textContent = me.name;
  startLive();
}

function startLive() {
  stopLive();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/api/v1/status/ws`);
  socket.onmessage = (event) => {
    const s = JSON.parse(event.data);
    if (s.signed_out) { showSignIn(t("signed_out")); return; }
    if (s.error) return;
    status = s;
    render(s);
  };
  socket.onclose = () => { if (me) setTimeout(() => { if (me) startLive(); }, 2000); };
  captionsSource = new EventSource("/api/v1/captions/live");
  captionsSource.addEventListener("final", (event) => addCaption(JSON.parse(event.data)));
  thumbTimer = setInterval(refreshThumbnails, 2000);
}

function stopLive() {
  if (socket) { socket.onclose = null; socket.close(); socket = null; }
  if (captionsSource) { captionsSource.close(); captionsSource = null; }
  if (thumbTimer) { clearInterval(thumbTimer); thumbTimer = null; }
}

function clock(ns) {
  const total = Math.max(0, Math.floor(ns / 1e9));
  const two = (n) => String(n).padStart(2, "0");
  return `${two(Math.floor(total / 3600))}:${two(Math.floor(total / 60) % 60)}:${two(total % 60)}`;
}

function sourceInfo(name) { return ((status && status.sources) || []).find((s) => s.name === name) || {}; }

function render(s) {
  const session = s.session;
  const state = !session ? "stopped" : session.state;
  const banner = $("state-banner");
  banner.className = state;
  $("state").textContent = state === "recording" ? `● ${t("recording")}` : state === "recess" ? t("recess_state") : t("stopped");
  $("state").dataset.state = state;
  $("timer").textContent = !session ? "00:00:00"
    : state === "recess" ? clock(session.media_now - session.recess_since) : clock(session.media_now);
  $("muted-badge").hidden = !(session && session.privacy_muted);
  $("where").textContent = s.court ? `${s.court.court} · ${s.court.room}` : "courtbox";
  $("hearing-line").textContent = session
    ? `${session.case} — ${session.title} (${t(session.hearing === "closed" ? "hearing_closed" : "hearing_open")})` : "";
  $("start-form").hidden = !!session;
  $("controls").hidden = !session;
  $("recess").hidden = state !== "recording";
  $("resume").hidden = state !== "recess";
  const mute = $("mute");
  mute.classList.toggle("on", !!(session && session.privacy_muted));
  mute.textContent = session && session.privacy_muted ? t("unmute") : t("mute");
  mute.dataset.muted = session && session.privacy_muted ? "true" : "false";
  renderBroadcast(s, session);
  renderMeters(session);
  renderThumbFrames(session);
  renderAlarms(s);
  renderCaptionsOff(s);
}

// Microphones whose language the installed speech model cannot caption well enough: said
// plainly, so that nobody waits for captions that will not come.
function renderCaptionsOff(s) {
  const tracks = (s.captions && s.captions.tracks) || {};
  const lines = Object.entries(tracks).filter(([, tr]) => tr.no_live_captions).map(([source, tr]) => {
    const code = (tr.no_live_captions_language || "");
    const language = (t("lang_name") || {})[code] || code;
    const who = roleName(sourceInfo(source).role) || source;
    return `${who}${language ? ` (${language})` : ""}: ${t("no_live_captions")}`;
  });
  const box = $("captions-off");
  box.replaceChildren(...lines.map((l) => { const d = document.createElement("div"); d.textContent = l; return d; }));
}

// A closed hearing offers no broadcast at all; the box refuses one anyway.
function renderBroadcast(s, session) {
  const b = s.broadcast || {};
  const onAir = !!(session && b.live);
  const closed = !!(session && session.hearing === "closed");
  $("on-air").hidden = !onAir;
  const button = $("broadcast");
  button.hidden = !(session && b.configured && (onAir || !closed));
  button.textContent = onAir ? t("broadcast_stop") : t("broadcast_start");
  button.dataset.live = onAir ? "true" : "false";
  const hearing = $("hearing-toggle");
  hearing.textContent = closed ? t("open_hearing") : t("close_hearing");
  hearing.dataset.hearing = closed ? "closed" : "open";
}

function renderMeters(session) {
  const meters = $("meters");
  const mics = ((status && status.sources) || []).filter((x) => x.kind === "audio");
  if (meters.childElementCount !== mics.length) {
    meters.replaceChildren(...mics.map((m) => {
      const row = document.createElement("div");
      row.className = "meter"; row.dataset.source = m.name;
      row.innerHTML = '<span class="label"></span><div class="bar"><div class="fill"></div></div><span class="db"></span>';
      return row;
    }));
  }
  const health = (session && session.health) || [];
  meters.querySelectorAll(".meter").forEach((row) => {
    const info = sourceInfo(row.dataset.source);
    row.querySelector(".label").textContent = roleName(info.role) || row.dataset.source;
    const h = health.find((x) => x.source === row.dataset.source);
    const db = h && h.level_dbfs != null ? h.level_dbfs : -150;
    const width = Math.max(0, Math.min(100, ((db + 60) / 60) * 100));
    row.querySelector(".fill").style.width = `${width}%`;
    row.dataset.level = String(db);
    row.querySelector(".db").textContent = db > -149 ? `${db.toFixed(0)} dB` : "—";
  });
}

function renderThumbFrames(session) {
  const thumbs = $("thumbs");
  const cams = ((status && status.sources) || []).filter((x) => x.kind === "video");
  if (thumbs.childElementCount !== cams.length) {
    thumbs.replaceChildren(...cams.map((c) => {
      const fig = document.createElement("figure");
      fig.dataset.source = c.name;
      fig.innerHTML = "<img alt=\"\"><figcaption></figcaption>";
      fig.querySelector("figcaption").textContent = c.name;
      return fig;
    }));
  }
  if (!session || session.state !== "recording") {
    thumbs.querySelectorAll("img").forEach((img) => { img.removeAttribute("src"); img.dataset.loaded = "false"; });
  }
  // A network picture's link under its name: what the technician is called about.
  const health = new Map(((session && session.health) || []).map((h) => [h.source, h]));
  thumbs.querySelectorAll("figure").forEach((fig) => {
    const stream = session && session.state === "recording" ? (health.get(fig.dataset.source) || {}).stream : null;
    let line = fig.querySelector(".link");
    if (!stream) { if (line) line.remove(); return; }
    if (!line) { line = document.createElement("div"); line.className = "link"; fig.append(line); }
    line.textContent = linkText(stream);
  });
}

function linkText(s) {
  const parts = [];
  if (s.bitrate_kbps != null) parts.push(`${(s.bitrate_kbps / 1000).toFixed(1)} Mbit/s`);
  if (s.loss_percent != null) parts.push(`${t("lost")} ${s.loss_percent.toFixed(1)} %`);
  if (s.jitter_ms != null) parts.push(`${t("jitter")} ${s.jitter_ms.toFixed(0)} ms`);
  if (s.last_frame_age_ms >= 1000) parts.push(`${t("last_frame")} ${(s.last_frame_age_ms / 1000).toFixed(0)} ${t("seconds")}`);
  return parts.join(" · ");
}

async function refreshThumbnails() {
  if (!status || !status.session || status.session.state !== "recording") return;
  for (const fig of $("thumbs").querySelectorAll("figure")) {
    const r = await fetch(`/api/v1/thumbnails/${encodeURIComponent(fig.dataset.source)}`, { credentials: "same-origin" });
    if (!r.ok) continue;
    const url = URL.createObjectURL(await r.blob());
    const img = fig.querySelector("img");
    const old = img.src;
    img.onload = () => { img.dataset.loaded = "true"; if (old.startsWith("blob:")) URL.revokeObjectURL(old); };
    img.src = url;
  }
}

function alarmText(source, message) {
  const who = roleName(sourceInfo(source).role) || source;
  if (/black/.test(message)) return `${t("alarm_black")}: ${who}`;
  if (/frozen/.test(message)) return `${t("alarm_frozen")}: ${who}`;
  if (/no signal/.test(message)) return `${t("alarm_silent")}: ${who}`;
  return `${who}: ${message}`;
}

function renderAlarms(s) {
  const lines = [];
  const session = s.session;
  ((session && session.health) || []).forEach((h) => { if (h.alarm) lines.push(alarmText(h.source, h.alarm)); });
  ((session && session.devices) || []).forEach((d) => {
    if (d.state && d.state !== "running") lines.push(`${t("alarm_device")}: ${d.name}`);
  });
  const storage = s.storage || {};
  (storage.alarms || []).forEach((a) => {
    lines.push(`${/disk/.test(a.kind) ? t("alarm_disk") : t("alarm_store")}: ${a.message}`);
  });
  const box = $("alarms");
  box.replaceChildren(...lines.map((l) => { const d = document.createElement("div"); d.textContent = l; return d; }));
}

function addCaption(c) {
  const list = $("captions");
  const li = document.createElement("li");
  const role = document.createElement("span");
  role.className = "role";
  role.textContent = roleName(c.role) || c.source || "";
  li.append(role, document.createTextNode(c.text || ""));
  list.appendChild(li);
  while (list.childElementCount > 100) list.firstElementChild.remove();
  list.scrollTop = list.scrollHeight;
}

async function act(method, path, body, done) {
  const r = await api(method, path, body);
  if (r.ok) { say("action-message", done ? t(done) : "", true); } else if (r.status !== 401) {
    say("action-message", `${t("failed")} ${(r.data && r.data.error) || r.status}`);
  }
  return r;
}

function wire() {
  document.querySelectorAll("#languages button").forEach((b) => {
    b.onclick = () => { lang = b.dataset.lang; localStorage.setItem("courtbox.lang", lang); applyLanguage(); };
  });
  document.querySelectorAll("#keypad button").forEach((b) => {
    b.onclick = () => {
      const k = b.dataset.key;
      if (k === "back") pin = pin.slice(0, -1);
      else if (k === "ok") { submitPin(); return; }
      else if (pin.length < 12) pin += k;
      drawPin();
    };
  });
  $("sign-out").onclick = async () => { await api("POST", "/api/v1/auth/sign-out"); showSignIn(); };
  $("start-form").onsubmit = async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const r = await act("POST", "/api/v1/sessions",
      { case: f.get("case"), title: f.get("title"), language: f.get("language"), hearing: f.get("hearing") }, "started");
    if (r.ok) e.target.reset();
  };
  $("mark-form").onsubmit = async (e) => {
    e.preventDefault();
    const text = $("mark-text").value.trim() || "—";
    const r = await act("POST", "/api/v1/sessions/current/marks", { text }, "mark_added");
    if (r.ok) $("mark-text").value = "";
  };
  $("recess").onclick = () => act("POST", "/api/v1/sessions/current/recess");
  $("resume").onclick = () => act("POST", "/api/v1/sessions/current/resume");
  $("mute").onclick = () => act("PUT", "/api/v1/sessions/current/privacy-mute",
    { muted: !(status && status.session && status.session.privacy_muted) });
  $("broadcast").onclick = () => act("POST",
    `/api/v1/sessions/current/broadcast/${$("broadcast").dataset.live === "true" ? "stop" : "start"}`);
  $("hearing-toggle").onclick = () => act("PUT", "/api/v1/sessions/current/hearing",
    { hearing: $("hearing-toggle").dataset.hearing === "closed" ? "open" : "closed" });
  $("stop").onclick = () => $("confirm-stop").showModal();
  $("confirm-stop-no").onclick = () => $("confirm-stop").close();
  $("confirm-stop-yes").onclick = async () => {
    $("confirm-stop").close();
    await act("POST", "/api/v1/sessions/current/stop", undefined, "stopped_ok");
  };
}

wire();
applyLanguage();
enter();
