// An EventSource client for the edge's Go tests: it opens one stream with
// the npm eventsource package (WHATWG semantics: it reconnects by itself
// after a 200 stream ends, and ends for good on any other status) and
// prints one JSON line per thing it sees, until its stdin closes.
//
//   node client.mjs URL [ACCEPT_ENCODING]
//
// ACCEPT_ENCODING, when given, replaces the Accept-Encoding that Node's
// fetch sends ("gzip, deflate" over http; it decodes gzip, deflate and br
// as the body arrives): "identity" makes a client that takes no coding.
//
// Lines: {"t":"open"}, {"t":"response","status":N,"encoding":"gzip"|""}
// (each response's status and Content-Encoding), {"t":"error","readyState":N}, {"t":"closed"} (the
// EventSource gave up: readyState CLOSED), and for each event
// {"t":"event","type":"message"|"ready"|"delete"|"reset","id":...,"data":...}.
import { EventSource } from 'eventsource';

const url = process.argv[2];
if (!url) {
  console.error('usage: node client.mjs URL');
  process.exit(2);
}
const acceptEncoding = process.argv[3];
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const es = new EventSource(url, {
  fetch: async (input, init) => {
    const headers = { ...init.headers };
    if (acceptEncoding) headers['Accept-Encoding'] = acceptEncoding;
    const res = await fetch(input, { ...init, headers });
    out({ t: 'response', status: res.status, encoding: res.headers.get('content-encoding') ?? '' });
    return res;
  },
});
es.onopen = () => out({ t: 'open' });
es.onerror = (e) => {
  out({ t: 'error', readyState: es.readyState, message: String(e?.message ?? ''), code: e?.code ?? 0 });
  if (es.readyState === EventSource.CLOSED) out({ t: 'closed' });
};
for (const type of ['message', 'ready', 'delete', 'reset']) {
  es.addEventListener(type, (ev) => out({ t: 'event', type, id: ev.lastEventId, data: ev.data }));
}
process.stdin.resume();
process.stdin.on('end', () => {
  es.close();
  process.exit(0);
});
