// Building the page: elements from data, where every piece of text becomes a text node
// (nothing from the API is ever parsed as HTML), and the formatting the pages share.

/**
 * h('a', {href: '#/', class: 'x', onclick: f}, 'text', child, [more]) → an element.
 * Strings and numbers become text nodes; null, undefined and false are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v);
    } else if (k === 'class') {
      el.className = v;
    } else if (k === 'value' || k === 'checked' || k === 'disabled' || k === 'selected') {
      el[k] = v;
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const NUM = new Intl.NumberFormat('en');
export const num = (n) => (typeof n === 'number' ? NUM.format(n) : '–');

/** "3 min ago" for an ISO time; the exact time in the title. */
export function ago(iso) {
  if (!iso) return h('span', { class: 'muted' }, '–');
  const t = new Date(iso);
  const s = Math.round((Date.now() - t.getTime()) / 1000);
  let text;
  if (s < 5) text = 'just now';
  else if (s < 60) text = `${s} s ago`;
  else if (s < 3600) text = `${Math.floor(s / 60)} min ago`;
  else if (s < 86400) text = `${Math.floor(s / 3600)} h ago`;
  else text = `${Math.floor(s / 86400)} d ago`;
  return h('time', { datetime: iso, title: t.toLocaleString() }, text);
}

/** Seconds as "850 ms", "4.2 s", "3 min". */
export function secs(x) {
  if (typeof x !== 'number') return '–';
  if (x === 0) return '0';
  if (x < 1) return `${Math.round(x * 1000)} ms`;
  if (x < 120) return `${x.toFixed(1)} s`;
  return `${Math.round(x / 60)} min`;
}

export const SEVERITIES = ['critical', 'high', 'medium', 'low'];
export const severityRank = (s) => {
  const i = SEVERITIES.indexOf(s);
  return i < 0 ? SEVERITIES.length : i;
};

export const badge = (text, kind) => h('span', { class: `badge badge-${kind || text}` }, text);

/** A table: head labels and rows (arrays of cells). */
export function table(head, rows, attrs = {}) {
  return h(
    'table',
    { class: 'table', ...attrs },
    h('thead', {}, h('tr', {}, head.map((c) => h('th', {}, c)))),
    h('tbody', {}, rows.map((r) => (r instanceof Node ? r : h('tr', {}, r.map((c) => h('td', {}, c)))))),
  );
}

export function card(title, body, extra) {
  return h('section', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', {}, title), extra), body);
}

export const errorBox = (e) =>
  h('div', { class: 'alert', role: 'alert' }, e && e.message ? e.message : String(e));
