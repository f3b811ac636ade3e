// Tiny Prometheus text-format reader for the dashboard (no dependencies,
// importable from Node for tests).

/**
 * @typedef {{name: string, labels: Record<string, string>, value: number}} Sample
 */

/**
 * Parse Prometheus text exposition format into samples (comments skipped).
 * @param {string} text
 * @returns {Sample[]}
 */
export function parsePrometheus(text) {
  /** @type {Sample[]} */
  const out = [];
  for (const raw of String(text).split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    let name;
    let labels = {};
    let rest;
    const brace = line.indexOf('{');
    const space = line.search(/\s/);
    if (brace !== -1 && (space === -1 || brace < space)) {
      name = line.slice(0, brace);
      const end = findLabelsEnd(line, brace);
      if (end === -1) continue;
      labels = parseLabels(line.slice(brace + 1, end));
      rest = line.slice(end + 1).trim();
    } else {
      if (space === -1) continue;
      name = line.slice(0, space);
      rest = line.slice(space + 1).trim();
    }
    const v = rest.split(/\s+/)[0];
    const value = v === '+Inf' ? Infinity : v === '-Inf' ? -Infinity : Number(v);
    if (Number.isNaN(value) && v !== 'NaN') continue;
    out.push({ name, labels, value });
  }
  return out;
}

function findLabelsEnd(line, start) {
  let inStr = false;
  for (let i = start + 1; i < line.length; i++) {
    const c = line[i];
    if (inStr) {
      if (c === '\\') i++;
      else if (c === '"') inStr = false;
    } else if (c === '"') inStr = true;
    else if (c === '}') return i;
  }
  return -1;
}

function parseLabels(s) {
  /** @type {Record<string,string>} */
  const labels = {};
  const re = /\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?/g;
  let m;
  while ((m = re.exec(s))) {
    labels[m[1]] = m[2].replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
  }
  return labels;
}

/**
 * Summarise a histogram (all label sets added up): count, sum, mean and
 * quantile estimates (linear interpolation inside the bucket, as
 * Prometheus' histogram_quantile does).
 * @param {Sample[]} samples
 * @param {string} name base name, e.g. "tether_expiry_lateness_seconds"
 * @param {Record<string,string>} [match] only samples with these labels
 */
export function histogramSummary(samples, name, match = {}) {
  const ok = (s) => Object.entries(match).every(([k, v]) => s.labels[k] === v);
  /** @type {Map<number, number>} */
  const buckets = new Map();
  let count = 0;
  let sum = 0;
  let found = false;
  for (const s of samples) {
    if (!ok(s)) continue;
    if (s.name === name + '_bucket') {
      found = true;
      const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
      buckets.set(le, (buckets.get(le) ?? 0) + s.value);
    } else if (s.name === name + '_count') {
      found = true;
      count += s.value;
    } else if (s.name === name + '_sum') {
      sum += s.value;
    }
  }
  if (!found) return null;
  const sorted = [...buckets.entries()].sort((a, b) => a[0] - b[0]);
  if (!count && sorted.length) count = sorted[sorted.length - 1][1];
  const quantile = (q) => {
    if (!count || !sorted.length) return null;
    const rank = q * count;
    let prevLe = 0;
    let prevCount = 0;
    for (const [le, c] of sorted) {
      if (c >= rank) {
        if (le === Infinity) return prevLe; // as histogram_quantile: the highest finite bound
        if (c === prevCount) return le;
        return prevLe + ((le - prevLe) * (rank - prevCount)) / (c - prevCount);
      }
      prevLe = le;
      prevCount = c;
    }
    return prevLe;
  };
  // smallest bucket bound holding every observation
  let maxBucket = null;
  for (const [le, c] of sorted) {
    if (c >= count) {
      maxBucket = le;
      break;
    }
  }
  return {
    count,
    sum,
    mean: count ? sum / count : null,
    p50: quantile(0.5),
    p99: quantile(0.99),
    maxBucket,
    buckets: sorted.map(([le, c]) => ({ le, count: c })),
  };
}

/** Format seconds as a short human duration ("3.2 ms", "1.25 s"). */
export function fmtSeconds(s) {
  if (s == null || Number.isNaN(s)) return '—';
  if (s === Infinity) return '∞';
  if (s < 0.001) return `${(s * 1e6).toFixed(0)} µs`;
  if (s < 1) return `${(s * 1000).toFixed(s < 0.01 ? 2 : 1)} ms`;
  return `${s.toFixed(2)} s`;
}
