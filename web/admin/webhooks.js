// Dashboard: webhook endpoints (state, pending, failed, last error) and the
// failed deliveries, each with a Retry button (POST …/deliveries/{id}/retry).
// Hidden when no [[webhooks]] endpoint is configured.

const $ = (id) => document.getElementById(id);

function cell(text) {
  const e = document.createElement('td');
  e.textContent = text == null || text === '' ? '—' : String(text);
  return e;
}

/** Reads the endpoints and failed deliveries and renders the card. `api` is the dashboard's fetch helper. */
export async function refreshWebhooks(api) {
  let endpoints;
  try {
    endpoints = ((await api('GET', '/v1/admin/webhooks')) || {}).endpoints || [];
  } catch {
    return;
  }
  const card = $('webhooks-card');
  card.hidden = endpoints.length === 0;
  if (!endpoints.length) return;
  const eps = $('webhooks-endpoints').querySelector('tbody');
  eps.replaceChildren(
    ...endpoints.map((ep) => {
      const tr = document.createElement('tr');
      const state = cell(ep.state);
      state.className = ep.state === 'disabled' ? 'bad-text' : 'ok-text';
      tr.append(cell(ep.url), state, cell(ep.pending), cell(ep.failed), cell(ep.last_error));
      return tr;
    }),
  );
  let failed = [];
  try {
    failed = ((await api('GET', '/v1/admin/webhooks/deliveries?status=failed&limit=50')) || {}).deliveries || [];
  } catch {
    /* keep the endpoints shown */
  }
  const body = $('webhooks-failed').querySelector('tbody');
  body.replaceChildren(
    ...failed.map((d) => {
      const tr = document.createElement('tr');
      const act = document.createElement('td');
      const btn = document.createElement('button');
      btn.type = 'button';
      btn.textContent = 'Retry';
      btn.setAttribute('aria-label', `Retry delivery ${d.id} of event ${d.event_id}`);
      btn.addEventListener('click', async () => {
        btn.disabled = true;
        try {
          await api('POST', `/v1/admin/webhooks/deliveries/${d.id}/retry`);
          $('webhooks-result').textContent = `Delivery ${d.id} is pending again.`;
        } catch (err) {
          $('webhooks-result').textContent = `Retry of ${d.id} failed: ${err.message}`;
          btn.disabled = false;
        }
        refreshWebhooks(api);
      });
      act.append(btn);
      tr.append(cell(d.event_id), cell(d.url), cell(d.attempts), cell(d.last_status), cell(d.last_error), act);
      return tr;
    }),
  );
  $('webhooks-failed-empty').hidden = failed.length > 0;
}
