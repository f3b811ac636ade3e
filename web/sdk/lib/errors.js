// The error every failed request rejects with: the HTTP status plus the
// server's RFC 9457 problem document, so callers can branch on `status` and
// read fields such as `end_reason` or `blocking_session`.

/** Error for a non-2xx answer; carries the RFC 9457 problem document. */
export class TetherError extends Error {
  /**
   * @param {number} status
   * @param {any} problem
   * @param {string} [message]
   */
  constructor(status, problem, message) {
    const p = problem && typeof problem === 'object' ? problem : {};
    super(message ?? (p.detail || p.title || `HTTP ${status}`));
    this.name = 'TetherError';
    /** HTTP status (0 for a network failure) */
    this.status = status;
    /** the problem+json body, if any */
    this.problem = p;
    this.detail = p.detail ?? null;
  }
}
