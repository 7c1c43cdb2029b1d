// lightning-explain dashboard: the signals under the slider. Every chart shares the slider's step axis, draws
// the alerts as red lines where they fired, a cursor at the slider's step, and moves the slider when clicked.
'use strict';
(function (LE) {
  const el = LE.el;
  const HEIGHT = 36;
  const INSET = 9; // px on each side, as the range input's thumb travels (so the cursor sits under the thumb)

  // explain/<method>/<metric> series share one chart per metric ("explain/*/change"); others get their own.
  LE.groupScalars = function (scalars, filter) {
    const groups = new Map();
    for (const tag of Object.keys(scalars).sort()) {
      if (filter && !filter.test(tag)) continue;
      const parts = tag.split('/');
      let key = tag, label = tag;
      if (parts.length === 3 && parts[0] === 'explain') {
        key = parts[0] + '/*/' + parts[2];
        label = parts[1];
      }
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push({ tag: tag, label: label });
    }
    return groups;
  };

  // The value of a series at the last point at or before step (null before its first point).
  function valueAt(points, step) {
    let value = null;
    for (const [s, v] of points) { if (s > step) break; value = v; }
    return value;
  }

  // Draw the charts into container. view: {scalars, scalars2, alerts, domain: [lo, hi], step, filter, onStep}.
  LE.renderCurves = function (container, view) {
    container.textContent = '';
    const groups = LE.groupScalars(view.scalars, view.filter);
    const alertSteps = [];
    for (const [tag, steps] of Object.entries(view.alerts || {})) steps.forEach((s) => alertSteps.push([tag, s]));
    const alertRow = el('div', { class: 'le-alerts' },
      alertSteps.length
        ? alertSteps.map(([tag, s]) => el('button', {
          class: 'le-alert', 'data-step': s, title: 'jump to step ' + s, onclick: () => view.onStep(s, true),
        }, '⚠ ' + tag + ' fired at step ' + s))
        : [el('span', { class: 'le-muted' }, 'no overfitting alert in this run')]);
    container.appendChild(alertRow);
    if (!groups.size) {
      container.appendChild(el('p', { class: 'le-muted' }, 'no scalar matches the filter'));
      return;
    }
    const width = Math.max(200, container.clientWidth - LE.LABEL_WIDTH - 4);
    const [lo, hi] = view.domain;
    const x = (s) => INSET + (hi > lo ? (s - lo) / (hi - lo) : 0.5) * (width - 2 * INSET);
    for (const [key, members] of groups) {
      const series = [];
      members.forEach((m, i) => {
        series.push({ label: m.label, points: view.scalars[m.tag], colour: LE.PALETTE[i % LE.PALETTE.length] });
        if (view.scalars2 && view.scalars2[m.tag]) {
          series.push({ label: m.label + ' (B)', points: view.scalars2[m.tag], colour: LE.PALETTE[i % 8], dashed: true });
        }
      });
      const values = [];
      series.forEach((s) => s.points.forEach(([, v]) => { if (v !== null) values.push(v); }));
      let vlo = Math.min(...values), vhi = Math.max(...values);
      if (!values.length) { vlo = 0; vhi = 1; }
      if (vhi === vlo) { vlo -= 0.5; vhi += 0.5; }
      const y = (v) => 3 + (1 - (v - vlo) / (vhi - vlo)) * (HEIGHT - 6);
      const svg = el('svg', { class: 'le-chart', width: width, height: HEIGHT, 'data-group': key });
      svg.appendChild(el('rect', { x: 0, y: 0, width: width, height: HEIGHT, class: 'le-chart-bg' }));
      for (const [, s] of alertSteps) {
        svg.appendChild(el('line', { x1: x(s), x2: x(s), y1: 0, y2: HEIGHT, class: 'le-alert-line' }));
      }
      for (const s of series) {
        let d = '';
        let pen = false;
        for (const [step, v] of s.points) {
          if (v === null) { pen = false; continue; }
          d += (pen ? 'L' : 'M') + x(step).toFixed(1) + ',' + y(v).toFixed(1);
          pen = true;
        }
        svg.appendChild(el('path', { d: d, stroke: s.colour, class: s.dashed ? 'le-line le-dashed' : 'le-line' }));
        if (s.points.length <= 60) {
          for (const [step, v] of s.points) {
            if (v === null) continue;
            svg.appendChild(el('circle', { cx: x(step), cy: y(v), r: 2, fill: s.colour },
              el('title', {}, s.label + ' @ ' + step + ': ' + LE.formatValue(v))));
          }
        }
      }
      if (view.step !== null) {
        svg.appendChild(el('line', { x1: x(view.step), x2: x(view.step), y1: 0, y2: HEIGHT, class: 'le-cursor' }));
      }
      svg.addEventListener('click', (event) => {
        const rect = svg.getBoundingClientRect();
        const frac = (event.clientX - rect.left - INSET) / Math.max(1, rect.width - 2 * INSET);
        view.onStep(lo + Math.min(1, Math.max(0, frac)) * (hi - lo), false);
      });
      const legend = series.map((s) => el('span', { class: 'le-legend', style: 'color:' + s.colour },
        s.label + ' ' + LE.formatValue(valueAt(s.points, view.step))));
      container.appendChild(el('div', { class: 'le-chart-row' }, [
        el('div', { class: 'le-chart-label', title: members.map((m) => m.tag).join(', ') },
          [el('div', { class: 'le-chart-name' }, key), el('div', {}, legend)]),
        svg,
      ]));
    }
  };
})(window.LightningExplain = window.LightningExplain || {});
