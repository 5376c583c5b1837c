// The showroom walk-through (/showroom/ID): a reconstructed shop space with the merchant's
// products standing in it, in three.js from the server's node_modules (an import map, no bundler,
// no CDN). Walk (drag to look, W A S D / arrow keys, a stick on touch screens) or orbit; a product
// lights up under the pointer and opens its own viewer (/v/MODEL, with AR) in an overlay, so the
// walk keeps its place and the page still works inside a shop's <iframe>.

import * as THREE from "three";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";
import { DRACOLoader } from "three/addons/loaders/DRACOLoader.js";
import { KTX2Loader } from "three/addons/loaders/KTX2Loader.js";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";

const assetsUrl = new URL("./", import.meta.url); // /viewer/
const BACKGROUND = 0xe9e8e4; // showroom.css's body
const HIGHLIGHT = new THREE.Color(0x2f6fde);
const LOOK_RAD_PER_PX = 0.0042;
const TURN_RAD_PER_S = 1.6; // the arrow keys' turn, for walking without a mouse
const CLICK_MAX_PX = 6; // a press that moves further is a drag (a look), not a click
const MAX_PITCH_RAD = THREE.MathUtils.degToRad(85);
const FOV_DEG = 70; // vertical, on a landscape screen
const DEFAULT_EYE = 1.6; // metres; the layout's spawn says the eye height in the scene's units

/** Whether this browser can draw with WebGL 2 (three.js needs it). */
export function webglAvailable() {
  try {
    return Boolean(document.createElement("canvas").getContext("webgl2"));
  } catch {
    return false;
  }
}

/** The URL of a layout's model reference (a path on this server, or a full URL). */
function modelUrl(reference) {
  return new URL(reference, window.location.href).href;
}

export class ShowroomView {
  /** `root` is the page's #showroom element; `showroom` the public JSON (id, name, layout). */
  constructor(root, showroom) {
    this.root = root;
    this.showroom = showroom;
    this.layout = showroom.layout;
    this.productGroups = new Map(); // product id -> THREE.Group
    this.hovered = null;
    this.pressed = new Set(); // KeyboardEvent.code of held keys
    this.pointers = new Map(); // pointerId -> {x, y} of the canvas's pointers
    this.press = null; // where the current press started, to tell a click from a drag
    this.stick = { x: 0, y: 0 }; // the touch stick, -1..1
    this.frames = 0;
    this.dirty = true;
    this.mode = "walk";
    this.yaw = 0;
    this.pitch = 0;
    this.eye = DEFAULT_EYE;
    this.bounds = new THREE.Box3();
    this.raycaster = new THREE.Raycaster();
    this.pointerNdc = null; // the mouse over the canvas, awaiting a hover test

    this.ui = {
      progress: root.querySelector(".progress"),
      modeToggle: root.querySelector(".mode-toggle"),
      listToggle: root.querySelector(".list-toggle"),
      list: root.querySelector(".product-list"),
      tooltip: root.querySelector(".tooltip"),
      joystick: root.querySelector(".joystick"),
      notice: root.querySelector(".notice"),
      overlay: root.querySelector(".product-overlay"),
      walkHelp: root.querySelector(".walk-help"),
      orbitHelp: root.querySelector(".orbit-help"),
    };

    this.renderer = new THREE.WebGLRenderer({ antialias: true });
    this.renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
    this.renderer.outputColorSpace = THREE.SRGBColorSpace;
    this.canvas = this.renderer.domElement;
    this.canvas.tabIndex = 0;
    this.canvas.setAttribute("aria-label", "The showroom in 3D");
    root.prepend(this.canvas);

    this.scene = new THREE.Scene();
    this.scene.background = new THREE.Color(BACKGROUND);
    // Products are lit; the room's texture already holds the light it was photographed in.
    this.scene.add(new THREE.HemisphereLight(0xffffff, 0x9a968c, 2.2));
    const sun = new THREE.DirectionalLight(0xffffff, 1.4);
    sun.position.set(0.4, 1, 0.6);
    this.scene.add(sun);
    this.camera = new THREE.PerspectiveCamera(FOV_DEG, 1, 0.02, 1000);
    this.camera.rotation.order = "YXZ";
    this.controls = new OrbitControls(this.camera, this.canvas);
    this.controls.enabled = false;
    this.controls.enableDamping = true;
    this.controls.addEventListener("change", () => (this.dirty = true));

    this.#listen();
    new ResizeObserver(() => this.#resize()).observe(root);
    this.#resize();
  }

  /** Loads the scene and every product (progress on the bar), then shows the spawn view. */
  async load() {
    const draco = new DRACOLoader().setDecoderPath(new URL("vendor/draco/", assetsUrl).href);
    const ktx2 = new KTX2Loader()
      .setTranscoderPath(new URL("vendor/basis/", assetsUrl).href)
      .detectSupport(this.renderer);
    const loader = new GLTFLoader().setDRACOLoader(draco).setKTX2Loader(ktx2);
    const products = this.layout.products || [];
    const fractions = new Array(products.length + 1).fill(0);
    const track = (index) => (event) => {
      if (event.lengthComputable && event.total > 0) {
        // The last stretch is parsing (and Draco decoding) after the download.
        fractions[index] = 0.95 * Math.min(event.loaded / event.total, 1);
        this.#showProgress(fractions.reduce((a, b) => a + b, 0) / fractions.length);
      }
    };
    const fetchModel = (reference, index) =>
      loader.loadAsync(modelUrl(reference), track(index)).finally(() => {
        fractions[index] = 1;
        this.#showProgress(fractions.reduce((a, b) => a + b, 0) / fractions.length);
      });

    this.#showProgress(0);
    const sceneLoad = fetchModel(this.layout.scene.model, 0);
    // Settled from the start: a product that fails while the room loads is no stray rejection.
    const productLoads = Promise.allSettled(
      products.map((product, i) => fetchModel(product.model, i + 1)),
    );
    let room;
    try {
      room = await sceneLoad;
    } catch (error) {
      throw new Error(
        `The shop space's 3D file did not load (${describe(error)}); reload the page, or try again later.`,
      );
    }
    this.#addRoom(room.scene);
    const results = await productLoads;
    const missing = [];
    results.forEach((result, i) => {
      if (result.status === "fulfilled") this.#addProduct(products[i], result.value.scene);
      else missing.push(products[i].name || products[i].id);
    });
    if (missing.length) {
      const which = missing.length === 1 ? "A product" : `${missing.length} products`;
      this.#showNotice(`${which} could not be shown: ${missing.join(", ")}.`);
    }
    this.#fillList();
    draco.dispose(); // their decoding workers are done
    ktx2.dispose();
    this.#spawn();
    this.#showProgress(1);
    this.dirty = true;
    await new Promise((resolve) => {
      this.onFirstFrame = resolve;
      this.#tick();
    });
    this.root.dataset.state = "ready";
    this.root.dispatchEvent(new CustomEvent("showroom-ready", { bubbles: true }));
  }

  /** Product ids, names, viewer pages and whether each one is in the scene. */
  get products() {
    return (this.layout.products || []).map((p) => ({
      id: p.id,
      name: p.name,
      modelId: p.model_id ?? null,
      viewerUrl: p.viewer_url ?? null,
      loaded: this.productGroups.has(p.id),
    }));
  }

  /** A point of the canvas (CSS px from its top left) where product `id` is seen, not hidden
   * behind the room or another product; null when it is out of sight. */
  screenPointOf(id) {
    const group = this.productGroups.get(id);
    if (!group) return null;
    this.camera.updateMatrixWorld();
    const box = new THREE.Box3().setFromObject(group);
    const corners = [];
    for (const x of [box.min.x, box.max.x])
      for (const y of [box.min.y, box.max.y])
        for (const z of [box.min.z, box.max.z]) corners.push(new THREE.Vector3(x, y, z).project(this.camera));
    if (corners.some((c) => c.z > 1)) return null; // partly behind the camera
    const xs = corners.map((c) => c.x);
    const ys = corners.map((c) => c.y);
    const lo = [Math.max(-1, Math.min(...xs)), Math.max(-1, Math.min(...ys))];
    const hi = [Math.min(1, Math.max(...xs)), Math.min(1, Math.max(...ys))];
    if (lo[0] >= hi[0] || lo[1] >= hi[1]) return null;
    const samples = [];
    for (let i = 1; i < 12; i++)
      for (let j = 1; j < 12; j++) {
        samples.push([lo[0] + ((hi[0] - lo[0]) * i) / 12, lo[1] + ((hi[1] - lo[1]) * j) / 12]);
      }
    const centre = [(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2];
    const offCentre = ([x, y]) => Math.hypot(x - centre[0], y - centre[1]);
    samples.sort((a, b) => offCentre(a) - offCentre(b));
    const rect = this.canvas.getBoundingClientRect();
    for (const [x, y] of samples) {
      if (this.#productAt(new THREE.Vector2(x, y))?.id === id) {
        return { x: ((x + 1) / 2) * rect.width, y: ((1 - y) / 2) * rect.height };
      }
    }
    return null;
  }

  /** Opens the product's viewer page over the showroom. */
  openProduct(id) {
    const product = (this.layout.products || []).find((p) => p.id === id);
    if (!product || !product.viewer_url) return;
    const { overlay } = this.ui;
    overlay.querySelector(".overlay-title").textContent = product.name || "Product";
    overlay.querySelector(".overlay-open").href = product.viewer_url;
    overlay.querySelector("iframe").src = product.viewer_url;
    overlay.hidden = false;
    this.pressed.clear();
    this.root.dataset.openProduct = id;
    overlay.querySelector(".overlay-close").focus();
  }

  closeProduct() {
    const { overlay } = this.ui;
    if (overlay.hidden) return;
    overlay.hidden = true;
    overlay.querySelector("iframe").src = "about:blank";
    delete this.root.dataset.openProduct;
    this.canvas.focus();
  }

  setMode(mode) {
    if (mode === this.mode) return;
    this.mode = mode;
    this.root.dataset.navigation = mode;
    this.ui.modeToggle.setAttribute("aria-pressed", String(mode === "orbit"));
    this.ui.modeToggle.textContent = mode === "orbit" ? "Walk" : "Orbit view";
    this.ui.walkHelp.hidden = mode !== "walk";
    this.ui.orbitHelp.hidden = mode !== "orbit";
    this.pressed.clear();
    if (mode === "orbit") {
      // Turn around the middle of the room at product height; zooming out shows it whole.
      const centre = this.bounds.getCenter(new THREE.Vector3());
      this.controls.target.set(centre.x, this.eye * 0.5, centre.z);
      this.controls.enabled = true;
      this.controls.update();
    } else {
      this.controls.enabled = false;
      const forward = this.camera.getWorldDirection(new THREE.Vector3());
      this.yaw = Math.atan2(-forward.x, -forward.z);
      this.pitch = THREE.MathUtils.clamp(Math.asin(forward.y), -MAX_PITCH_RAD, MAX_PITCH_RAD);
      this.camera.position.y = this.eye;
      this.#clampToRoom();
      this.#applyLook();
    }
    this.dirty = true;
  }

  #addRoom(room) {
    room.traverse((node) => {
      if (!node.isMesh) return;
      const material = node.material;
      // A reconstruction's texture (or vertex colours) already holds the room's light: shown
      // unlit, the space looks as photographed instead of lit twice.
      if (material && (material.map || node.geometry.attributes.color)) {
        node.material = new THREE.MeshBasicMaterial({
          map: material.map,
          color: material.color,
          vertexColors: Boolean(node.geometry.attributes.color),
          side: material.side,
          transparent: material.transparent,
          alphaTest: material.alphaTest,
        });
        material.dispose();
      }
    });
    room.name = "scene";
    this.room = room;
    this.scene.add(room);
    this.bounds.setFromObject(room);
    const size = this.bounds.getSize(new THREE.Vector3());
    const diagonal = Math.max(size.length(), 1e-3);
    this.camera.near = diagonal / 2000;
    this.camera.far = diagonal * 4;
    this.camera.updateProjectionMatrix();
    this.controls.maxDistance = diagonal * 1.5;
  }

  #addProduct(product, model) {
    const group = new THREE.Group();
    group.name = `product:${product.id}`;
    group.userData.product = product;
    group.position.fromArray(product.position || [0, 0, 0]);
    group.rotation.y = THREE.MathUtils.degToRad(product.rotation_y_deg || 0);
    group.scale.setScalar(product.scale ?? 1);
    model.traverse((node) => {
      if (node.isMesh && node.material) {
        // Its own materials, so lighting it up under the pointer touches nothing else.
        node.material = Array.isArray(node.material)
          ? node.material.map((material) => material.clone())
          : node.material.clone();
      }
    });
    group.add(model);
    this.scene.add(group);
    this.productGroups.set(product.id, group);
  }

  #fillList() {
    const items = (this.layout.products || []).filter((p) => this.productGroups.has(p.id));
    const list = this.ui.list.querySelector("ul");
    list.replaceChildren(
      ...items.map((product) => {
        const item = document.createElement("li");
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = product.name || "Product";
        button.dataset.productId = product.id;
        button.disabled = !product.viewer_url;
        button.addEventListener("click", () => this.openProduct(product.id));
        item.append(button);
        return item;
      }),
    );
    this.ui.listToggle.hidden = items.length === 0;
  }

  #spawn() {
    const spawn = this.layout.spawn;
    const centre = this.bounds.getCenter(new THREE.Vector3());
    const position = spawn?.position
      ? new THREE.Vector3().fromArray(spawn.position)
      : new THREE.Vector3(centre.x, DEFAULT_EYE, centre.z);
    const target = spawn?.look_at
      ? new THREE.Vector3().fromArray(spawn.look_at)
      : new THREE.Vector3(centre.x, position.y, centre.z - 1);
    this.eye = position.y > 0 ? position.y : DEFAULT_EYE;
    this.camera.position.copy(position);
    const direction = target.sub(position).normalize();
    this.yaw = Math.atan2(-direction.x, -direction.z);
    this.pitch = THREE.MathUtils.clamp(Math.asin(direction.y), -MAX_PITCH_RAD, MAX_PITCH_RAD);
    this.#applyLook();
  }

  #applyLook() {
    this.camera.rotation.set(this.pitch, this.yaw, 0);
    this.dirty = true;
  }

  /** Steps the walker `forward` and `right` (scene units) on the floor plane. */
  #walk(forward, right) {
    const sin = Math.sin(this.yaw);
    const cos = Math.cos(this.yaw);
    const dx = -sin * forward + cos * right;
    const dz = -cos * forward - sin * right;
    const p = this.camera.position;
    // Blocked straight ahead: slide along the wall or the counter instead of stopping dead.
    for (const [x, z] of [[dx, dz], [dx, 0], [0, dz]]) {
      if (this.#mayStand(p.x + x, p.z + z) || !this.#mayStand(p.x, p.z)) {
        p.x += x;
        p.z += z;
        break;
      }
    }
    this.#clampToRoom();
    this.dirty = true;
  }

  /** Whether the visitor may stand at x, z: clear of the walls, of tables, counters and
   * shelves below eye height (the layout's surfaces; the room's box bounds the rest) and of
   * the products. */
  #mayStand(x, z) {
    const radius = this.eye * 0.15;
    for (const surface of this.layout.scene.surfaces || []) {
      const outline = surface.polygon_xz || [];
      if (surface.kind === "wall" && outline.length === 2) {
        if (distanceToSegment(x, z, outline[0], outline[1]) < radius) return false;
      } else if (surface.kind !== "floor" && surface.kind !== "wall" && outline.length >= 3) {
        if (!(surface.height_m < this.eye)) continue; // overhead: walk under it
        if (insidePolygon(x, z, outline)) return false;
        for (let i = 0; i < outline.length; i++) {
          const next = outline[(i + 1) % outline.length];
          if (distanceToSegment(x, z, outline[i], next) < radius) return false;
        }
      }
    }
    for (const product of this.layout.products || []) {
      const [px, py, pz] = product.position || [];
      const [w, , d] = (product.bbox_m || [0, 0, 0]).map((v) => v * (product.scale ?? 1));
      if (py < this.eye && Math.hypot(x - px, z - pz) < radius + Math.hypot(w, d) / 2) return false;
    }
    return true;
  }

  #clampToRoom() {
    if (this.bounds.isEmpty()) return;
    const margin = this.eye * 0.15;
    const p = this.camera.position;
    const { min, max } = this.bounds;
    p.x = THREE.MathUtils.clamp(p.x, min.x + margin, Math.max(max.x - margin, min.x + margin));
    p.z = THREE.MathUtils.clamp(p.z, min.z + margin, Math.max(max.z - margin, min.z + margin));
  }

  #tick() {
    const now = performance.now();
    const dt = Math.min((now - (this.lastTick ?? now)) / 1000, 0.1);
    this.lastTick = now;
    if (this.mode === "walk") {
      const held = (...codes) => codes.some((code) => this.pressed.has(code));
      const speed = this.eye * 0.9 * (held("ShiftLeft", "ShiftRight") ? 2 : 1); // ~1.4 m/s
      const forward = (held("KeyW", "ArrowUp") ? 1 : 0) - (held("KeyS", "ArrowDown") ? 1 : 0) - this.stick.y;
      const right = (held("KeyD") ? 1 : 0) - (held("KeyA") ? 1 : 0) + this.stick.x;
      const turn = (held("ArrowLeft") ? 1 : 0) - (held("ArrowRight") ? 1 : 0);
      if (turn) {
        this.yaw += turn * TURN_RAD_PER_S * dt;
        this.#applyLook();
      }
      if (forward || right) this.#walk(forward * speed * dt, right * speed * dt);
    } else {
      this.controls.update(dt);
    }
    if (this.pointerNdc) this.#hover();
    if (this.dirty) {
      this.dirty = false;
      this.renderer.render(this.scene, this.camera);
      this.frames += 1;
      this.onFirstFrame?.();
      this.onFirstFrame = null;
    }
    requestAnimationFrame(() => this.#tick());
  }

  /** The product whose surface is first along the ray through `ndc` (room walls hide them). */
  #productAt(ndc) {
    const groups = [...this.productGroups.values()];
    if (!groups.length) return null;
    this.raycaster.setFromCamera(ndc, this.camera);
    const hit = this.raycaster.intersectObjects(groups, true)[0];
    if (!hit) return null;
    // Only now the room's (larger) mesh: is a wall nearer than the product?
    const wall = this.room ? this.raycaster.intersectObject(this.room, true)[0] : null;
    if (wall && wall.distance < hit.distance - 1e-3 * this.eye) return null;
    let node = hit.object;
    while (node && !node.userData.product) node = node.parent;
    return node ? node.userData.product : null;
  }

  #hover() {
    const ndc = this.pointerNdc;
    this.pointerNdc = null;
    const product = this.dragging ? null : this.#productAt(ndc.vector);
    if ((product?.id ?? null) !== (this.hovered?.id ?? null)) {
      if (this.hovered) this.#highlight(this.hovered.id, false);
      if (product) this.#highlight(product.id, true);
      this.hovered = product;
      this.root.dataset.hovered = product ? product.id : "";
      this.dirty = true;
    }
    const { tooltip } = this.ui;
    this.canvas.classList.toggle("over-product", Boolean(product?.viewer_url));
    tooltip.hidden = !product;
    if (product) {
      tooltip.textContent = product.name || "Product";
      tooltip.style.left = `${ndc.x}px`;
      tooltip.style.top = `${ndc.y}px`;
    }
  }

  #highlight(id, on) {
    this.productGroups.get(id)?.traverse((node) => {
      if (!node.isMesh) return;
      for (const material of [node.material].flat()) {
        if (!material.emissive) continue;
        material.userData.emissive ??= material.emissive.clone();
        material.emissive.copy(on ? HIGHLIGHT : material.userData.emissive);
        material.emissiveIntensity = on ? 0.35 : 1;
      }
    });
  }

  #listen() {
    const { canvas, ui } = this;
    const local = (event) => {
      const rect = canvas.getBoundingClientRect();
      return { x: event.clientX - rect.left, y: event.clientY - rect.top, rect };
    };
    canvas.addEventListener("pointerdown", (event) => {
      const { x, y } = local(event);
      this.pointers.set(event.pointerId, { x, y });
      if (this.pointers.size === 1) this.press = { x, y, moved: 0 };
      else this.press = null; // two fingers: a move, never a click
      if (this.mode === "walk") capture(canvas, event.pointerId);
      canvas.focus({ preventScroll: true });
    });
    canvas.addEventListener("pointermove", (event) => {
      const { x, y, rect } = local(event);
      const last = this.pointers.get(event.pointerId);
      if (last) {
        const dx = x - last.x;
        const dy = y - last.y;
        last.x = x;
        last.y = y;
        if (this.press) this.press.moved += Math.hypot(dx, dy);
        this.dragging = !this.press || this.press.moved > CLICK_MAX_PX;
        canvas.classList.toggle("dragging", this.dragging);
        if (this.mode === "walk" && this.dragging) {
          if (this.pointers.size === 1) {
            this.yaw += dx * LOOK_RAD_PER_PX;
            const pitch = this.pitch + dy * LOOK_RAD_PER_PX;
            this.pitch = THREE.MathUtils.clamp(pitch, -MAX_PITCH_RAD, MAX_PITCH_RAD);
            this.#applyLook();
          } else {
            // Two fingers push the walker: up the screen is forward, sideways is a side step.
            const step = this.eye / 300 / this.pointers.size;
            this.#walk(-dy * step, dx * step);
          }
        }
      } else if (event.pointerType === "mouse") {
        this.pointerNdc = { vector: toNdc(x, y, rect), x, y };
      }
    });
    const release = (event) => {
      if (!this.pointers.delete(event.pointerId)) return;
      const { x, y, rect } = local(event);
      if (event.type === "pointerup" && this.press && this.press.moved <= CLICK_MAX_PX) {
        const product = this.#productAt(toNdc(x, y, rect));
        if (product) this.openProduct(product.id);
      }
      if (this.pointers.size === 0) {
        this.press = null;
        this.dragging = false;
        canvas.classList.remove("dragging");
      }
    };
    canvas.addEventListener("pointerup", release);
    canvas.addEventListener("pointercancel", release);
    canvas.addEventListener("pointerleave", () => {
      if (this.pointers.size) return;
      this.pointerNdc = null;
      ui.tooltip.hidden = true;
      if (this.hovered) {
        this.#highlight(this.hovered.id, false);
        this.hovered = null;
        this.dirty = true;
      }
    });
    canvas.addEventListener("webglcontextlost", (event) => {
      event.preventDefault();
      showError("Your browser stopped the 3D view; reload the page to try again.");
    });

    // Keys belong to the walk unless the product overlay or a control has them.
    const movementKeys = new Set(["KeyW", "KeyA", "KeyS", "KeyD", "ArrowUp", "ArrowDown",
      "ArrowLeft", "ArrowRight", "ShiftLeft", "ShiftRight"]);
    window.addEventListener("keydown", (event) => {
      if (event.code === "Escape") {
        this.closeProduct();
        return;
      }
      if (!ui.overlay.hidden || event.target.closest?.("input, textarea, select")) return;
      if (event.code === "KeyO" && !event.repeat) {
        this.setMode(this.mode === "walk" ? "orbit" : "walk");
        return;
      }
      if (movementKeys.has(event.code) && this.mode === "walk") {
        this.pressed.add(event.code);
        event.preventDefault(); // arrows would scroll the embedding page
      }
    });
    window.addEventListener("keyup", (event) => this.pressed.delete(event.code));
    window.addEventListener("blur", () => this.pressed.clear());

    ui.modeToggle.addEventListener("click", () => this.setMode(this.mode === "walk" ? "orbit" : "walk"));
    ui.listToggle.addEventListener("click", () => {
      const open = ui.list.hidden;
      ui.list.hidden = !open;
      ui.listToggle.setAttribute("aria-expanded", String(open));
    });
    ui.overlay.querySelector(".overlay-close").addEventListener("click", () => this.closeProduct());
    // Escape pressed inside the product's viewer (same origin) closes it too.
    ui.overlay.querySelector("iframe").addEventListener("load", (event) => {
      try {
        event.target.contentWindow.addEventListener("keydown", (key) => {
          if (key.code === "Escape") this.closeProduct();
        });
      } catch {
        // A viewer on another origin keeps its keys; the Close button still works.
      }
    });

    // The touch stick: its knob's offset from the middle is the walking direction and speed.
    const stick = ui.joystick;
    const knob = stick.querySelector(".knob");
    const steer = (event) => {
      const rect = stick.getBoundingClientRect();
      const radius = rect.width / 2;
      let dx = (event.clientX - rect.left - radius) / radius;
      let dy = (event.clientY - rect.top - radius) / radius;
      const length = Math.hypot(dx, dy);
      if (length > 1) {
        dx /= length;
        dy /= length;
      }
      this.stick = { x: dx, y: dy };
      knob.style.transform = `translate(${dx * radius * 0.6}px, ${dy * radius * 0.6}px)`;
    };
    stick.addEventListener("pointerdown", (event) => {
      capture(stick, event.pointerId);
      steer(event);
    });
    stick.addEventListener("pointermove", (event) => {
      if (event.buttons || event.pointerType === "touch") steer(event);
    });
    const letGo = () => {
      this.stick = { x: 0, y: 0 };
      knob.style.transform = "";
    };
    stick.addEventListener("pointerup", letGo);
    stick.addEventListener("pointercancel", letGo);
  }

  #resize() {
    const width = Math.max(this.root.clientWidth, 1);
    const height = Math.max(this.root.clientHeight, 1);
    this.renderer.setSize(width, height, false);
    this.camera.aspect = width / height;
    // A tall phone screen keeps about as much of the room across it as a wide one.
    const halfFov = Math.atan(Math.tan(THREE.MathUtils.degToRad(FOV_DEG / 2)) / Math.min(this.camera.aspect, 1));
    this.camera.fov = Math.min(2 * THREE.MathUtils.radToDeg(halfFov), 100);
    this.camera.updateProjectionMatrix();
    this.dirty = true;
  }

  #showProgress(fraction) {
    const percent = Math.round(fraction * 100);
    const { progress } = this.ui;
    progress.hidden = fraction >= 1;
    progress.setAttribute("aria-valuenow", String(percent));
    progress.firstElementChild.style.width = `${percent}%`;
  }

  #showNotice(text) {
    this.ui.notice.textContent = text;
    this.ui.notice.hidden = false;
  }
}

/** Distance from point x, z to the segment a-b ([x, z] pairs). */
function distanceToSegment(x, z, a, b) {
  const ex = b[0] - a[0];
  const ez = b[1] - a[1];
  const t = THREE.MathUtils.clamp(((x - a[0]) * ex + (z - a[1]) * ez) / (ex * ex + ez * ez || 1), 0, 1);
  return Math.hypot(x - a[0] - t * ex, z - a[1] - t * ez);
}

/** Whether point x, z is inside `polygon` ([[x, z], ...], even-odd rule). */
function insidePolygon(x, z, polygon) {
  let inside = false;
  for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
    const [xi, zi] = polygon[i];
    const [xj, zj] = polygon[j];
    if (zi > z !== zj > z && x < ((xj - xi) * (z - zi)) / (zj - zi) + xi) inside = !inside;
  }
  return inside;
}

/** Normalised device coordinates (-1..1, y up) of a point `x`, `y` CSS px into `rect`. */
function toNdc(x, y, rect) {
  return new THREE.Vector2((x / rect.width) * 2 - 1, 1 - (y / rect.height) * 2);
}

/** Keeps a pointer's moves coming to `element` while pressed (even off it). */
function capture(element, pointerId) {
  try {
    element.setPointerCapture(pointerId);
  } catch {
    // The pointer is already gone (released before this ran): nothing to keep.
  }
}

function describe(error) {
  const text = String(error?.message || error || "unknown error");
  return text.length > 160 ? `${text.slice(0, 157)}...` : text;
}

/** Shows `why` in place of the showroom (the page's error box). */
export function showError(why) {
  const root = document.getElementById("showroom");
  if (!root) return;
  root.dataset.state = "error";
  root.querySelector(".error .why").textContent = why;
  root.querySelector(".error").hidden = false;
  root.querySelector(".progress").hidden = true;
}

async function main() {
  const root = document.getElementById("showroom");
  if (!root) return;
  if (!webglAvailable()) {
    showError(
      "Your browser cannot show 3D here: WebGL 2 is turned off or not supported. " +
        "Try an up-to-date browser, or turn on hardware acceleration.",
    );
    return;
  }
  const id = root.dataset.showroomId;
  let response;
  try {
    response = await fetch(`/api/v1/public/showrooms/${encodeURIComponent(id)}`);
  } catch {
    showError("The showroom's server did not answer; check the connection and reload.");
    return;
  }
  if (!response.ok) {
    showError(
      response.status === 404
        ? "This showroom no longer exists."
        : `The showroom's server answered ${response.status}; try again later.`,
    );
    return;
  }
  const view = new ShowroomView(root, await response.json());
  window.reconShowroom = view; // for the embedding page's scripts and the browser tests
  try {
    await view.load();
  } catch (error) {
    showError(describe(error));
  }
}

main();
