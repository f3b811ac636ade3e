// The SDK's in-process event plumbing: a listener registry whose listeners
// cannot break the SDK by throwing, and a bounded set used to deduplicate
// events, matches and signals that may arrive twice (two transports, replays).

export class Emitter {
  constructor() {
    /** @type {Map<string, Set<Function>>} */
    this._h = new Map();
  }
  on(type, fn) {
    if (typeof fn !== 'function') throw new TypeError('listener must be a function');
    let s = this._h.get(type);
    if (!s) this._h.set(type, (s = new Set()));
    s.add(fn);
    return () => this.off(type, fn);
  }
  once(type, fn) {
    const off = this.on(type, (...a) => {
      off();
      fn(...a);
    });
    return off;
  }
  off(type, fn) {
    const s = this._h.get(type);
    if (s) s.delete(fn);
  }
  emit(type, ...args) {
    const s = this._h.get(type);
    if (!s) return;
    for (const fn of [...s]) {
      try {
        fn(...args);
      } catch (e) {
        // a listener's bug must not break the SDK
        if (globalThis.console) console.error('tether listener error', e);
      }
    }
  }
  clear() {
    this._h.clear();
  }
}

/** A bounded set of recently seen keys (insertion order eviction). */
export class RecentSet {
  constructor(max = 1000) {
    this.max = max;
    this.s = new Set();
  }
  has(k) {
    return this.s.has(k);
  }
  add(k) {
    this.s.add(k);
    if (this.s.size > this.max) this.s.delete(this.s.values().next().value);
  }
  delete(k) {
    this.s.delete(k);
  }
}
