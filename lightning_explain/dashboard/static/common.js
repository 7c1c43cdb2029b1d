// lightning-explain dashboard: shared helpers and the two data sources (the plugin's routes, or a report's
// embedded data). Plain browser JavaScript, no build step; every file adds to window.LightningExplain.
'use strict';
(function (LE) {
  // An element with attributes (class, style, data-*, on* handlers) and children (nodes or strings).
  LE.el = function (tag, attrs, children) {
    const node = document.createElementNS(
      LE.SVG_TAGS.has(tag) ? 'http://www.w3.org/2000/svg' : 'http://www.w3.org/1999/xhtml', tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else if (key === 'text') node.textContent = value;
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of [].concat(children || [])) {
      if (child !== null && child !== undefined) {
        node.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
      }
    }
    return node;
  };
  LE.SVG_TAGS = new Set(['svg', 'g', 'path', 'line', 'rect', 'circle', 'text', 'title', 'polyline']);

  // The index of the largest step <= step in a sorted list (0 when every step is larger), or -1 when empty.
  LE.atOrBefore = function (steps, step) {
    if (!steps.length) return -1;
    let lo = 0, hi = steps.length - 1;
    if (step < steps[0]) return 0;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (steps[mid] <= step) lo = mid; else hi = mid - 1;
    }
    return lo;
  };

  // The step in a sorted list nearest to value.
  LE.nearest = function (steps, value) {
    const i = LE.atOrBefore(steps, value);
    if (i < 0) return null;
    if (i + 1 < steps.length && Math.abs(steps[i + 1] - value) < Math.abs(value - steps[i])) return steps[i + 1];
    return steps[i];
  };

  // The sorted union of every image tag's steps in a run index.
  LE.imageSteps = function (index) {
    const all = new Set();
    for (const entry of Object.values(index ? index.images : {})) entry.steps.forEach((s) => all.add(s));
    return Array.from(all).sort((a, b) => a - b);
  };

  // The sorted union of every scalar's steps: the timeline of a run that logged no images.
  LE.scalarSteps = function (index) {
    const all = new Set();
    for (const points of Object.values(index ? index.scalars : {})) points.forEach(([s]) => all.add(s));
    return Array.from(all).sort((a, b) => a - b);
  };

  // A sample's outcome at one frame of a tag: {cells, target, predicted, confidence, correct, explained, area}
  // (missing: null). explained: the class a multi-label or segmentation map explains; area: its predicted share.
  LE.frameInfo = function (entry, i) {
    const frame = entry.frames[i] || {};
    const cells = 'cells' in frame ? frame.cells : entry.cells;
    return {
      cells: cells || null,
      target: frame.target || null,
      predicted: frame.predicted || null,
      confidence: frame.confidence || null,
      correct: frame.correct || null,
      explained: frame.explained || null,
      area: frame.area || null,
    };
  };

  LE.formatValue = function (v) {
    if (v === null || v === undefined) return '–';
    const a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(2) : String(Number(v.toPrecision(4)));
  };

  LE.PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22'];

  async function fetchJSON(url) {
    const response = await fetch(url, { credentials: 'same-origin' });
    if (!response.ok) {
      let message = response.status + ' ' + response.statusText;
      try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
      throw new Error(message);
    }
    return response.json();
  }

  // The plugin's routes, relative to the iframe's base (…/data/plugin/lightning_explain/).
  LE.serverSource = function (base) {
    const q = encodeURIComponent;
    return {
      live: true,
      runs: () => fetchJSON(base + 'runs'),
      run: (name) => fetchJSON(base + 'run?run=' + q(name)),
      imageUrl: (run, tag, step) => base + 'image?run=' + q(run) + '&tag=' + q(tag) + '&step=' + step,
    };
  };

  // A report's data: {title, runs: [summary], indexes: {run: index}, images: {run: {tag: {step: data URI}}}}.
  LE.embeddedSource = function (data) {
    return {
      live: false,
      title: data.title,
      runs: () => Promise.resolve({ runs: data.runs, logdir: data.logdir, error: null }),
      run: (name) => Promise.resolve(data.indexes[name]),
      imageUrl: (run, tag, step) => data.images[run][tag][String(step)],
    };
  };
})(window.LightningExplain = window.LightningExplain || {});
