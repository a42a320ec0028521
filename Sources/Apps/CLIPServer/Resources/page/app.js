// The search page: GET /api/search?q=…&like=…&folder=…&from=…&to=… (or POST with a dropped, pasted or picked
// photo) and a grid of hits. The text query and the filters stay in the address (back and forward work, a search
// can be bookmarked). An API key, when the server asks for one, is kept as a cookie so that thumbnails (plain
// <img>) are authorised too; a key the server refuses is dropped. A video's hit shows the frame of its best moment;
// the viewer plays it from there (the server answers the byte ranges a <video> seeks by).
"use strict";

const $ = (id) => document.getElementById(id);
const form = $("search-form"), input = $("query"), status = $("status"), results = $("results");
const empty = $("empty"), more = $("more"), weaker = $("weaker"), drop = $("drop"), file = $("file");
const viewer = $("viewer"), player = $("player"), viewerImage = $("viewer-image");
const folder = $("folder"), from = $("from"), to = $("to");
const PAGE = 60;
// Hits scoring this far below the best are folded away: past it, CLIP's similarities say little.
const CUTOFF = 0.1;

let current = { q: "", like: null, image: null, imageName: null, top: PAGE };
let shown = [];
let opened = -1;
// Each search's number: an answer to an older one (a slow image search, then a typed query) is dropped.
let generation = 0;

function clock(seconds) {
  const tenths = Math.round(seconds * 10);
  const h = Math.floor(tenths / 36000), m = Math.floor(tenths / 600) % 60, s = (tenths % 600) / 10;
  const ss = s.toFixed(1).padStart(4, "0");
  return h > 0 ? h + ":" + String(m).padStart(2, "0") + ":" + ss : m + ":" + ss;
}

function baseName(path) { return path.split("/").pop(); }

function describe(hit) {
  const parts = [hit.path];
  if (hit.width && hit.height) parts.push(hit.width + "×" + hit.height);
  if (hit.modified) parts.push(new Date(hit.modified * 1000).toLocaleString());
  if (hit.time !== undefined && hit.time !== null) parts.push("at " + clock(hit.time));
  parts.push("score " + hit.score.toFixed(3));
  return parts.join(" · ");
}

function show(index) {
  if (index < 0 || index >= shown.length) return;
  opened = index;
  const hit = shown[index];
  const video = hit.time !== undefined && hit.time !== null;
  player.pause();
  player.hidden = !video;
  viewerImage.hidden = video;
  if (video) {
    viewerImage.removeAttribute("src");
    player.src = hit.file + "#t=" + hit.time;
    player.addEventListener("loadedmetadata", () => {
      if (Math.abs(player.currentTime - hit.time) > 0.5) player.currentTime = hit.time;
    }, { once: true });
    player.play().catch(() => {});
  } else {
    player.removeAttribute("src");
    viewerImage.src = hit.view;
    viewerImage.alt = baseName(hit.path);
  }
  $("viewer-caption").textContent = describe(hit);
  $("prev").disabled = index === 0;
  $("next").disabled = index === shown.length - 1;
  if (!viewer.open) viewer.showModal();
  // The focus where the keys act: the player for a video (its arrows seek), else the dialog's buttons.
  if (video) player.focus(); else if (document.activeElement === player || !viewer.contains(document.activeElement)) viewer.querySelector("button.close").focus();
}

viewer.addEventListener("close", () => {
  player.pause(); player.removeAttribute("src"); player.load();
  const link = results.querySelectorAll(".hit a")[opened];
  if (link) link.focus();
});
viewer.querySelector("button.close").addEventListener("click", () => viewer.close());
$("prev").addEventListener("click", () => show(opened - 1));
$("next").addEventListener("click", () => show(opened + 1));
viewer.addEventListener("keydown", (event) => {
  // The player's own arrow keys seek.
  if (event.target === player && !player.hidden) return;
  if (event.key === "ArrowLeft") { event.preventDefault(); show(opened - 1); }
  if (event.key === "ArrowRight") { event.preventDefault(); show(opened + 1); }
});

function card(hit, index) {
  const card = document.createElement("figure");
  card.className = "hit";
  card.dataset.id = hit.id;
  const link = document.createElement("a");
  link.href = hit.view;
  const img = document.createElement("img");
  img.loading = "lazy";
  img.src = hit.thumbnail;
  img.alt = baseName(hit.path);
  link.append(img);
  link.setAttribute("aria-label", "open " + baseName(hit.path));
  if (hit.time !== undefined && hit.time !== null) {
    card.classList.add("video");
    const badge = document.createElement("span");
    badge.className = "moment";
    badge.textContent = "\u25B6 " + clock(hit.time);
    link.append(badge);
    link.setAttribute("aria-label", "play " + baseName(hit.path) + " from " + clock(hit.time));
  }
  link.addEventListener("click", (event) => { event.preventDefault(); show(index); });
  const meta = document.createElement("figcaption");
  meta.className = "meta";
  const path = document.createElement("span");
  path.className = "path";
  // Shown from its end (the file name) when too long; the marks keep the slashes in place under rtl.
  path.textContent = "\u200E" + hit.path + "\u200E";
  path.title = hit.path;
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = hit.score.toFixed(3);
  meta.append(path, score);
  const like = document.createElement("button");
  like.className = "like";
  like.type = "button";
  like.textContent = "more like this";
  like.setAttribute("aria-label", "more like " + baseName(hit.path));
  like.addEventListener("click", () => go({ q: "", like: hit.id, likeName: baseName(hit.path) }));
  card.append(link, meta, like);
  return card;
}

function render(data, showWeaker) {
  // The viewer walks the list it was opened on: a new list closes it.
  if (viewer.open) viewer.close();
  results.replaceChildren();
  const best = data.hits.length ? data.hits[0].score : 0;
  const strong = data.hits.filter((h) => h.score >= best - CUTOFF);
  shown = showWeaker ? data.hits : strong;
  shown.forEach((hit, i) => results.append(card(hit, i)));
  const folded = data.hits.length - strong.length;
  weaker.hidden = showWeaker || folded === 0;
  weaker.textContent = "Show " + folded + " weaker matches";
  weaker.onclick = () => { render(data, true); const first = results.querySelectorAll(".hit a")[strong.length]; if (first) first.focus(); };
  more.hidden = !(data.hits.length >= current.top && current.top < 1000 && (showWeaker || folded === 0));
  empty.hidden = true;
  let what = current.q ? JSON.stringify(current.q) : "";
  if (current.like) what = "photos like " + (current.likeName || "#" + current.like) + (what ? " + " + what : "");
  if (current.imageName) what = "photos like " + current.imageName + (what ? " + " + what : "");
  status.textContent = shown.length + " hits for " + what + " among " + data.vectors + " images and video moments (" +
    data.milliseconds.toFixed(0) + " ms)";
}

function params() {
  const p = new URLSearchParams();
  if (current.q) p.set("q", current.q);
  if (current.like) p.set("like", current.like);
  if (folder.value) p.set("folder", folder.value);
  if (from.value) p.set("from", from.value);
  if (to.value) p.set("to", to.value);
  // The dates are this browser's days.
  if (from.value || to.value) p.set("tz", new Date().getTimezoneOffset());
  return p;
}

async function fetchAuthorised(url, options, retried) {
  const response = await fetch(url, Object.assign({ credentials: "same-origin" }, options));
  if (response.status !== 401 || retried) return response;
  const hadKey = document.cookie.split("; ").some((c) => c.startsWith("clip_api_key="));
  if (hadKey) {
    // A key the server refused is not kept.
    document.cookie = "clip_api_key=; path=/; max-age=0; SameSite=Strict";
  }
  const key = window.prompt(hadKey ? "The API key was refused. This server needs an API key:" : "This server needs an API key:");
  if (!key) {
    status.textContent = hadKey ? "The API key was refused." : "This server needs an API key.";
    return response;
  }
  document.cookie = "clip_api_key=" + encodeURIComponent(key) + "; path=/; SameSite=Strict";
  return fetchAuthorised(url, options, true);
}

async function run(focusResults) {
  if (!current.q && !current.like && !current.image) {
    results.replaceChildren(); shown = []; empty.hidden = false; more.hidden = weaker.hidden = true; status.textContent = "";
    return;
  }
  const p = params();
  p.set("top", current.top);
  const mine = ++generation;
  status.textContent = "searching…";
  const options = current.image ? { method: "POST", body: current.image, headers: { "Content-Type": current.image.type || "application/octet-stream" } } : {};
  const response = await fetchAuthorised("/api/search?" + p.toString(), options);
  let data = {};
  try { data = await response.json(); } catch (e) { data = {}; }
  if (mine !== generation) return;
  if (!response.ok) {
    results.replaceChildren();
    if (response.status === 401) {
      status.textContent = "The API key was refused.";
      document.cookie = "clip_api_key=; path=/; max-age=0; SameSite=Strict";
    } else {
      status.textContent = data.error ? data.error.message : "error " + response.status;
    }
    return;
  }
  render(data, false);
  if (focusResults) { const first = results.querySelector(".hit a"); if (first) first.focus(); }
}

function go(next) {
  current = { q: next.q || "", like: next.like || null, likeName: next.likeName || null, image: next.image || null,
              imageName: next.imageName || null, top: PAGE };
  input.value = current.q;
  // An image cannot go in the address; the text and filters do.
  if (!current.image) history.pushState(null, "", "/?" + params().toString());
  run(Boolean(next.like || next.image));
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const q = input.value.trim();
  if (q) go({ q });
});
more.addEventListener("click", () => { current.top = Math.min(1000, current.top + PAGE); run(false); });
for (const control of [folder, from, to]) {
  control.addEventListener("change", () => {
    if (current.q || current.like || current.image) { current.top = PAGE; if (!current.image) history.replaceState(null, "", "/?" + params().toString()); run(false); }
  });
}

// Search by a photo: picked, dropped anywhere on the page, or pasted.
function byImage(blob, name) {
  // A HEIC or RAW file may come without a type: the server says whether it is an image it reads.
  if (!blob || (blob.type && !blob.type.startsWith("image/"))) { status.textContent = "That is not an image."; return; }
  go({ q: input.value.trim(), image: blob, imageName: name || "the pasted image" });
}
$("pick").addEventListener("click", () => file.click());
file.addEventListener("change", () => { if (file.files[0]) byImage(file.files[0], file.files[0].name); file.value = ""; });
let dragDepth = 0;
document.addEventListener("dragenter", (event) => {
  if (dragsFiles(event)) { dragDepth++; drop.hidden = false; }
});
document.addEventListener("dragleave", () => { dragDepth = Math.max(0, dragDepth - 1); if (dragDepth === 0) drop.hidden = true; });
const dragsFiles = (event) => event.dataTransfer && Array.from(event.dataTransfer.types).includes("Files");
// Only a file dragged in is taken: text dragged into the box drops as usual.
document.addEventListener("dragover", (event) => { if (dragsFiles(event)) event.preventDefault(); });
document.addEventListener("drop", (event) => {
  if (!dragsFiles(event)) return;
  event.preventDefault();
  dragDepth = 0; drop.hidden = true;
  const f = event.dataTransfer && event.dataTransfer.files[0];
  if (f) byImage(f, f.name);
});
document.addEventListener("paste", (event) => {
  const item = Array.from((event.clipboardData || {}).items || []).find((i) => i.type.startsWith("image/"));
  if (item) { event.preventDefault(); byImage(item.getAsFile(), "the pasted image"); }
});

async function library() {
  const response = await fetchAuthorised("/api/library", {});
  if (response.status === 401) { $("library").textContent = "The API key was refused."; return; }
  if (!response.ok) { $("library").textContent = "No index is served: start clip serve with --index DB."; return; }
  const data = await response.json();
  const count = (n, one, many) => n.toLocaleString() + " " + (n === 1 ? one : many);
  $("library").textContent = count(data.photos, "photo", "photos") + " and " + count(data.videos, "video", "videos") +
    " from " + (data.folders.join(", ") || "no folder yet") + ", searched with " + data.model + ".";
  for (const f of data.folders.concat(data.subfolders)) {
    const option = document.createElement("option");
    option.value = f;
    option.textContent = f;
    folder.append(option);
  }
}

// A folder from the address that the list lacks (a bookmark of a deeper folder) gets an option of its own, rather
// than the select falling back to every folder without a word.
function selectFolder(value) {
  if (value && !Array.from(folder.options).some((o) => o.value === value)) {
    const option = document.createElement("option");
    option.value = value;
    option.textContent = value;
    folder.append(option);
  }
  folder.value = value;
}

function fromAddress() {
  const p = new URLSearchParams(window.location.search);
  current = { q: p.get("q") || "", like: p.get("like"), likeName: null, image: null, imageName: null, top: PAGE };
  input.value = current.q;
  selectFolder(p.get("folder") || "");
  from.value = p.get("from") || "";
  to.value = p.get("to") || "";
  run(false);
}

window.addEventListener("popstate", fromAddress);
library().then(fromAddress, fromAddress);
input.focus();
