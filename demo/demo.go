// Package demo serves a page that shows a stream live: a table of the
// topic's keys and values kept by the browser client (clients/js), the
// connection's state, the last id and counts. Dev mode serves it at "/".
package demo

import (
	"bytes"
	"html/template"
	"net/http"

	jsclient "github.com/ssekafka/ssekafka/clients/js"
)

// ClientPath is where the handler serves the browser client module, and
// ScriptPath the page's own script, beside it.
const (
	ClientPath = "/_ssekafka/ssekafka.js"
	ScriptPath = "/_ssekafka/demo.js"
)

// Handler serves the page at "/" for the stream at streamPath (a route
// with the key-form id, so that the page knows each value's key), and the
// client module at ClientPath. Other paths are 404.
func Handler(streamPath string) http.Handler {
	var page bytes.Buffer
	if err := pageTemplate.Execute(&page, struct{ Stream, Script string }{streamPath, ScriptPath}); err != nil {
		panic(err) // the template and its data are ours: a test catches this
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'unsafe-inline'")
		_, _ = w.Write(page.Bytes())
	})
	script := func(body []byte) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
			w.Header().Set("Cache-Control", "no-cache")
			_, _ = w.Write(body)
		}
	}
	mux.HandleFunc("GET "+ClientPath, script(jsclient.Module))
	mux.HandleFunc("GET "+ScriptPath, script([]byte(pageScript)))
	return mux
}

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="ssekafka-stream" content="{{.Stream}}">
<title>ssekafka: {{.Stream}}</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 2em; }
table { border-collapse: collapse; min-width: 30em; }
td, th { border: 1px solid #ccc; padding: 4px 8px; text-align: left; }
#state.open { color: #070; } #state.reopening, #state.connecting { color: #a60; } #state.closed { color: #a00; }
code { font-size: 12px; }
</style>
<script type="module" src="{{.Script}}"></script>
</head>
<body>
<h1>{{.Stream}}</h1>
<p>Connection: <b id="state">connecting</b> · ready: <b id="ready">no</b> ·
last id: <code id="last-id">none</code></p>
<p>messages <b id="messages">0</b> · deletes <b id="deletes">0</b> · resets <b id="resets">0</b> ·
reopens <b id="reopens">0</b> · keys <b id="keys">0</b></p>
<table><thead><tr><th>key</th><th>value</th></tr></thead><tbody id="rows"></tbody></table>
</body>
</html>
`))

// pageScript drives the page with the client module.
const pageScript = `import { SSEKafka } from './ssekafka.js';
const $ = (id) => document.getElementById(id);
const stream = document.querySelector('meta[name="ssekafka-stream"]').content;
function render(view) {
  const keys = [...view.keys()].sort();
  $('rows').replaceChildren(...keys.map((k) => {
    const tr = document.createElement('tr');
    tr.dataset.key = k;
    const kd = document.createElement('td');
    kd.textContent = k;
    const vd = document.createElement('td');
    vd.textContent = view.get(k);
    tr.append(kd, vd);
    return tr;
  }));
  $('keys').textContent = String(view.size);
}
function counts(s) {
  for (const c of ['messages', 'deletes', 'resets', 'reopens']) $(c).textContent = String(s.counts[c]);
  $('last-id').textContent = s.lastEventId || 'none';
  $('ready').textContent = s.ready ? 'yes' : 'no';
}
// Every change seen, as key=value: a test (or a curious developer) reads it.
window.ssekafkaLog = [];
const s = new SSEKafka(stream, {
  onReady: (view) => { render(view); counts(s); },
  onChange: (k, v) => { window.ssekafkaLog.push(k + '=' + v); if (s.ready) render(s.view); counts(s); },
  onDelete: () => { if (s.ready) render(s.view); counts(s); },
  onReset: () => { render(s.view); counts(s); },
  onState: (st) => { const e = $('state'); e.textContent = st; e.className = st; counts(s); },
});
window.ssekafka = s;
`
