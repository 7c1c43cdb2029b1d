// The Explain tab's entry point: TensorBoard loads this ES module in the plugin's iframe (base href
// .../data/plugin/lightning_explain/) and calls render(). It loads the style and the page's scripts from the
// plugin itself (no CDN) and starts the page on the plugin's routes.
export const SCRIPTS = ['common.js', 'curves.js', 'views.js', 'app.js'];

function load(src) {
  return new Promise((resolve, reject) => {
    const script = document.createElement('script');
    script.src = 'static/' + src;
    script.onload = resolve;
    script.onerror = () => reject(new Error('could not load ' + src));
    document.head.appendChild(script);
  });
}

export async function render() {
  const style = document.createElement('link');
  style.rel = 'stylesheet';
  style.href = 'static/style.css';
  document.head.appendChild(style);
  for (const src of SCRIPTS) await load(src);
  window.LightningExplain.start(document.body, window.LightningExplain.serverSource(''));
}
