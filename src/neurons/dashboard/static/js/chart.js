// Small SVG charts, no library: a line chart (one path per series, a null y is a gap) and a bar
// chart. Each call replaces the element's content; the SVG carries data-points (how many points
// or bars were drawn) so a test can tell a drawn curve from an empty frame.

const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#4f6bed", "#13a10e", "#d83b01", "#8764b8", "#00a0b0", "#c19c00"];
const PAD = { top: 26, right: 14, bottom: 30, left: 52 };

function node(name, attrs = {}, text) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

// "Nice" tick values covering [lo, hi]: steps of 1, 2 or 5 times a power of ten.
function ticks(lo, hi, count = 4) {
  if (!(hi > lo)) hi = lo + 1;
  const raw = (hi - lo) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) || raw;
  const out = [];
  // Up to the first tick at or past hi, so the top of the scale is never under the data.
  for (let v = Math.floor(lo / step) * step; ; v += step) {
    out.push(Number(v.toPrecision(12)));
    if (v >= hi - step * 1e-9) break;
  }
  return out;
}

function defaultY(v) {
  const a = Math.abs(v);
  if (a >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (a >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
  return String(+v.toFixed(a < 1 && a > 0 ? 3 : 1));
}

// Epoch seconds read as clock times; anything else as a number.
function defaultX(v) {
  if (v > 1e9) {
    return new Date(v * 1000).toLocaleTimeString("en-GB", { hour12: false });
  }
  return defaultY(v);
}

function frame(el, height) {
  const width = Math.max(el.clientWidth || 0, 320);
  const svg = node("svg", {
    class: "chart",
    viewBox: `0 0 ${width} ${height}`,
    width: "100%",
    height,
    role: "img",
  });
  el.replaceChildren(svg);
  return { svg, width };
}

function legend(svg, width, items) {
  let x = width - PAD.right;
  // Right-aligned: lay out from the last item backwards.
  for (const { name, color } of [...items].reverse()) {
    const label = node("text", { x, y: 14, "text-anchor": "end", class: "chart-legend" }, name);
    svg.appendChild(label);
    x -= name.length * 6.4 + 6;
    svg.appendChild(node("rect", { x: x - 10, y: 6, width: 10, height: 10, rx: 2, fill: color }));
    x -= 22;
  }
}

function axisLabels(svg, width, height, xLabel, yLabel) {
  if (yLabel) {
    svg.appendChild(node("text", { x: 4, y: 14, class: "chart-axis-label" }, yLabel));
  }
  if (xLabel) {
    const attrs = { x: width - PAD.right, y: height - 2, "text-anchor": "end", class: "chart-axis-label" };
    svg.appendChild(node("text", attrs, xLabel));
  }
}

export function lineChart(
  el,
  { series, xLabel = "", yLabel = "", height = 180, xFormat = defaultX, yFormat = defaultY },
) {
  const { svg, width } = frame(el, height);
  const colored = (series || []).map((s, i) => ({ ...s, color: s.color || PALETTE[i % PALETTE.length] }));
  const points = colored.flatMap((s) => (s.points || []).filter((p) => p[1] !== null && p[1] !== undefined));
  svg.dataset.points = String(points.length);
  const plotW = width - PAD.left - PAD.right;
  const plotH = height - PAD.top - PAD.bottom;
  legend(svg, width, colored);
  axisLabels(svg, width, height, xLabel, yLabel);
  const xs = colored.flatMap((s) => (s.points || []).map((p) => p[0]));
  if (!xs.length) {
    const attrs = { x: width / 2, y: height / 2, "text-anchor": "middle", class: "chart-empty" };
    svg.appendChild(node("text", attrs, "no data yet"));
    return;
  }
  const x0 = Math.min(...xs);
  const x1 = Math.max(...xs) > x0 ? Math.max(...xs) : x0 + 1;
  const ys = points.map((p) => p[1]);
  const yTicks = ticks(0, Math.max(0, ...ys) || 1);
  const yTop = yTicks[yTicks.length - 1];
  const px = (x) => PAD.left + ((x - x0) / (x1 - x0)) * plotW;
  const py = (y) => PAD.top + plotH - (y / yTop) * plotH;

  for (const t of yTicks) {
    const y = py(t);
    svg.appendChild(node("line", { x1: PAD.left, x2: width - PAD.right, y1: y, y2: y, class: "chart-grid" }));
    const attrs = { x: PAD.left - 6, y: y + 4, "text-anchor": "end", class: "chart-tick" };
    svg.appendChild(node("text", attrs, yFormat(t)));
  }
  const xCount = Math.max(2, Math.min(6, Math.floor(plotW / 110)));
  for (let i = 0; i < xCount; i += 1) {
    const x = x0 + ((x1 - x0) * i) / (xCount - 1);
    const anchor = i === 0 ? "start" : i === xCount - 1 ? "end" : "middle";
    const attrs = { x: px(x), y: height - PAD.bottom + 16, "text-anchor": anchor, class: "chart-tick" };
    svg.appendChild(node("text", attrs, xFormat(x)));
  }
  svg.appendChild(
    node("line", { x1: PAD.left, x2: PAD.left, y1: PAD.top, y2: PAD.top + plotH, class: "chart-axis" }),
  );

  for (const s of colored) {
    let d = "";
    let pen = false;
    let alone = [];
    for (const [x, y] of s.points || []) {
      if (y === null || y === undefined) {
        pen = false;
        continue;
      }
      d += `${pen ? "L" : "M"}${px(x).toFixed(1)},${py(y).toFixed(1)}`;
      if (!pen) alone.push([x, y]);
      pen = true;
    }
    const path = node("path", { d, fill: "none", stroke: s.color, "stroke-width": 2, class: "chart-line" });
    path.appendChild(node("title", {}, s.name));
    svg.appendChild(path);
    // A point with gaps on both sides draws no line: mark it so it is not lost.
    for (const [x, y] of alone) {
      svg.appendChild(node("circle", { cx: px(x), cy: py(y), r: 3, fill: s.color }));
    }
  }
}

export function barChart(el, { bars, yLabel = "", height = 180, yFormat = defaultY }) {
  const { svg, width } = frame(el, height);
  const list = bars || [];
  svg.dataset.points = String(list.length);
  axisLabels(svg, width, height, "", yLabel);
  if (!list.length) {
    const attrs = { x: width / 2, y: height / 2, "text-anchor": "middle", class: "chart-empty" };
    svg.appendChild(node("text", attrs, "no data yet"));
    return;
  }
  const plotW = width - PAD.left - PAD.right;
  const plotH = height - PAD.top - PAD.bottom;
  const yTicks = ticks(0, Math.max(0, ...list.map((b) => Number(b.value) || 0)) || 1);
  const yTop = yTicks[yTicks.length - 1];
  const py = (y) => PAD.top + plotH - (y / yTop) * plotH;
  for (const t of yTicks) {
    const y = py(t);
    svg.appendChild(node("line", { x1: PAD.left, x2: width - PAD.right, y1: y, y2: y, class: "chart-grid" }));
    const attrs = { x: PAD.left - 6, y: y + 4, "text-anchor": "end", class: "chart-tick" };
    svg.appendChild(node("text", attrs, yFormat(t)));
  }
  const slot = plotW / list.length;
  const barW = Math.min(48, slot * 0.7);
  list.forEach((b, i) => {
    const value = Number(b.value) || 0;
    const x = PAD.left + slot * i + (slot - barW) / 2;
    const rect = node("rect", {
      x,
      y: py(value),
      width: barW,
      height: Math.max(0, PAD.top + plotH - py(value)),
      rx: 3,
      fill: b.color || PALETTE[0],
    });
    rect.appendChild(node("title", {}, `${b.label}: ${yFormat(value)}`));
    svg.appendChild(rect);
    const short = String(b.label).length > 14 ? `${String(b.label).slice(0, 13)}…` : String(b.label);
    const attrs = { x: x + barW / 2, y: height - PAD.bottom + 16, "text-anchor": "middle", class: "chart-tick" };
    svg.appendChild(node("text", attrs, short));
  });
}
