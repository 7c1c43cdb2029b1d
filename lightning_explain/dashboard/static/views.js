// lightning-explain dashboard: the probe grids at the slider's step (one card per image tag, one pane per
// compared step or run) and the filmstrip of one sample across the run (one row per method).
'use strict';
(function (LE) {
  const el = LE.el;
  const FRAME_HEIGHT = 72;

  function outcomeText(info, sample) {
    const parts = [];
    if (info.explained) parts.push('class ' + info.explained[sample]);
    if (info.area) parts.push('area ' + Math.round(100 * info.area[sample]) + '%');
    if (info.target && typeof info.target[sample] === 'boolean') {
      parts.push(info.target[sample] ? 'a true label' : 'not a label');  // multi-label: is the class a label
    } else if (info.target) parts.push('label ' + info.target[sample]);
    if (info.explained && info.confidence && !info.predicted) {
      parts.push('p ' + Math.round(100 * info.confidence[sample]) + '%');
    }
    if (info.predicted) {
      let text = 'pred ' + info.predicted[sample];
      if (info.confidence) text += ' (' + Math.round(100 * info.confidence[sample]) + '%)';
      parts.push(text);
    }
    if (info.correct) parts.push(info.correct[sample] ? '✓ right' : '✗ wrong');
    return parts.join(' · ');
  }

  // The sample whose cell holds the click, or null (no layout, or a click between cells).
  function sampleAt(event, img, cells, size) {
    if (!cells || !size) return null;
    const rect = img.getBoundingClientRect();
    const px = (event.clientX - rect.left) / rect.width * size[0];
    const py = (event.clientY - rect.top) / rect.height * size[1];
    for (let i = 0; i < cells.length; i++) {
      const b = cells[i];
      if (b && px >= b[0] && px < b[0] + b[2] && py >= b[1] && py < b[1] + b[3]) return i;
    }
    return null;
  }

  // view: {source, tags: [tag], panes: [{run, index, step, label}], sample, onSample, structure}
  LE.renderGrids = function (container, view) {
    if (container.dataset.structure !== view.structure) {
      container.textContent = '';
      container.dataset.structure = view.structure;
      let group = null;
      for (const tag of view.tags) {
        const prefix = tag.split('/')[0];
        if (prefix !== group) {
          group = prefix;
          container.appendChild(el('h3', { class: 'le-group' }, prefix));
        }
        const panes = view.panes.map((p, i) => el('div', { class: 'le-pane', 'data-pane': i }, [
          el('div', { class: 'le-pane-label' }),
          el('div', { class: 'le-imgwrap' }, [el('img', { class: 'le-grid', alt: tag, draggable: 'false' }),
            el('div', { class: 'le-mark', hidden: true })]),
          el('div', { class: 'le-pane-outcome' }),
        ]));
        container.appendChild(el('div', { class: 'le-card', 'data-tag': tag }, [
          el('div', { class: 'le-card-title' }, tag), el('div', { class: 'le-panes' }, panes)]));
      }
    }
    for (const card of container.querySelectorAll('.le-card')) {
      const tag = card.dataset.tag;
      card.querySelectorAll('.le-pane').forEach((node, i) => updatePane(node, tag, view.panes[i], view));
    }
  };

  function updatePane(node, tag, pane, view) {
    const img = node.querySelector('img');
    const label = node.querySelector('.le-pane-label');
    const mark = node.querySelector('.le-mark');
    const outcome = node.querySelector('.le-pane-outcome');
    const entry = pane.index && pane.index.images[tag];
    if (!entry || !entry.steps.length) {
      img.hidden = true;
      mark.hidden = true;
      label.textContent = pane.label + ': not logged';
      outcome.textContent = '';
      return;
    }
    const i = LE.atOrBefore(entry.steps, pane.step);
    const step = entry.steps[i];
    const src = view.source.imageUrl(pane.run, tag, step);
    img.hidden = false;
    if (img.getAttribute('src') !== src) img.setAttribute('src', src);
    img.dataset.run = pane.run;
    img.dataset.step = step;
    label.textContent = pane.label + ' · step ' + step + (step !== pane.step ? ' (nearest logged)' : '');
    const info = LE.frameInfo(entry, i);
    img.title = info.cells ? 'click a sample to follow it through the run' : 'this image has no per-sample layout';
    img.onclick = (event) => {
      const sample = sampleAt(event, img, info.cells, entry.size);
      if (sample !== null) view.onSample(sample);
    };
    const box = view.sample !== null && info.cells && entry.size ? info.cells[view.sample] : null;
    mark.hidden = !box;
    outcome.textContent = box ? 'sample ' + view.sample + ': ' + (outcomeText(info, view.sample) || 'no outcome') : '';
    if (box) {
      const [w, h] = entry.size;
      mark.style.left = (100 * box[0] / w) + '%';
      mark.style.top = (100 * box[1] / h) + '%';
      mark.style.width = (100 * box[2] / w) + '%';
      mark.style.height = (100 * box[3] / h) + '%';
    }
  }

  // The image tags that can follow sample: a layout with a cell for it at some step.
  LE.followableTags = function (index, sample) {
    return Object.keys(index.images).sort().filter((tag) => {
      const entry = index.images[tag];
      return entry.steps.some((s, i) => {
        const cells = LE.frameInfo(entry, i).cells;
        return cells && cells[sample];
      });
    });
  };

  // view: {source, run, index, sample, step, onStep, onClose, structure}
  LE.renderFilmstrip = function (container, view) {
    if (view.sample === null || !view.index) {
      container.hidden = true;
      container.textContent = '';
      container.dataset.structure = '';
      return;
    }
    container.hidden = false;
    if (container.dataset.structure !== view.structure) {
      container.textContent = '';
      container.dataset.structure = view.structure;
      const tags = LE.followableTags(view.index, view.sample);
      container.appendChild(el('div', { class: 'le-film-head' }, [
        el('strong', {}, 'Sample ' + view.sample + ' across the run'),
        el('span', { class: 'le-muted' }, ' — one row per method; click a frame to move the slider there'),
        el('button', { class: 'le-close', title: 'close the filmstrip', onclick: view.onClose }, '×'),
      ]));
      for (const tag of tags) container.appendChild(filmRow(tag, view));
    }
    for (const row of container.querySelectorAll('.le-film-row')) {
      const entry = view.index.images[row.dataset.tag];
      const current = entry.steps[LE.atOrBefore(entry.steps, view.step)];
      let target = null;
      row.querySelectorAll('.le-frame').forEach((frame) => {
        const on = Number(frame.dataset.step) === current;
        frame.classList.toggle('le-current', on);
        if (on) target = frame;
      });
      const strip = row.querySelector('.le-strip');
      if (target && (target.offsetLeft < strip.scrollLeft ||
          target.offsetLeft + target.offsetWidth > strip.scrollLeft + strip.clientWidth)) {
        strip.scrollLeft = target.offsetLeft - strip.clientWidth / 2;
      }
    }
  };

  function filmRow(tag, view) {
    const entry = view.index.images[tag];
    const frames = [];
    entry.steps.forEach((step, i) => {
      const info = LE.frameInfo(entry, i);
      const box = info.cells && info.cells[view.sample];
      if (!box || !entry.size) return;
      const k = FRAME_HEIGHT / box[3];
      const img = el('img', {
        src: view.source.imageUrl(view.run, tag, step), loading: 'lazy', alt: tag + ' step ' + step,
        draggable: 'false',
        style: 'left:' + (-box[0] * k) + 'px;top:' + (-box[1] * k) + 'px;width:' + (entry.size[0] * k) +
          'px;height:' + (entry.size[1] * k) + 'px',
      });
      const right = info.correct ? (info.correct[view.sample] ? ' le-right' : ' le-wrong') : '';
      frames.push(el('div', {
        class: 'le-frame' + right, 'data-step': step, title: 'step ' + step + ': move the slider here',
        onclick: () => view.onStep(step, true),
      }, [
        el('div', { class: 'le-crop', style: 'width:' + Math.round(box[2] * k) + 'px;height:' + FRAME_HEIGHT + 'px' },
          img),
        el('div', { class: 'le-frame-step' }, 'step ' + step),
        el('div', { class: 'le-frame-outcome' }, outcomeText(info, view.sample)),
      ]));
    });
    return el('div', { class: 'le-film-row', 'data-tag': tag }, [
      el('div', { class: 'le-film-label' }, tag), el('div', { class: 'le-strip' }, frames)]);
  }
})(window.LightningExplain = window.LightningExplain || {});
