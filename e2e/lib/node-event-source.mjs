// A minimal EventSource for Node (which has none before v22), enough for the
// SDK's SSE transport against a real server: named events, `id:` as
// lastEventId, onopen/onerror/onmessage, close(). Tests use two extra knobs:
// `NodeEventSource.gate` (a promise new connections wait for, to hold the
// client offline while the test changes the server) and `drop()` (the
// connection is lost for good, as the SDK sees a closed EventSource).
export class NodeEventSource {
  /** @type {Promise<void> | null} */
  static gate = null;
  /** every instance, newest last */
  static instances = [];

  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.onopen = this.onerror = this.onmessage = null;
    this._listeners = new Map();
    this._abort = new AbortController();
    NodeEventSource.instances.push(this);
    this._run().catch(() => {
      if (this.readyState === 2) return;
      this.readyState = 2;
      this.onerror?.({});
    });
  }

  addEventListener(type, fn) {
    this._listeners.set(type, [...(this._listeners.get(type) || []), fn]);
  }

  close() {
    this.readyState = 2;
    this._abort.abort();
  }

  /** The connection is lost and will not come back by itself. */
  drop() {
    this.close();
    this.onerror?.({});
  }

  async _run() {
    if (NodeEventSource.gate) await NodeEventSource.gate;
    if (this.readyState === 2) return;
    const res = await fetch(this.url, { headers: { Accept: 'text/event-stream' }, signal: this._abort.signal });
    if (!res.ok) throw new Error(`event stream answered ${res.status}`);
    this.readyState = 1;
    this.onopen?.({});
    const decoder = new TextDecoder();
    let buf = '';
    for await (const chunk of res.body) {
      buf += decoder.decode(chunk, { stream: true });
      let end;
      while ((end = buf.indexOf('\n\n')) >= 0) {
        this._dispatch(buf.slice(0, end));
        buf = buf.slice(end + 2);
      }
    }
    throw new Error('event stream ended');
  }

  _dispatch(block) {
    let type = 'message';
    let id = '';
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'event') type = value;
      else if (field === 'id') id = value;
      else if (field === 'data') data.push(value);
    }
    if (!data.length || this.readyState === 2) return;
    const m = { type, data: data.join('\n'), lastEventId: id };
    if (type === 'message') this.onmessage?.(m);
    else for (const fn of this._listeners.get(type) || []) fn(m);
  }
}
