// The AIF, VOF and mean tissue curves of a result as an inline SVG plot: enhancement in HU
// against acquisition time in s. The arterial and venous curves share the left axis; the mean
// tissue curve, some ten times smaller, has its own axis on the right.

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 600;
const HEIGHT = 300;
const MARGIN = { left: 58, right: 58, top: 14, bottom: 46 };

function node(tag, attributes = {}, text = "") {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  if (text) element.textContent = text;
  return element;
}

/** Tick values covering [lo, hi] at a step of 1, 2 or 5 times a power of ten. */
function ticks(lo, hi, count = 5) {
  const raw = (hi - lo) / count || 1;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  const values = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    values.push(Number(v.toPrecision(12)));
  }
  return values;
}

/** A linear scale of `domain` onto `range`, the domain widened to whole ticks, with its ticks. */
function scale(values, range) {
  const finite = values.filter(Number.isFinite);
  let lo = Math.min(0, ...finite);
  let hi = Math.max(...finite, lo + 1);
  const marks = ticks(lo, hi);
  const step = marks.length > 1 ? marks[1] - marks[0] : 1;
  lo = Math.min(lo, Math.floor(lo / step) * step);
  hi = Math.max(hi, Math.ceil(hi / step) * step);
  const map = (v) => range[0] + ((v - lo) / (hi - lo)) * (range[1] - range[0]);
  return { map, ticks: ticks(lo, hi) };
}

function polyline(times, values, x, y, className, label) {
  const points = times.map((t, i) => `${x(t).toFixed(1)},${y(values[i]).toFixed(1)}`).join(" ");
  return node("polyline", { points, class: `curve ${className}`, "data-curve": label });
}

/**
 * Draw the curves into `container`: `times` in s; `aif`, `vof`, `tissue` in HU (each may be
 * null). Returns the SVG element.
 */
export function plotCurves(container, { times, aif, vof, tissue }) {
  const left = MARGIN.left;
  const right = WIDTH - MARGIN.right;
  const top = MARGIN.top;
  const bottom = HEIGHT - MARGIN.bottom;
  const x = scale(times, [left, right]);
  const vessels = scale([...(aif || []), ...(vof || [])], [bottom, top]);
  const svg = node("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "curves", role: "img",
    "aria-labelledby": "curve-title" });
  svg.append(node("title", { id: "curve-title" },
    "Enhancement curves: arterial input (AIF), venous output (VOF) and mean tissue, HU against time in s"));

  const grid = node("g", { class: "axis" });
  for (const t of x.ticks) {
    grid.append(node("line", { x1: x.map(t), x2: x.map(t), y1: top, y2: bottom, class: "grid" }));
    grid.append(node("text", { x: x.map(t), y: bottom + 16, "text-anchor": "middle" }, String(t)));
  }
  for (const v of vessels.ticks) {
    grid.append(node("line", { x1: left, x2: right, y1: vessels.map(v), y2: vessels.map(v), class: "grid" }));
    grid.append(node("text", { x: left - 6, y: vessels.map(v) + 4, "text-anchor": "end" }, String(v)));
  }
  grid.append(node("rect", { x: left, y: top, width: right - left, height: bottom - top, class: "frame" }));
  grid.append(node("text", { x: (left + right) / 2, y: HEIGHT - 8, "text-anchor": "middle", class: "axis-title" },
    "time (s)"));
  grid.append(node("text", { x: 14, y: (top + bottom) / 2, "text-anchor": "middle", class: "axis-title",
    transform: `rotate(-90 14 ${(top + bottom) / 2})` }, "AIF, VOF (HU)"));
  svg.append(grid);

  if (aif) svg.append(polyline(times, aif, x.map, vessels.map, "aif", "aif"));
  if (vof) svg.append(polyline(times, vof, x.map, vessels.map, "vof", "vof"));
  if (tissue) {
    const own = scale(tissue, [bottom, top]);
    const axis = node("g", { class: "axis tissue-axis" });
    for (const v of own.ticks) {
      axis.append(node("text", { x: right + 6, y: own.map(v) + 4, "text-anchor": "start" }, String(v)));
    }
    axis.append(node("text", { x: WIDTH - 12, y: (top + bottom) / 2, "text-anchor": "middle", class: "axis-title",
      transform: `rotate(90 ${WIDTH - 12} ${(top + bottom) / 2})` }, "tissue (HU)"));
    svg.append(axis, polyline(times, tissue, x.map, own.map, "tissue", "tissue"));
  }
  container.replaceChildren(svg);
  return svg;
}
