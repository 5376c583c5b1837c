// <recon-viewer model="ID">: a published product in <model-viewer>, with AR, a size overlay and a
// clear error state. Shops load this module from the recon server; it finds the API and the
// viewer's packages beside itself, so it works from any origin and never touches a CDN.

const moduleUrl = new URL(import.meta.url);
const assetsUrl = new URL("./", moduleUrl);
export const serverOrigin = moduleUrl.origin;

// model-viewer fetches its Draco and KTX2 decoders from Google's CDN unless told where they are;
// it reads this when each element is created. A page's own settings win.
self.ModelViewerElement = {
  dracoDecoderLocation: new URL("vendor/draco/", assetsUrl).href,
  ktx2TranscoderLocation: new URL("vendor/basis/", assetsUrl).href,
  ...(self.ModelViewerElement || {}),
};

let modelViewerLoads = null;

/** Loads <model-viewer> once (unless the page already has it). */
export function loadModelViewer() {
  modelViewerLoads ??= customElements.get("model-viewer")
    ? Promise.resolve()
    : import(new URL("vendor/model-viewer/model-viewer.min.js", assetsUrl).href);
  return modelViewerLoads;
}

/** "19.0 cm" below a metre, "1.25 m" above. */
export function formatLength(metres) {
  return metres < 1 ? `${(metres * 100).toFixed(1)} cm` : `${metres.toFixed(2)} m`;
}

/** The model's real size as [[label, text], ...], or null when its scale is unknown. */
export function realSize(summary) {
  const bbox = summary && summary.bbox;
  if (!summary || summary.units !== "metre" || !Array.isArray(bbox) || bbox.length !== 3) {
    return null;
  }
  const [width, height, depth] = bbox;
  return [["Width", formatLength(width)], ["Height", formatLength(height)], ["Depth", formatLength(depth)]];
}

const TEMPLATE = document.createElement("template");
TEMPLATE.innerHTML = `
  <link rel="stylesheet" href="${new URL("recon-viewer.css", assetsUrl).href}">
  <div class="stage">
    <model-viewer camera-controls touch-action="pan-y" auto-rotate auto-rotate-delay="1500"
        interaction-prompt="auto" loading="lazy" reveal="auto" environment-image="neutral"
        shadow-intensity="1" exposure="1" camera-orbit="-30deg 75deg auto"
        ar ar-modes="webxr scene-viewer quick-look" ar-placement="floor">
      <div slot="progress-bar" class="progress" role="progressbar" aria-label="Loading the 3D model"
          aria-valuemin="0" aria-valuemax="100" aria-valuenow="0"><div class="bar"></div></div>
      <button slot="ar-button" class="ar-button" type="button">View in your room</button>
    </model-viewer>
    <button class="size-toggle" type="button" aria-pressed="false" hidden>Dimensions</button>
    <dl class="dimensions" aria-label="Real size of the product" hidden></dl>
    <div class="error" role="alert" hidden><strong>This 3D model could not be shown.</strong>
      <span class="why"></span></div>
  </div>`;

export class ReconViewerElement extends HTMLElement {
  static observedAttributes = ["model"];

  constructor() {
    super();
    this.attachShadow({ mode: "open" }).append(TEMPLATE.content.cloneNode(true));
    const root = this.shadowRoot;
    this.viewer = root.querySelector("model-viewer");
    this.progress = root.querySelector(".progress");
    this.sizeToggle = root.querySelector(".size-toggle");
    this.dimensions = root.querySelector(".dimensions");
    this.errorBox = root.querySelector(".error");
    this.viewer.addEventListener("progress", (event) => this.#showProgress(event.detail.totalProgress));
    this.viewer.addEventListener("load", () => {
      this.setAttribute("state", "loaded");
      this.dispatchEvent(new CustomEvent("load"));
    });
    this.viewer.addEventListener("error", (event) => {
      const detail = event.detail || {};
      this.showError(
        detail.type === "webglcontextlost"
          ? "Your browser stopped the 3D view; reload the page to try again."
          : "The model file did not load; reload the page, or try again later.",
      );
    });
    this.sizeToggle.addEventListener("click", () => this.toggleDimensions());
  }

  attributeChangedCallback(name, _old, value) {
    if (name === "model" && value) this.#loadPublished(value);
  }

  /** Shows `model` (the API's JSON of a model); `fileUrl(name)` says where each file is. */
  async showModel(model, { fileUrl = (name) => new URL(model.files[name].url, serverOrigin).href } = {}) {
    this.errorBox.hidden = true;
    this.setAttribute("state", "loading");
    this.model = model;
    const viewer = this.viewer;
    const files = model.files || {};
    const name = model.name || "this product";
    const size = realSize(model.summary);
    if (!files["model.glb"]) {
      this.showError("This model has no 3D file yet.");
      return;
    }
    viewer.toggleAttribute("auto-rotate", this.getAttribute("autorotate") !== "false");
    viewer.setAttribute("alt", `3D model of ${name}` +
      (size ? ` (${size.map(([label, text]) => `${label.toLowerCase()} ${text}`).join(", ")})` : ""));
    // Real units: AR shows the product at its true size and lets no one pinch it bigger.
    viewer.setAttribute("ar-scale", size ? "fixed" : "auto");
    const optional = { poster: "poster.webp", "ios-src": "model.usdz" };
    for (const [attribute, file] of Object.entries(optional)) {
      if (files[file]) viewer.setAttribute(attribute, await fileUrl(file));
      else viewer.removeAttribute(attribute);
    }
    this.#fillDimensions(size);
    this.#showProgress(0);
    await loadModelViewer();
    viewer.setAttribute("src", await fileUrl("model.glb"));
  }

  showError(why) {
    this.setAttribute("state", "error");
    this.errorBox.querySelector(".why").textContent = why;
    this.errorBox.hidden = false;
    this.progress.hidden = true;
    this.dispatchEvent(new CustomEvent("error", { detail: { message: why } }));
  }

  toggleDimensions(open = this.dimensions.hidden) {
    if (this.sizeToggle.hidden) return;
    this.dimensions.hidden = !open;
    this.sizeToggle.setAttribute("aria-pressed", String(open));
  }

  async #loadPublished(modelId) {
    this.setAttribute("state", "loading");
    let response;
    try {
      response = await fetch(new URL(`/api/v1/public/models/${encodeURIComponent(modelId)}`, serverOrigin));
    } catch {
      this.showError("The 3D model's server did not answer; check the connection and reload.");
      return;
    }
    if (!response.ok) {
      this.showError(response.status === 404
        ? "This 3D model is not published, or no longer exists."
        : `The 3D model's server answered ${response.status}; try again later.`);
      return;
    }
    await this.showModel(await response.json());
  }

  #fillDimensions(size) {
    this.dimensions.replaceChildren();
    this.dimensions.hidden = true;
    for (const [label, text] of size || []) {
      const term = document.createElement("dt");
      const value = document.createElement("dd");
      term.textContent = label;
      value.textContent = text;
      value.className = label.toLowerCase();
      this.dimensions.append(term, value);
    }
    this.sizeToggle.hidden = !size;
    this.toggleDimensions(Boolean(size) && this.hasAttribute("dimensions"));
  }

  #showProgress(fraction) {
    const percent = Math.round(fraction * 100);
    this.progress.hidden = fraction >= 1;
    this.progress.setAttribute("aria-valuenow", String(percent));
    this.progress.firstElementChild.style.width = `${percent}%`;
  }
}

if (!customElements.get("recon-viewer")) customElements.define("recon-viewer", ReconViewerElement);
