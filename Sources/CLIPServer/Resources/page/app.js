// The search page: GET /api/search?q=…&like=… and a grid of hits. The query stays in the address (back and
// forward work, a search can be bookmarked). An API key, when the server asks for one, is kept as a cookie so
// that thumbnails (plain <img>) are authorised too. A video's hit shows the frame of its best moment; opening it
// plays the video from there (the server answers the byte ranges a <video> seeks by).
"use strict";

const form = document.getElementById("search-form");
const input = document.getElementById("query");
const status = document.getElementById("status");
const results = document.getElementById("results");
const viewer = document.getElementById("viewer");
const player = document.getElementById("player");

function clock(seconds) {
  const tenths = Math.round(seconds * 10);
  const h = Math.floor(tenths / 36000), m = Math.floor(tenths / 600) % 60, s = (tenths % 600) / 10;
  const ss = s.toFixed(1).padStart(4, "0");
  return h > 0 ? h + ":" + String(m).padStart(2, "0") + ":" + ss : m + ":" + ss;
}

function play(hit) {
  player.src = hit.file + "#t=" + hit.time;
  player.addEventListener("loadedmetadata", () => {
    if (Math.abs(player.currentTime - hit.time) > 0.5) player.currentTime = hit.time;
  }, { once: true });
  viewer.querySelector(".caption").textContent = hit.path + " at " + clock(hit.time);
  viewer.showModal();
  player.play().catch(() => {});
}

viewer.addEventListener("close", () => { player.pause(); player.removeAttribute("src"); player.load(); });
viewer.querySelector("button.close").addEventListener("click", () => viewer.close());

function render(data, like) {
  results.replaceChildren();
  for (const hit of data.hits) {
    const card = document.createElement("figure");
    card.className = "hit";
    card.dataset.id = hit.id;
    const link = document.createElement("a");
    link.href = hit.view;
    link.target = "_blank";
    const img = document.createElement("img");
    img.loading = "lazy";
    img.src = hit.thumbnail;
    img.alt = hit.path;
    link.append(img);
    if (hit.time !== undefined && hit.time !== null) {
      card.classList.add("video");
      const badge = document.createElement("span");
      badge.className = "moment";
      badge.textContent = "\u25B6 " + clock(hit.time);
      link.append(badge);
      link.setAttribute("aria-label", "play " + hit.path + " from " + clock(hit.time));
      link.addEventListener("click", (event) => { event.preventDefault(); play(hit); });
    }
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
    const more = document.createElement("button");
    more.className = "like";
    more.type = "button";
    more.textContent = "more like this";
    more.addEventListener("click", () => go("", hit.id));
    card.append(link, meta, more);
    results.append(card);
  }
  const what = like ? "like #" + like + (data.query ? " + " + data.query : "") : JSON.stringify(data.query);
  status.textContent = data.hits.length + " hits for " + what + " among " + data.vectors + " images and video moments (" +
    data.milliseconds.toFixed(0) + " ms)";
}

async function run(q, like) {
  const params = new URLSearchParams();
  if (q) params.set("q", q);
  if (like) params.set("like", like);
  status.textContent = "searching…";
  const response = await fetch("/api/search?" + params.toString(), { credentials: "same-origin" });
  if (response.status === 401) {
    const key = window.prompt("This server needs an API key:");
    if (key) {
      document.cookie = "clip_api_key=" + encodeURIComponent(key) + "; path=/; SameSite=Strict";
      return run(q, like);
    }
  }
  const data = await response.json();
  if (!response.ok) {
    results.replaceChildren();
    status.textContent = data.error ? data.error.message : "error " + response.status;
    return;
  }
  render(data, like);
}

function go(q, like) {
  const params = new URLSearchParams();
  if (q) params.set("q", q);
  if (like) params.set("like", like);
  history.pushState(null, "", "/?" + params.toString());
  input.value = q;
  run(q, like);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const q = input.value.trim();
  if (q) go(q, null);
});

function fromAddress() {
  const params = new URLSearchParams(window.location.search);
  const q = params.get("q") || "";
  const like = params.get("like");
  input.value = q;
  if (q || like) run(q, like);
}

window.addEventListener("popstate", fromAddress);
fromAddress();
