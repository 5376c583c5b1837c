// The merchant page: sign in with the API key, upload a capture, watch the job, look at the result,
// publish it and copy the embed snippets. Talks only to /api/v1 with the key.

import "./recon-viewer.js";

const API = "/api/v1";
const origin = location.origin;
// The pipeline's stages in order (recon/pipeline.py STAGES), in the merchant's words; a stage
// the page does not know yet is added when the job reports it.
const STAGES = [
  ["capture", "Reading the photos"],
  ["sfm", "Placing the cameras"],
  ["masks", "Finding the product"],
  ["depth", "Measuring depth"],
  ["fusion", "Fusing the surface"],
  ["mesh", "Building the mesh"],
  ["orient", "Standing it upright"],
  ["texture", "Painting the texture"],
  ["export", "Making the GLB, USDZ and poster"],
];
const POLL_MS = 1000;

const $ = (selector) => document.querySelector(selector);
let apiKey = sessionStorage.getItem("recon-key") || localStorage.getItem("recon-key");
let chosenFiles = [];
let shownModel = null;
let watching = null; // the job id being polled
const blobUrls = new Map(); // private file URL -> object URL (fetched with the key)

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, { method = "GET", body } = {}) {
  const response = await fetch(API + path, {
    method,
    body,
    headers: { Authorization: `Bearer ${apiKey}` },
  });
  if (!response.ok) throw new ApiError(response.status, await errorMessage(response));
  return response.status === 204 ? null : response.json();
}

async function errorMessage(response) {
  try {
    return (await response.json()).error.message;
  } catch {
    return `the server answered ${response.status}`;
  }
}

function show(element, message) {
  element.textContent = message || "";
  element.hidden = !message;
}

// -- signing in ----------------------------------------------------------------------------------

async function signIn(key, remember) {
  apiKey = key;
  const merchant = await api("/merchant");
  (remember ? localStorage : sessionStorage).setItem("recon-key", key);
  $("#merchant-name").textContent = merchant.name;
  $("#storefront-link").href = merchant.storefront_url;
  $("#shop-link").href = merchant.storefront_url;
  $("#who").hidden = false;
  $("#sign-in").hidden = true;
  $("#signed-in").hidden = false;
  await listModels();
  const jobs = await api("/jobs?per_page=5");
  const unfinished = jobs.jobs.find((job) => job.state === "queued" || job.state === "running");
  if (unfinished) watchJob(unfinished);
}

function signOut() {
  sessionStorage.removeItem("recon-key");
  localStorage.removeItem("recon-key");
  location.reload();
}

$("#sign-in").addEventListener("submit", async (event) => {
  event.preventDefault();
  show($("#sign-in-error"), "");
  try {
    await signIn($("#key").value.trim(), $("#remember").checked);
  } catch (error) {
    show($("#sign-in-error"), error.status === 401 ? "This key is not valid." : error.message);
  }
});
$("#sign-out").addEventListener("click", signOut);

// -- choosing files and uploading -----------------------------------------------------------------

function choose(files) {
  chosenFiles = [...files];
  const megabytes = chosenFiles.reduce((sum, file) => sum + file.size, 0) / 2 ** 20;
  $("#chosen").textContent = chosenFiles.length
    ? `${chosenFiles.length} file${chosenFiles.length > 1 ? "s" : ""}, ${megabytes.toFixed(1)} MB`
    : "";
  $("#start").disabled = chosenFiles.length === 0;
}

const drop = $("#drop");
$("#files").addEventListener("change", (event) => choose(event.target.files));
drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  choose(event.dataTransfer.files);
});

$("#upload").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = new FormData();
  for (const file of chosenFiles) form.append("files", file, file.name);
  form.append("preset", $("#preset").value);
  if ($("#name").value.trim()) form.append("name", $("#name").value.trim());
  const heightCm = parseFloat($("#height").value);
  if (heightCm > 0) form.append("height_m", String(heightCm / 100));
  upload(form);
});

function upload(form) {
  // XMLHttpRequest, not fetch: only it reports upload progress.
  const request = new XMLHttpRequest();
  const meter = $("#upload-progress");
  const bar = meter.querySelector("progress");
  const label = meter.querySelector(".label");
  show($("#upload-error"), "");
  meter.hidden = false;
  $("#start").disabled = true;
  request.upload.addEventListener("progress", (event) => {
    if (!event.lengthComputable) return;
    bar.value = (100 * event.loaded) / event.total;
    label.textContent = `Uploading ${(event.loaded / 2 ** 20).toFixed(1)} of ${(event.total / 2 ** 20).toFixed(1)} MB`;
  });
  request.addEventListener("load", () => {
    $("#start").disabled = false;
    let body = null;
    try {
      body = JSON.parse(request.responseText);
    } catch {
      /* not JSON: reported below */
    }
    if (request.status === 202 && body) {
      bar.value = 100;
      label.textContent = "Uploaded";
      watchJob(body);
    } else {
      meter.hidden = true;
      show($("#upload-error"), body?.error?.message || `The upload failed (${request.status}).`);
    }
  });
  request.addEventListener("error", () => {
    $("#start").disabled = false;
    meter.hidden = true;
    show($("#upload-error"), "The upload was interrupted; check the connection and try again.");
  });
  request.open("POST", `${API}/jobs`);
  request.setRequestHeader("Authorization", `Bearer ${apiKey}`);
  request.send(form);
}

// -- watching a job --------------------------------------------------------------------------------

function stageList(job) {
  const names = STAGES.map(([name]) => name);
  if (job.stage && !names.includes(job.stage)) STAGES.push([job.stage, job.stage]);
  const current = STAGES.findIndex(([name]) => name === job.stage);
  $("#stages").replaceChildren(
    ...STAGES.map(([name, words], index) => {
      const item = document.createElement("li");
      item.dataset.stage = name;
      item.textContent = words;
      const done = job.state === "succeeded" || (current >= 0 && index < current);
      item.className = done ? "done" : index === current && job.state === "running" ? "active" : "";
      return item;
    }),
  );
}

function renderJob(job) {
  const section = $("#job");
  section.hidden = false;
  section.dataset.state = job.state;
  $("#job-name").textContent = job.options?.name || "your model";
  $("#job-progress").value = Math.round(job.progress * 100);
  const eta = job.eta_s ? `, about ${Math.max(1, Math.round(job.eta_s / 60))} min left` : "";
  const words = {
    queued: "Waiting for a free worker",
    running: `${Math.round(job.progress * 100)} %${eta}`,
    succeeded: "Done",
    failed: "Failed",
    cancelled: "Cancelled",
  };
  $("#job-status").textContent = words[job.state] || job.state;
  stageList(job);
  show($("#job-error"), job.error ? job.error.message : "");
  $("#cancel").hidden = job.state !== "queued" && job.state !== "running";
}

async function watchJob(job) {
  watching = job.id;
  $("#result").hidden = true;
  renderJob(job);
  while (watching === job.id && (job.state === "queued" || job.state === "running")) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    try {
      job = await api(`/jobs/${job.id}`);
    } catch (error) {
      if (error.status === 404 || error.status === 401) throw error;
      continue; // a dropped poll: try again
    }
    renderJob(job);
  }
  if (job.state === "succeeded" && job.model_id) {
    await listModels();
    await showModel(await api(`/models/${job.model_id}`));
  }
}

$("#cancel").addEventListener("click", async () => {
  if (watching) renderJob(await api(`/jobs/${watching}/cancel`, { method: "POST" }));
});

// -- the result ------------------------------------------------------------------------------------

async function privateFile(url) {
  // The model is private until published, so its files are fetched with the key.
  if (!blobUrls.has(url)) {
    const response = await fetch(url, { headers: { Authorization: `Bearer ${apiKey}` } });
    if (!response.ok) throw new ApiError(response.status, await errorMessage(response));
    blobUrls.set(url, URL.createObjectURL(await response.blob()));
  }
  return blobUrls.get(url);
}

function sizeText(summary) {
  if (summary?.units !== "metre" || !summary.bbox) return "size unknown (give a known height)";
  return summary.bbox.map((metres) => (metres * 100).toFixed(1)).join(" × ") + " cm";
}

async function showModel(model) {
  shownModel = model;
  const section = $("#result");
  section.hidden = false;
  section.dataset.modelId = model.id;
  $("#result-name").textContent = model.name || "Your model";
  const summary = model.summary || {};
  $("#result-facts").textContent = [
    sizeText(summary),
    summary.faces ? `${summary.faces.toLocaleString()} triangles` : null,
    summary.photos_total ? `${summary.photos_used} of ${summary.photos_total} photos used` : null,
  ].filter(Boolean).join(" · ");
  renderPublished(model);
  // The viewer loads lazily, when on screen: bring it there.
  section.scrollIntoView({ behavior: "smooth", block: "start" });
  await $("#result-viewer").showModel(model, { fileUrl: (name) => privateFile(model.files[name].url) });
}

function renderPublished(model) {
  $("#result").dataset.published = String(model.published);
  $("#publish").hidden = model.published;
  $("#unpublish").hidden = !model.published;
  $("#published-links").hidden = !model.published;
  $("#embed").hidden = !model.published;
  if (!model.published) return;
  const title = `${model.name || "Product"} in 3D`.replace(/[&"<>]/g, (c) => `&#${c.charCodeAt(0)};`);
  $("#view-link").href = `/v/${model.id}`;
  $("#embed-iframe").value =
    `<iframe src="${origin}/v/${model.id}" title="${title}" width="100%" height="480" ` +
    `style="border:0" allow="xr-spatial-tracking; fullscreen" loading="lazy"></iframe>`;
  $("#embed-component").value =
    `<script type="module" src="${origin}/viewer/recon-viewer.js"></script>` +
    `<recon-viewer model="${model.id}" style="height:480px"></recon-viewer>`;
}

async function setPublished(model, published) {
  const updated = await api(`/models/${model.id}/${published ? "publish" : "unpublish"}`, { method: "POST" });
  if (shownModel?.id === updated.id) {
    shownModel = updated;
    renderPublished(updated);
  }
  await listModels();
}

$("#publish").addEventListener("click", () => setPublished(shownModel, true));
$("#unpublish").addEventListener("click", () => setPublished(shownModel, false));

// -- the list of models ------------------------------------------------------------------------------

async function listModels() {
  const { models } = await api("/models?per_page=100");
  const rows = models.map((model) => {
    const row = document.createElement("tr");
    row.dataset.modelId = model.id;
    const cells = [
      model.name || model.id,
      new Date(model.created_at).toLocaleString(),
      sizeText(model.summary).replace(/ \(.*/, ""),
      model.published ? "published" : "private",
    ];
    for (const text of cells) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    const actions = document.createElement("td");
    const open = button("Show", () => showModel(model));
    const toggle = button(model.published ? "Unpublish" : "Publish", () => setPublished(model, !model.published));
    actions.append(open, toggle);
    row.append(actions);
    return row;
  });
  $("#models tbody").replaceChildren(...rows);
  $("#no-models").hidden = rows.length > 0;
}

function button(text, onClick) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = text;
  element.addEventListener("click", onClick);
  return element;
}

// -- start -------------------------------------------------------------------------------------------

if (apiKey) {
  signIn(apiKey, Boolean(localStorage.getItem("recon-key"))).catch(() => {
    sessionStorage.removeItem("recon-key");
    localStorage.removeItem("recon-key");
    $("#sign-in").hidden = false;
  });
} else {
  $("#sign-in").hidden = false;
}
