// Hand-written SVG charts: a time axis, a value axis, bars or lines.
import { s } from './dom.js';

const W = 520;
const H = 210;
const M = { l: 50, r: 12, t: 14, b: 28 };

/** A round tick step for values up to `max`, about four ticks (whole for counts). */
function niceStep(max, whole) {
  const raw = Math.max(max, whole ? 1 : 1e-9) / 4;
  const exp = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) {
    const step = m * exp;
    if (step >= raw && (!whole || Number.isInteger(step))) return step;
  }
  return 10 * exp;
}

const hhmm = (t) => {
  const d = new Date(t);
  return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
};

function fmt(v, unit) {
  const n = Math.abs(v) >= 100 || Number.isInteger(v) ? Math.round(v).toString() : v.toFixed(1);
  return unit ? `${n} ${unit}` : n;
}

/**
 * A chart over `times` (bucket starts, ms) with `series`: [{ label, values, color,
 * kind: 'bar'|'line' }]. Bars of several series overlap (drawn in order).
 */
export function timeChart({ id, times, step, series, unit = '', title, whole = false }) {
  const iw = W - M.l - M.r;
  const ih = H - M.t - M.b;
  const top = Math.max(0, ...series.flatMap((x) => x.values.filter((v) => v != null)));
  const tick = niceStep(top, whole);
  const ticks = Math.max(1, Math.ceil(top / tick));
  const max = tick * ticks;
  const n = times.length;
  const slot = iw / Math.max(1, n);
  const x = (i) => M.l + i * slot;
  const y = (v) => M.t + ih - (v / max) * ih;
  const svg = s('svg', { id, class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title, preserveAspectRatio: 'xMidYMid meet' });
  if (title) svg.appendChild(s('title', null, title));

  // Grid and value axis.
  for (let k = 0; k <= ticks; k++) {
    const v = tick * k;
    svg.appendChild(s('line', { x1: M.l, x2: W - M.r, y1: y(v), y2: y(v), class: k ? 'grid' : 'axis' }));
    svg.appendChild(s('text', { x: M.l - 6, y: y(v) + 4, class: 'tick', 'text-anchor': 'end' }, fmt(v, k === ticks ? unit : '')));
  }
  // Time axis: a label every ten buckets.
  const every = n > 30 ? 10 : n > 12 ? 5 : 1;
  times.forEach((t, i) => {
    if (i % every === 0) {
      svg.appendChild(s('line', { x1: x(i), x2: x(i), y1: M.t + ih, y2: M.t + ih + 4, class: 'axis' }));
      svg.appendChild(s('text', { x: x(i), y: H - 8, class: 'tick', 'text-anchor': 'middle' }, hhmm(t)));
    }
  });

  for (const [si, ser] of series.entries()) {
    const cls = `series series-${si}`;
    if (ser.kind === 'line') {
      let d = '';
      let pen = false;
      ser.values.forEach((v, i) => {
        if (v == null) {
          pen = false;
          return;
        }
        d += `${pen ? 'L' : 'M'}${(x(i) + slot / 2).toFixed(1)},${y(v).toFixed(1)}`;
        pen = true;
      });
      svg.appendChild(s('path', { d, fill: 'none', stroke: ser.color, 'stroke-width': 2, class: cls }));
      ser.values.forEach((v, i) => {
        if (v == null) return;
        svg.appendChild(s('circle', { cx: x(i) + slot / 2, cy: y(v), r: 2.5, fill: ser.color, class: `${cls} point` },
          s('title', null, `${hhmm(times[i])}–${hhmm(times[i] + step)}: ${ser.label} ${fmt(v, unit)}`)));
      });
    } else {
      ser.values.forEach((v, i) => {
        if (!v) return;
        const bw = Math.max(1, slot - 2);
        svg.appendChild(s('rect', { x: x(i) + 1, y: y(v), width: bw, height: M.t + ih - y(v), fill: ser.color, class: `${cls} bar` },
          s('title', null, `${hhmm(times[i])}–${hhmm(times[i] + step)}: ${fmt(v)} ${ser.label.toLowerCase()}`)));
      });
    }
  }
  return svg;
}

/** A legend for `series`. */
export function legend(series) {
  const el = document.createElement('div');
  el.className = 'legend';
  for (const ser of series) {
    const item = document.createElement('span');
    item.className = 'legend-item';
    const sw = document.createElement('span');
    sw.className = 'swatch';
    sw.style.background = ser.color;
    item.append(sw, ser.label);
    el.appendChild(item);
  }
  return el;
}
