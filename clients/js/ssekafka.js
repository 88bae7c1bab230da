// ssekafka.js: a small browser client for ssekafka (and Zilla sse-kafka)
// streams. One ES module, no dependencies.
//
// It wraps EventSource and adds what a page needs on top of it:
//   - a key → value view of the topic, kept from message, delete and reset
//     events (keys come from the key-form id, ["base64url(key)","etag"],
//     and from the delete data);
//   - reopening after what ends a native EventSource for good (any non-200
//     answer: a 502 from a proxy, a 503; a network error after it gave
//     up), with exponential backoff and jitter, resuming from the last id
//     by the lastEventId query parameter (a new EventSource cannot set the
//     Last-Event-ID header);
//   - answering event:challenge: it calls getToken() and POSTs the renewal
//     with the headers the challenge lists, so the stream outlives its
//     token without reconnecting.
//
//   const s = new SSEKafka('/tasks', {
//     onReady: (view) => render(view),
//     onChange: (key, value) => update(key, value),
//     onDelete: (key) => remove(key),
//   });
//   s.view;   // Map of key → value (strings)
//   s.close();

const CONNECTING = 0;
const OPEN = 1;
const CLOSED = 2;

/** Decodes base64url (padded or not) to a UTF-8 string. */
export function decodeKey(b64) {
  let s = b64.replace(/-/g, '+').replace(/_/g, '/');
  while (s.length % 4 !== 0) s += '=';
  const bin = atob(s);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new TextDecoder().decode(bytes);
}

/**
 * The key of a key-form id (["base64url(key)","etag"]); null for a null
 * key; undefined when the id is not in that form.
 */
export function keyOfId(id) {
  if (!id || id[0] !== '[') return undefined;
  try {
    const parts = JSON.parse(id);
    if (!Array.isArray(parts) || parts.length !== 2) return undefined;
    return parts[0] === null ? null : decodeKey(parts[0]);
  } catch {
    return undefined;
  }
}

export class SSEKafka {
  /**
   * @param {string} url the stream's URL
   * @param {object} [opts]
   * @param {Function} [opts.EventSource] the EventSource class (default: the browser's)
   * @param {() => Promise<string>|string} [opts.getToken] fresh credentials for event:challenge
   * @param {string} [opts.tokenHeader] header the renewal carries them in (default "authorization", as "Bearer <token>")
   * @param {string} [opts.tokenParam] query parameter (e.g. "access_token") that carries a fresh token from
   *   getToken() on every open and reopen, for guards that read credentials from the query: a stream that
   *   ended at its token's expiry then comes back with a valid one
   * @param {(view: Map<string,string>, id: string) => void} [opts.onReady]
   * @param {(key: string|undefined, value: string, id: string) => void} [opts.onChange]
   * @param {(key: string, id: string) => void} [opts.onDelete]
   * @param {(reason: string) => void} [opts.onReset]
   * @param {(state: 'connecting'|'open'|'reopening'|'closed', detail?: object) => void} [opts.onState]
   * @param {(err: Error) => void} [opts.onError]
   * @param {number} [opts.minDelay] first reopen delay, ms (default 1000)
   * @param {number} [opts.maxDelay] largest reopen delay, ms (default 30000)
   * @param {boolean} [opts.withCredentials] send cookies cross-origin
   */
  constructor(url, opts = {}) {
    this.url = url;
    this.opts = opts;
    this.view = new Map();
    this.lastEventId = '';
    this.ready = false;
    this.counts = { messages: 0, deletes: 0, resets: 0, reopens: 0, challenges: 0, renewals: 0 };
    this._ES = opts.EventSource ?? globalThis.EventSource;
    if (!this._ES) throw new Error('ssekafka: no EventSource (pass opts.EventSource)');
    this._attempt = 0;
    this._timer = null;
    this._closed = false;
    // Open after the constructor returned: no callback runs before the
    // caller holds the object.
    queueMicrotask(() => this._open());
  }

  /** Stops the stream for good. */
  close() {
    this._closed = true;
    clearTimeout(this._timer);
    this._es?.close();
    this._state('closed');
  }

  _state(s, detail) {
    this.state = s;
    this.opts.onState?.(s, detail);
  }

  _streamURL(token) {
    if (!this.lastEventId && token === undefined) return this.url;
    const u = new URL(this.url, globalThis.location?.href ?? 'http://localhost/');
    if (this.lastEventId) u.searchParams.set('lastEventId', this.lastEventId);
    if (token !== undefined) u.searchParams.set(this.opts.tokenParam, token);
    // Keep a relative URL relative (same origin in a browser).
    return /^[a-z][a-z0-9+.-]*:/i.test(this.url) ? u.toString() : u.pathname + u.search;
  }

  async _open() {
    if (this._closed) return;
    this._state(this._attempt === 0 ? 'connecting' : 'reopening', { attempt: this._attempt });
    let token;
    if (this.opts.tokenParam && this.opts.getToken) {
      try {
        token = await this.opts.getToken();
      } catch (err) {
        this.opts.onError?.(new Error('ssekafka: getToken failed: ' + err.message));
        this._reopen();
        return;
      }
      if (this._closed) return;
    }
    const es = new this._ES(this._streamURL(token), { withCredentials: !!this.opts.withCredentials });
    this._es = es;
    es.onopen = () => {
      this._attempt = 0;
      this._state('open');
    };
    es.onerror = () => {
      if (this._es !== es || this._closed) return;
      if (es.readyState === CLOSED) {
        // The EventSource gave up (a non-200 answer, or it could not
        // reconnect): reopen it ourselves, later.
        es.close();
        this._reopen();
      } else if (es.readyState === CONNECTING) {
        this.ready = false;
        this._state('connecting');
      }
    };
    const track = (ev) => {
      if (ev.lastEventId) this.lastEventId = ev.lastEventId;
    };
    es.addEventListener('message', (ev) => {
      track(ev);
      const key = keyOfId(ev.lastEventId);
      this.counts.messages++;
      if (key !== undefined && key !== null) this.view.set(key, ev.data);
      this.opts.onChange?.(key ?? undefined, ev.data, ev.lastEventId);
    });
    es.addEventListener('delete', (ev) => {
      track(ev);
      let key;
      try {
        key = decodeKey(ev.data);
      } catch (err) {
        this.opts.onError?.(new Error('ssekafka: delete data is not base64url: ' + err.message));
        return;
      }
      this.counts.deletes++;
      this.view.delete(key);
      this.opts.onDelete?.(key, ev.lastEventId);
    });
    es.addEventListener('reset', (ev) => {
      track(ev);
      // The whole state follows: start the view afresh.
      this.counts.resets++;
      this.view.clear();
      this.ready = false;
      this.opts.onReset?.(ev.data);
    });
    es.addEventListener('ready', (ev) => {
      track(ev);
      this.ready = true;
      this.opts.onReady?.(this.view, ev.lastEventId);
    });
    es.addEventListener('challenge', (ev) => {
      this.counts.challenges++;
      this._renew(ev.data).catch((err) => this.opts.onError?.(err));
    });
  }

  _reopen() {
    if (this._closed) return;
    this.ready = false;
    this.counts.reopens++;
    const min = this.opts.minDelay ?? 1000;
    const max = this.opts.maxDelay ?? 30000;
    const base = Math.min(max, min * 2 ** this._attempt);
    const delay = base / 2 + Math.random() * (base / 2); // jitter: clients of one edge do not return together
    this._attempt++;
    this._state('reopening', { attempt: this._attempt, delay });
    this._timer = setTimeout(() => this._open(), delay);
  }

  async _renew(data) {
    const getToken = this.opts.getToken;
    if (!getToken) throw new Error('ssekafka: event:challenge but no getToken');
    let challenge;
    try {
      challenge = JSON.parse(data);
    } catch {
      throw new Error('ssekafka: challenge data is not JSON');
    }
    const token = await getToken();
    const headers = { ...(challenge.headers ?? {}) };
    headers[this.opts.tokenHeader ?? 'authorization'] = 'Bearer ' + token;
    const resp = await fetch(new URL(this.url, globalThis.location?.href ?? 'http://localhost/'), {
      method: challenge.method ?? 'POST',
      headers,
      credentials: this.opts.withCredentials ? 'include' : 'same-origin',
    });
    if (resp.status !== 204 && !resp.ok) throw new Error('ssekafka: renewal refused: ' + resp.status);
    this.counts.renewals++;
  }
}

export { CONNECTING, OPEN, CLOSED };
