// lightning-explain dashboard: the page. One step slider drives every probe grid, the filmstrip and the
// signals; compare two steps or two runs; in TensorBoard, new events arrive by polling (a report is frozen).
'use strict';
(function (LE) {
  const el = LE.el;
  LE.LABEL_WIDTH = 230; // px: the label column of the charts, and the slider's left margin (same step axis)
  LE.POLL_MS = 3000;
  LE.PLAY_MS = 600;

  LE.start = function (root, source) {
    const state = {
      runs: [], run: null, run2: null, index: null, index2: null, mode: 'single', pinned: null,
      step: null, sample: null, follow: true, timer: null, filter: /^(explain|overfit)\//,
    };
    const ui = {};
    LE.lastState = state; // the page's state, for scripts that drive it (tools/screenshot_dashboard.py)
    const optionsOf = (values, selected) => values.map((v) => el('option', { value: v, selected: v === selected }, String(v)));
    ui.run = el('select', { id: 'le-run', title: 'the run to show', onchange: () => chooseRun(ui.run.value) });
    ui.mode = el('select', { id: 'le-mode', title: 'compare two steps of this run, or two runs at one step',
      onchange: () => { state.mode = ui.mode.value; draw(); } }, [
      el('option', { value: 'single' }, 'one step'), el('option', { value: 'steps' }, 'two steps'),
      el('option', { value: 'runs' }, 'two runs')]);
    ui.pinned = el('select', { id: 'le-pinned', title: 'the step shown on the left',
      onchange: () => { state.pinned = Number(ui.pinned.value); draw(); } });
    ui.run2 = el('select', { id: 'le-run2', title: 'the run shown on the right', onchange: () => chooseRun2(ui.run2.value) });
    ui.filter = el('input', { id: 'le-filter', type: 'text', value: '^(explain|overfit)/', spellcheck: 'false',
      title: 'which scalar tags to chart (a regular expression)', oninput: () => {
        try { state.filter = new RegExp(ui.filter.value); ui.filter.classList.remove('le-bad'); drawCurves(); } catch (e) {
          ui.filter.classList.add('le-bad');
        }
      } });
    ui.status = el('span', { id: 'le-status', class: 'le-muted' });
    ui.play = el('button', { id: 'le-play', title: 'play / pause (space)', onclick: () => togglePlay() }, '▶');
    ui.stepLabel = el('span', { id: 'le-step' });
    ui.slider = el('input', { id: 'le-slider', type: 'range', min: 0, max: 0, value: 0, step: 1,
      title: 'drag, or use ← → Home End', oninput: () => setStep(Number(ui.slider.value), false) });
    ui.curves = el('div', { id: 'le-curves', class: 'le-curves' });
    ui.film = el('div', { id: 'le-film', class: 'le-film', hidden: true });
    ui.grids = el('div', { id: 'le-grids', class: 'le-grids' });
    ui.pinnedBox = el('label', { class: 'le-ctl' }, ['left step ', ui.pinned]);
    ui.run2Box = el('label', { class: 'le-ctl' }, ['right run ', ui.run2]);
    root.appendChild(el('div', { class: 'le-app' }, [
      el('div', { class: 'le-top' }, [
        el('div', { class: 'le-controls' }, [
          el('strong', { class: 'le-title' }, 'Explain'),
          el('label', { class: 'le-ctl' }, ['run ', ui.run]), el('label', { class: 'le-ctl' }, ['compare ', ui.mode]),
          ui.pinnedBox, ui.run2Box, el('label', { class: 'le-ctl' }, ['signals ', ui.filter]), ui.status]),
        el('div', { class: 'le-slider-row' }, [
          el('div', { class: 'le-slider-label', style: 'width:' + LE.LABEL_WIDTH + 'px' }, [ui.play, ui.stepLabel]),
          ui.slider]),
      ]),
      ui.curves, ui.film, ui.grids,
    ]));

    function steps() {
      const images = LE.imageSteps(state.index);
      return images.length ? images : LE.scalarSteps(state.index);
    }
    function domain() {
      const all = steps().slice();
      for (const points of Object.values(state.index ? state.index.scalars : {})) {
        if (points.length) all.push(points[0][0], points[points.length - 1][0]);
      }
      return all.length ? [Math.min(...all), Math.max(...all)] : [0, 0];
    }

    function setStep(value, exact) {
      const list = steps();
      if (!list.length) return;
      const step = exact && list.includes(value) ? value : LE.nearest(list, value);
      state.follow = step === list[list.length - 1];
      ui.slider.value = step;
      if (step === state.step) return;
      state.step = step;
      draw();
    }
    function move(delta) {
      const list = steps();
      if (!list.length) return;
      const i = Math.max(0, Math.min(list.length - 1, list.indexOf(state.step) + delta));
      setStep(list[i], true);
    }
    function togglePlay(stop) {
      if (state.timer || stop) {
        clearInterval(state.timer);
        state.timer = null;
        ui.play.textContent = '▶';
        return;
      }
      const list = steps();
      if (state.step === list[list.length - 1]) setStep(list[0], true);
      ui.play.textContent = '❚❚';
      state.timer = setInterval(() => {
        const l = steps();
        if (state.step === l[l.length - 1]) togglePlay(true); else move(1);
      }, LE.PLAY_MS);
    }
    document.addEventListener('keydown', (event) => {
      const t = event.target;
      if ((t.tagName === 'INPUT' && t.type !== 'range') || t.tagName === 'SELECT') return;
      const keys = { ArrowLeft: () => move(-1), ArrowRight: () => move(1), Home: () => move(-1e9), End: () => move(1e9),
        ' ': () => togglePlay() };
      if (keys[event.key]) { event.preventDefault(); keys[event.key](); }
    });
    window.addEventListener('resize', () => drawCurves());

    function panes() {
      const here = { run: state.run, index: state.index, step: state.step, label: state.run };
      if (state.mode === 'steps') {
        return [{ run: state.run, index: state.index, step: state.pinned, label: 'left' },
          Object.assign({}, here, { label: 'right' })];
      }
      if (state.mode === 'runs') return [here, { run: state.run2, index: state.index2, step: state.step, label: state.run2 }];
      return [here];
    }
    function drawCurves() {
      if (!state.index) return;
      LE.renderCurves(ui.curves, {
        scalars: state.index.scalars, scalars2: state.mode === 'runs' && state.index2 ? state.index2.scalars : null,
        alerts: state.index.alerts, domain: domain(), step: state.step, filter: state.filter,
        onStep: (s, exact) => setStep(s, exact),
      });
    }
    function draw() {
      ui.pinnedBox.hidden = state.mode !== 'steps';
      ui.run2Box.hidden = state.mode !== 'runs';
      if (!state.index) return;
      const list = steps();
      const [lo, hi] = domain();
      ui.slider.min = lo;
      ui.slider.max = hi;
      ui.slider.disabled = list.length < 2;
      if (state.step !== null) ui.slider.value = state.step;
      ui.stepLabel.textContent = list.length ? 'step ' + state.step : 'nothing logged yet';
      if (state.pinned === null || !list.includes(state.pinned)) state.pinned = list.length ? list[0] : null;
      ui.pinned.replaceChildren(...optionsOf(list, state.pinned));
      const tags = Object.keys(state.index.images).sort();
      const shown = panes();
      LE.renderGrids(ui.grids, {
        source: source, tags: tags, panes: shown, sample: state.sample,
        structure: [state.mode, state.run, state.run2, tags.join('|')].join('\n'),
        onSample: (sample) => {
          const opening = state.sample === null;
          state.sample = sample;
          draw();
          if (opening && ui.film.scrollIntoView) ui.film.scrollIntoView({ block: 'nearest' });
        },
      });
      if (!tags.length) ui.grids.replaceChildren(el('p', { class: 'le-muted' }, 'no explanation images in this run yet'));
      LE.renderFilmstrip(ui.film, {
        source: source, run: state.run, index: state.index, sample: state.sample, step: state.step,
        structure: [state.run, state.index.generation, state.sample].join('\n'),
        onStep: (s, exact) => setStep(s, exact), onClose: () => { state.sample = null; draw(); },
      });
      drawCurves();
    }

    async function chooseRun(name) {
      state.run = name;
      state.sample = null;
      state.index = await source.run(name);
      const list = steps();
      state.step = list.length ? list[list.length - 1] : null;
      state.follow = true;
      if (!state.run2 || state.run2 === name) chooseRun2(otherRun(name), true);
      draw();
    }
    async function chooseRun2(name, quiet) {
      state.run2 = name;
      ui.run2.value = name || '';
      state.index2 = name ? await source.run(name) : null;
      if (!quiet) draw();
    }
    function otherRun(name) {
      const others = state.runs.filter((r) => r.name !== name);
      return others.length ? others[others.length - 1].name : null;
    }

    async function refresh() {
      const listing = await source.runs();
      if (listing.error) throw new Error(listing.error);
      const before = new Map(state.runs.map((r) => [r.name, r.generation]));
      state.runs = listing.runs;
      const names = state.runs.map((r) => r.name);
      if (names.join('\n') !== Array.from(before.keys()).join('\n')) {
        ui.run.replaceChildren(...optionsOf(names, state.run));
        ui.run2.replaceChildren(...optionsOf(names, state.run2));
      }
      if (!names.length) {
        ui.grids.replaceChildren(el('p', { class: 'le-muted' },
          'no runs under ' + (listing.logdir || 'the log directory') + ' yet: train with ExplainCallback and a TensorBoardLogger'));
        return;
      }
      if (state.run === null || !names.includes(state.run)) {
        const newest = state.runs.slice().sort((a, b) => (a.image_tags > 0) - (b.image_tags > 0) || a.mtime - b.mtime);
        await chooseRun(newest[newest.length - 1].name); // the newest run with images
        ui.run.value = state.run;
        return;
      }
      let changed = false;
      for (const r of state.runs) {
        if (before.get(r.name) === r.generation) continue;
        if (r.name === state.run) { state.index = await source.run(r.name); changed = true; }
        if (r.name === state.run2) { state.index2 = await source.run(r.name); changed = true; }
      }
      if (changed) {
        const list = steps();
        if (state.follow && list.length) state.step = list[list.length - 1];
        draw();
      }
    }
    function report(error) { ui.status.textContent = error ? 'error: ' + error.message : ui.status.textContent; }

    ui.status.textContent = source.live ? 'live' : (source.title || 'report');
    refresh().then(() => {
      if (!source.live) return;
      setInterval(() => refresh().then(() => {
        ui.status.textContent = 'live · updated ' + new Date().toLocaleTimeString();
      }, report), LE.POLL_MS);
    }, report);
    return state;
  };
})(window.LightningExplain = window.LightningExplain || {});
