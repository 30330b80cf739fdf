// Small SVG charts drawn by our own code (no chart library, nothing from a CDN). They are
// pictures of numbers that the page also shows as text in a table next to them, so each SVG is
// `aria-hidden` and screen readers read the table. Colours come from classes in app.css (the CSP
// allows no inline style).

const NS = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs = {}) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

function frame(width, height) {
  return svgEl("svg", {
    viewBox: `0 0 ${width} ${height}`,
    width: "100%",
    preserveAspectRatio: "xMinYMin meet",
    class: "chart",
    "aria-hidden": "true",
    focusable: "false",
  });
}

/**
 * Horizontal bars, one per item: `[{ value, kind }]`, `kind` naming the colour class
 * (`bar-ok`, `bar-warn`, `bar-bad`, `bar-neutral`, `bar-primary`). Bars share one scale.
 */
export function barChart(items) {
  const row = 22;
  const width = 320;
  const svg = frame(width, Math.max(row * items.length, row));
  const max = Math.max(1, ...items.map((i) => i.value || 0));
  items.forEach((item, n) => {
    const w = item.value > 0 ? Math.max(2, Math.round(((width - 4) * item.value) / max)) : 0;
    svg.append(svgEl("rect", { x: 0, y: n * row + 3, width: width, height: row - 6, rx: 3, class: "bar-track" }));
    if (w > 0) svg.append(svgEl("rect", { x: 0, y: n * row + 3, width: w, height: row - 6, rx: 3, class: item.kind || "bar-primary" }));
  });
  return svg;
}

/**
 * Stacked columns, oldest on the left: `[{ parts: [{ value, kind }] }]`, with a base line.
 */
export function stackedColumns(columns) {
  const width = 320;
  const height = 120;
  const gap = 8;
  const svg = frame(width, height + 2);
  const totals = columns.map((c) => c.parts.reduce((s, p) => s + (p.value || 0), 0));
  const max = Math.max(1, ...totals);
  const colWidth = (width - gap * (columns.length - 1)) / Math.max(1, columns.length);
  columns.forEach((column, n) => {
    const x = n * (colWidth + gap);
    let y = height;
    for (const part of column.parts) {
      if (!part.value) continue;
      const h = Math.max(1, (height * part.value) / max);
      y -= h;
      svg.append(svgEl("rect", { x, y, width: colWidth, height: h, class: part.kind }));
    }
  });
  svg.append(svgEl("line", { x1: 0, y1: height + 1, x2: width, y2: height + 1, class: "axis" }));
  return svg;
}
