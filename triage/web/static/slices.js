// Map viewer of the study page: one panel per perfusion map at the same slice, each with its
// colour bar and fixed clinical window, the core and Tmax > 6 s overlays and the AIF/VOF marks.
// Pixels and slices are those of the acquisition grid in source-image orientation: x = DICOM
// column, y = DICOM row, z = slice index, as in `--aif X,Y,Z` and `quality.*.location.source_xyz`.
// Each panel has the slice's physical shape (columns x column spacing by rows x row spacing): a
// pixel is drawn sx wide and sy high in display units, sx / sy = its spacing ratio and sx * sy =
// 1 (square pixels: one unit each); the AIF/VOF marks are drawn in those units.

import { el } from "./common.js";

const MAP_NAMES = ["cbf", "cbv", "mtt", "tmax"];
const TITLES = { cbf: "CBF", cbv: "CBV", mtt: "MTT", tmax: "Tmax" };
const OVERLAYS = { hypoperfusion: "Tmax > 6 s", core: "core" }; // drawn in this order: core on top
const SVG = "http://www.w3.org/2000/svg";
const DIRECTIONS = { R: "patient right", L: "patient left", A: "anterior", P: "posterior",
  S: "superior", I: "inferior" };
const WHEEL_STEP = 60; // wheel delta (pixels) per slice; a mouse notch is about 100

function svgNode(tag, attributes) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

/** A window bound as written by a person: no trailing zeros. */
function bound(value) {
  return String(Number(value.toPrecision(4)));
}

export class MapViewer {
  /**
   * Panels for `study` (the GET /api/studies/{id} document) in `container`, showing the
   * images of the study's shown generation (URLs naming it are cached for good) from the
   * study's API URL `base`; `onPick(x, y, z)` is called when a pixel is picked while picking
   * is armed; `prefetch` false fetches no neighbouring slices ahead (a share link's images
   * are not cached).
   */
  constructor(container, study, { onPick, base, prefetch = true }) {
    this.container = container;
    this.study = study;
    this.generation = study.generation;
    this.onPick = onPick;
    this.base = base;
    this.prefetch = prefetch;
    const [rows, columns] = study.matrix;
    this.rows = rows;
    this.columns = columns;
    const [dx, dy] = study.spacing_mm || [1, 1]; // mm between columns, between rows
    this.sx = Math.sqrt(dx / dy);
    this.sy = 1 / this.sx;
    this.width = columns * this.sx;
    this.height = rows * this.sy;
    this.slices = study.slices;
    this.z = 0;
    this.picking = false;
    this.wheel = 0;
    this.marks = this.markLocations(study.result);
    this.panels = MAP_NAMES.filter((name) => name in (study.maps || {})).map((name) => this.panel(name));
    container.replaceChildren(...this.panels.map((panel) => panel.figure));
  }

  /** AIF and VOF first voxels `{name, x, y, z}` of the result's quality section. */
  markLocations(result) {
    const quality = result?.quality || {};
    return [["AIF", quality.aif], ["VOF", quality.vof]]
      .filter(([, part]) => part?.location?.source_xyz)
      .map(([name, part]) => {
        const [x, y, z] = part.location.source_xyz;
        return { name, x, y, z };
      });
  }

  panel(name) {
    const info = this.study.maps[name];
    const [lo, hi] = info.window;
    const windowText = `window ${bound(lo)}–${bound(hi)} ${info.units}`;
    const image = el("img", { class: "map-image", width: this.columns, height: this.rows,
      alt: `${TITLES[name]} map`, draggable: "false" });
    const overlays = Object.fromEntries(Object.entries(OVERLAYS).map(([overlay, label]) => [overlay,
      el("img", { class: `overlay overlay-${overlay}`, alt: `${label} overlay`, draggable: "false",
        width: this.columns, height: this.rows })]));
    const marks = svgNode("svg", { class: "marks", viewBox: `0 0 ${this.width} ${this.height}`,
      preserveAspectRatio: "none", "aria-hidden": "true" });
    // The patient directions at the image's edges (R/L, A/P, S/I), from the series' orientation.
    const edges = Object.entries(this.study.edges || {}).map(([side, letter]) =>
      el("span", { class: `edge edge-${side}`, text: letter, title: DIRECTIONS[letter] }));
    const stack = el("div", { class: "stack" }, image, ...Object.values(overlays), marks, ...edges);
    stack.style.aspectRatio = `${this.width} / ${this.height}`;
    stack.addEventListener("click", (event) => this.onClick(event, image));
    const colorbar = el("img", { class: "colorbar", src: `${this.base}/maps/${name}/colorbar.png`,
      alt: `${TITLES[name]} colour bar, ${windowText}` });
    const figure = el("figure", { class: "map", "data-map": name },
      el("figcaption", {}, el("strong", { text: TITLES[name] }), " ",
        el("span", { class: "window", text: windowText })),
      stack, colorbar);
    return { name, figure, image, overlays, marks };
  }

  /** The URLs of slice `z` of a panel: its map and each overlay (by overlay name). */
  urls(panel, z) {
    const query = `${z}.png?generation=${this.generation}`;
    return { map: `${this.base}/maps/${panel.name}/${query}`,
      ...Object.fromEntries(Object.keys(OVERLAYS).map((overlay) => [overlay, `${this.base}/overlays/${overlay}/${query}`])) };
  }

  /**
   * Show slice `z` (clamped to the series) in every panel, fetching the neighbouring slices of
   * the panels in view ahead (a generation's images are cached for good); returns the slice.
   */
  setSlice(z) {
    this.z = Math.max(0, Math.min(this.slices - 1, Math.round(z)));
    for (const panel of this.panels) {
      const urls = this.urls(panel, this.z);
      panel.image.src = urls.map;
      panel.image.alt = `${TITLES[panel.name]} map, slice ${this.z}`;
      for (const [overlay, image] of Object.entries(panel.overlays)) image.src = urls[overlay];
      this.drawMarks(panel.marks);
      if (panel.figure.hidden || !this.prefetch) continue;
      for (const near of [this.z - 1, this.z + 1].filter((n) => n >= 0 && n < this.slices)) {
        for (const url of Object.values(this.urls(panel, near))) new Image().src = url;
      }
    }
    this.container.dispatchEvent(new CustomEvent("slice", { detail: this.z }));
    return this.z;
  }

  drawMarks(svg) {
    const radius = Math.max(3, this.width / 28);
    const nodes = this.marks.filter((mark) => mark.z === this.z).flatMap((mark) => {
      const cx = (mark.x + 0.5) * this.sx;
      const cy = (mark.y + 0.5) * this.sy;
      const dash = mark.name === "VOF" ? "4 3" : "none";
      const label = svgNode("text", { x: cx + radius * 1.2, y: cy - radius * 1.2, class: "mark-label" });
      label.textContent = mark.name;
      return [
        svgNode("circle", { cx, cy, r: radius, class: "mark-halo" }),
        svgNode("circle", { cx, cy, r: radius, class: `mark mark-${mark.name.toLowerCase()}`,
          "stroke-dasharray": dash }),
        label,
      ];
    });
    svg.replaceChildren(...nodes);
  }

  /** Show one map (`name`) or all of them (`"all"`). */
  setLayout(layout) {
    this.container.dataset.layout = layout;
    for (const panel of this.panels) panel.figure.hidden = layout !== "all" && layout !== panel.name;
  }

  setOverlay(overlay, visible) {
    for (const panel of this.panels) panel.overlays[overlay].hidden = !visible;
  }

  setMarks(visible) {
    for (const panel of this.panels) panel.marks.classList.toggle("hidden", !visible);
  }

  /** Arm or disarm picking a pixel by clicking a map. */
  setPicking(picking) {
    this.picking = picking;
    this.container.classList.toggle("picking", picking);
  }

  /**
   * The acquisition pixel under a pointer event on `image`: the displayed image is scaled by
   * CSS to the panel's physical shape (each axis by its own factor when the pixels are not
   * square), its natural size being the acquisition matrix (columns x rows).
   */
  pixelAt(event, image) {
    const rect = image.getBoundingClientRect();
    const width = image.naturalWidth || this.columns;
    const height = image.naturalHeight || this.rows;
    const x = Math.floor(((event.clientX - rect.left) / rect.width) * width);
    const y = Math.floor(((event.clientY - rect.top) / rect.height) * height);
    return [Math.max(0, Math.min(width - 1, x)), Math.max(0, Math.min(height - 1, y))];
  }

  onClick(event, image) {
    if (!this.picking) return;
    const [x, y] = this.pixelAt(event, image);
    this.onPick(x, y, this.z);
  }

  /** Wheel over a map: one slice per WHEEL_STEP of scrolling (the page itself does not scroll). */
  onWheel(event) {
    if (!event.target.closest(".stack")) return;
    event.preventDefault();
    const scale = event.deltaMode === 1 ? 33 : event.deltaMode === 2 ? 400 : 1;
    const delta = event.deltaY * scale;
    if (Math.sign(delta) !== Math.sign(this.wheel)) this.wheel = 0;
    this.wheel += delta;
    const steps = Math.trunc(this.wheel / WHEEL_STEP);
    if (steps !== 0) {
      this.wheel -= steps * WHEEL_STEP;
      this.setSlice(this.z + steps);
    }
  }
}
