// Dashboard: the nodes of the cluster (from /v1/admin/health `nodes`): each
// node's advertised URL, whether it holds the lease (owns the live sessions
// and their deadlines), when it started and when it last beat. One row on a
// single node.

const $ = (id) => document.getElementById(id);

function cell(text) {
  const e = document.createElement('td');
  e.textContent = text == null || text === '' ? '—' : String(text);
  return e;
}

function ago(iso) {
  const ms = Date.now() - Date.parse(iso);
  if (!Number.isFinite(ms)) return iso;
  return ms < 1500 ? 'just now' : `${Math.round(ms / 1000)} s ago`;
}

/** Renders the nodes of a health report. */
export function renderNodes(health) {
  const nodes = (health && health.nodes) || [];
  const card = $('nodes-card');
  card.hidden = nodes.length === 0;
  const body = $('nodes-table').querySelector('tbody');
  body.replaceChildren(
    ...nodes.map((n) => {
      const tr = document.createElement('tr');
      const role = cell(n.leader ? 'owner (lease)' : 'follower');
      role.className = n.leader ? 'ok-text' : '';
      tr.append(cell(n.advertise), role, cell(new Date(n.started_at).toLocaleString()), cell(ago(n.last_seen_at)));
      tr.title = n.id;
      return tr;
    }),
  );
  $('nodes-count').textContent = nodes.length === 1 ? '1 node' : `${nodes.length} nodes`;
}
