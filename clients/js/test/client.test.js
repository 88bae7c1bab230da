// The browser client against the real product (see client_test.go, which
// starts it and runs these tests with SSEKAFKA_URL and SSEKAFKA_CONTROL).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventSource } from 'eventsource';
import { SSEKafka, decodeKey, keyOfId } from '../ssekafka.js';

const STREAM = process.env.SSEKAFKA_URL;
const CONTROL = process.env.SSEKAFKA_CONTROL;

async function ctl(path) {
  const r = await fetch(CONTROL + path, { method: 'POST' });
  if (r.status !== 204) throw new Error(`control ${path}: ${r.status}`);
}

async function produced() {
  return new Map(Object.entries(await (await fetch(CONTROL + '/state')).json()));
}

async function until(what, cond, ms = 15000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error('not within ' + ms + ' ms: ' + what);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function sameView(view, want) {
  if (view.size !== want.size) return false;
  for (const [k, v] of want) if (view.get(k) !== v) return false;
  return true;
}

// open returns a client and every change it saw, as key=value (values are
// never reused for a key, so a change seen twice, as a full state sent
// again would be, shows).
function open(opts = {}) {
  const ids = [];
  const states = [];
  const s = new SSEKafka(STREAM, {
    EventSource,
    minDelay: 100,
    maxDelay: 400,
    onChange: (k, v) => ids.push(`${k}=${v}`),
    onDelete: (k, id) => ids.push(`${k} deleted at ${id}`),
    onState: (st) => states.push(st),
    ...opts,
  });
  return { s, ids, states };
}

function noRepeats(ids) {
  assert.equal(new Set(ids).size, ids.length, 'a change was delivered twice: ' + ids.join(' '));
}

test('keys from ids and delete data (padded or not, URL-safe)', () => {
  assert.equal(decodeKey('Pz4_'), '?>?');
  assert.equal(decodeKey('YQ'), 'a');
  assert.equal(decodeKey('YQ=='), 'a');
  assert.equal(keyOfId('["Pz4_","AQIAAg=="]'), '?>?');
  assert.equal(keyOfId('[null,"AQIAAg=="]'), null);
  assert.equal(keyOfId('AQIAAg=='), undefined);
  assert.equal(keyOfId('[broken'), undefined);
});

test('the view follows messages and deletes, and ready comes after the state', async () => {
  await ctl('/produce?key=a&value=1');
  await ctl('/produce?key=b&value=2');
  let readyView;
  const { s, ids } = open({ onReady: (view) => (readyView = new Map(view)) });
  try {
    await until('ready', () => s.ready);
    assert.equal(readyView.get('a'), '1');
    assert.equal(readyView.get('b'), '2');
    await ctl('/produce?key=a&value=3');
    await ctl('/produce?key=b');
    await until('the update and the delete', () => s.view.get('a') === '3' && !s.view.has('b'));
    assert.ok(sameView(s.view, await produced()));
    assert.equal(s.counts.deletes, 1);
    noRepeats(ids);
  } finally {
    s.close();
  }
});

for (const status of ['502', '503']) {
  test(`a ${status} from the proxy ends the native EventSource; the client reopens and resumes exactly`, async () => {
    const { s, ids, states } = open();
    try {
      await until('ready', () => s.ready);
      await ctl(`/proxy?mode=${status}`);
      await ctl('/cut'); // the stream ends; the EventSource's reconnect gets the error status and gives up
      await until('the client reopening', () => s.counts.reopens >= 1);
      for (let i = 0; i < 20; i++) await ctl(`/produce?key=k${status}-${i % 7}&value=v${i}`);
      await ctl('/produce?key=a');
      await new Promise((r) => setTimeout(r, 300)); // stay down over a few reopen attempts
      await ctl('/proxy?mode=ok');
      const want = await produced();
      await until('the exact state again', () => s.ready && sameView(s.view, want));
      assert.ok(states.includes('reopening'));
      assert.ok(s.lastEventId.startsWith('['), 'resumed with its key-form id');
      noRepeats(ids);
    } finally {
      s.close();
      await ctl('/proxy?mode=ok');
    }
  });
}

test('with tokenParam, every open carries a fresh token from getToken in the query', async () => {
  const urls = [];
  let n = 0;
  class FakeES {
    constructor(url) {
      urls.push(url);
      this.readyState = 0;
      queueMicrotask(() => {
        this.readyState = 2; // ended for good, as after a 401
        this.onerror?.();
      });
    }
    addEventListener() {}
    close() {}
  }
  const s = new SSEKafka('http://edge.example/tasks', {
    EventSource: FakeES, tokenParam: 'access_token', getToken: async () => `t${++n}`, minDelay: 1, maxDelay: 2,
  });
  await until('two opens', () => urls.length >= 2, 2000);
  s.close();
  assert.equal(new URL(urls[0]).searchParams.get('access_token'), 't1');
  assert.equal(new URL(urls[1]).searchParams.get('access_token'), 't2');
});
