// The pages. Each takes the route's context (`params`, `args`, `view`, `go`, `say`,
// `alive`, `onLeave`) and renders into `ctx.view`; lists are paged by the server
// (limit/offset/total), never fetched whole.

import { h, fill, num, ago, secs, badge, table, card, errorBox, severityRank, SEVERITIES } from './dom.js';
import * as api from './api.js';

const PAGE_SIZES = [25, 50, 100, 250];
const HARVEST_KEY = (cloud) => `palisade.harvest.${cloud}`;

// ---- shared pieces ------------------------------------------------------------------

function header(title, sub, ...actions) {
  return h(
    'div',
    { class: 'page-head' },
    h('div', {}, h('h1', {}, title), sub ? h('p', { class: 'muted sub' }, sub) : null),
    h('div', { class: 'actions' }, actions),
  );
}

const resourceLink = (uid, text) => h('a', { href: `#/resources/${api.seg(uid)}` }, text);
const insightLink = (id, text) => h('a', { href: `#/insights/${api.seg(id)}` }, text);

/** "1–100 of 12,345" with previous/next, keeping the other parameters of the route. */
function pager(total, limit, offset, onPage) {
  const first = total === 0 ? 0 : offset + 1;
  const last = Math.min(offset + limit, total);
  return h(
    'div',
    { class: 'pager' },
    h('span', { class: 'pager-range', 'data-total': total }, `${num(first)}–${num(last)} of ${num(total)}`),
    h('button', {
      class: 'btn', type: 'button', disabled: offset <= 0, 'data-page': 'prev',
      onclick: () => onPage(Math.max(0, offset - limit)),
    }, '‹ Previous'),
    h('button', {
      class: 'btn', type: 'button', disabled: offset + limit >= total, 'data-page': 'next',
      onclick: () => onPage(offset + limit),
    }, 'Next ›'),
  );
}

function intParam(params, name, dflt, allowed) {
  const n = Number.parseInt(params.get(name) || '', 10);
  if (!Number.isFinite(n) || n < 0) return dflt;
  if (allowed && !allowed.includes(n)) return dflt;
  return n;
}

function tags(map) {
  const entries = Object.entries(map || {});
  if (!entries.length) return h('span', { class: 'muted' }, 'none');
  return h('span', { class: 'tags' }, entries.map(([k, v]) => h('span', { class: 'tag' }, v ? `${k}=${v}` : k)));
}

function jobState(job) {
  if (!job) return h('span', { class: 'muted' }, 'not known');
  const parts = [badge(job.state, job.state)];
  if (job.state === 'done') {
    if (job.counts && typeof job.counts.resources === 'number') {
      parts.push(h('span', { class: 'muted' }, ` ${num(job.counts.resources)} resources`));
    }
    parts.push(' ', ago(job.finished_at));
  } else if (job.state === 'failed') {
    parts.push(' ', h('span', { class: 'err-text' }, job.error || 'failed'));
  } else if (job.state === 'running') {
    parts.push(' ', h('span', { class: 'muted' }, 'since '), ago(job.started_at));
  }
  return h('span', { class: 'job', 'data-job': job.id, 'data-state': job.state }, parts);
}

/** Poll a job every second until it ends, calling `show(job)` each time. */
function pollJob(ctx, id, show, done) {
  let timer = null;
  let stopped = false;
  ctx.onLeave(() => {
    stopped = true;
    clearTimeout(timer);
  });
  const tick = async () => {
    if (stopped) return;
    let job;
    try {
      job = await api.get(`v2/jobs/${api.seg(id)}`);
    } catch (e) {
      if (e.status === 404) {
        show(null);
        return;
      }
      timer = setTimeout(tick, 2000);
      return;
    }
    if (stopped) return;
    show(job);
    if (job.state === 'done' || job.state === 'failed') {
      if (done) done(job);
    } else {
      timer = setTimeout(tick, 1000);
    }
  };
  tick();
}

// ---- sign in ------------------------------------------------------------------------

export async function login(ctx) {
  const err = h('div', { class: 'form-error', role: 'alert', hidden: true });
  const user = h('input', { id: 'username', name: 'username', autocomplete: 'username', required: true, autofocus: true });
  const pass = h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const button = h('button', { class: 'btn btn-primary btn-block', type: 'submit', id: 'sign-in' }, 'Sign in');
  const form = h(
    'form',
    {
      class: 'login-card card',
      id: 'login-form',
      onsubmit: async (ev) => {
        ev.preventDefault();
        err.hidden = true;
        button.disabled = true;
        try {
          await api.login(user.value.trim(), pass.value);
          ctx.go('/');
        } catch (e) {
          err.textContent = e.code === 'invalid_credentials' ? 'User name or password is wrong.' : e.message;
          err.hidden = false;
          pass.value = '';
          pass.focus();
        } finally {
          button.disabled = false;
        }
      },
    },
    h('div', { class: 'login-brand' }, h('span', { class: 'brand-mark' }), 'Palisade'),
    h('p', { class: 'muted' }, 'Cloud security posture, harvested and checked.'),
    err,
    h('label', { for: 'username' }, 'User name'),
    user,
    h('label', { for: 'password' }, 'Password'),
    pass,
    button,
  );
  fill(ctx.view, h('div', { class: 'login-wrap' }, form));
  document.getElementById('topbar').hidden = true;
  user.focus();
}

// ---- dashboard ----------------------------------------------------------------------

export async function dashboard(ctx) {
  const [clouds, insights, queues, nodes, counts] = await Promise.all([
    api.get('v2/clouds'),
    api.get('v2/insights'),
    api.get('v2/jobs/queues'),
    api.get('v2/cluster/nodes'),
    api.get('v2/resource-counts'),
  ]);
  const perCloud = await Promise.all(
    clouds.items.map((c) => api.get(`v2/resource-counts${api.query({ cloud: c.id })}`)),
  );
  if (!ctx.alive()) return;

  const openTotal = insights.items.reduce((s, i) => s + (i.open_findings || 0), 0);
  const waiting = ['p0', 'p1', 'p2'].reduce((s, p) => s + (queues[p].depth || 0), 0);
  const running = ['p0', 'p1', 'p2'].reduce((s, p) => s + (queues[p].running || 0), 0);
  const tile = (id, label, value, note) =>
    h('div', { class: 'tile', id }, h('div', { class: 'tile-label' }, label), h('div', { class: 'tile-value' }, value), note ? h('div', { class: 'tile-note muted' }, note) : null);

  const tiles = h(
    'div',
    { class: 'tiles' },
    tile('tile-clouds', 'Cloud accounts', num(clouds.total)),
    tile('tile-resources', 'Resources', num(counts.total), `${counts.items.length} types`),
    tile('tile-findings', 'Open findings', num(openTotal), `${insights.items.filter((i) => i.open_findings > 0).length} insights failing`),
    tile('tile-jobs', 'Jobs', `${num(running)} running`, `${num(waiting)} waiting`),
  );

  ctx.view.append(
    header(
      'Dashboard',
      'Your estate at a glance.',
      h('button', { class: 'btn', type: 'button', id: 'refresh', onclick: () => ctx.go('/') }, 'Refresh'),
      api.hasRole('operator') ? h('a', { class: 'btn btn-primary', href: '#/clouds/new' }, 'Add cloud') : null,
    ),
    tiles,
    cloudsCard(ctx, clouds.items, perCloud),
    h('div', { class: 'grid-2' }, findingsCard(insights.items), h('div', { class: 'stack' }, queuesCard(queues), nodesCard(nodes.items))),
  );
}

function cloudsCard(ctx, clouds, perCloud) {
  if (!clouds.length) {
    return card(
      'Cloud accounts',
      h('div', { class: 'empty' }, h('p', {}, 'No cloud account yet.'), api.hasRole('operator') ? h('a', { class: 'btn btn-primary', href: '#/clouds/new' }, 'Add your first cloud') : null),
    );
  }
  const rows = clouds.map((c, i) => {
    const status = h('div', { class: 'harvest-status', 'data-cloud': c.id });
    const known = localStorage.getItem(HARVEST_KEY(c.id));
    if (known) {
      fill(status, h('span', { class: 'muted' }, 'checking…'));
      pollJob(ctx, known, (job) => fill(status, jobState(job)));
    } else {
      fill(status, jobState(null));
    }
    const button = h(
      'button',
      {
        class: 'btn btn-small', type: 'button', 'data-harvest': c.id,
        disabled: !api.hasRole('operator'),
        title: api.hasRole('operator') ? 'Queue a harvest of this cloud now (p0)' : 'Needs the operator role',
        onclick: async () => {
          button.disabled = true;
          try {
            const r = await api.post(`v2/clouds/${api.seg(c.id)}/harvest`);
            localStorage.setItem(HARVEST_KEY(c.id), r.job_id);
            pollJob(ctx, r.job_id, (job) => fill(status, jobState(job)), () => {
              button.disabled = false;
            });
          } catch (e) {
            fill(status, h('span', { class: 'err-text' }, e.code === 'conflict' ? 'a harvest is already queued or running' : e.message));
            button.disabled = false;
          }
        },
      },
      'Harvest now',
    );
    const counts = perCloud[i];
    const byType = counts.items.length
      ? h('div', { class: 'chips' }, counts.items.map((t) =>
        h('a', { class: 'chip', href: `#/resources${api.query({ cloud: c.id, type: t.type })}`, 'data-type': t.type },
          h('span', { class: 'chip-label' }, t.type.replace(/^aws\./, '')), h('span', { class: 'chip-count' }, num(t.count)))))
      : h('span', { class: 'muted' }, 'nothing harvested yet');
    return h(
      'tr',
      { 'data-cloud-row': c.id },
      h('td', {}, h('div', { class: 'strong' }, c.name), h('div', { class: 'muted mono small' }, c.id)),
      h('td', {}, badge(c.provider, 'provider'), ' ', h('span', { class: 'small' }, c.regions.join(', '))),
      h('td', {}, h('span', { class: 'small' }, (c.credentials && c.credentials.kind) || '–')),
      h('td', {}, h('a', { href: `#/resources${api.query({ cloud: c.id })}`, class: 'strong', 'data-cloud-total': c.id }, num(counts.total)), byType),
      h('td', {}, status),
      h('td', { class: 'right' }, button),
    );
  });
  return card('Cloud accounts', table(['Account', 'Provider and regions', 'Credentials', 'Resources', 'Last harvest', ''], rows, { id: 'clouds' }));
}

function findingsCard(insights) {
  const bySeverity = Object.fromEntries(SEVERITIES.map((s) => [s, 0]));
  for (const i of insights) bySeverity[i.severity] = (bySeverity[i.severity] || 0) + (i.open_findings || 0);
  const failing = insights
    .filter((i) => i.open_findings > 0)
    .sort((a, b) => severityRank(a.severity) - severityRank(b.severity) || b.open_findings - a.open_findings);
  const summary = h(
    'div',
    { class: 'sev-summary' },
    SEVERITIES.map((s) => h('div', { class: `sev sev-${s}`, 'data-severity': s }, h('div', { class: 'sev-count' }, num(bySeverity[s])), h('div', { class: 'sev-label' }, s))),
  );
  const body = failing.length
    ? table(
      ['Insight', 'Severity', 'Open'],
      failing.map((i) => h('tr', { 'data-insight': i.id },
        h('td', {}, insightLink(i.id, i.name)),
        h('td', {}, badge(i.severity)),
        h('td', { class: 'right strong', 'data-open': i.open_findings }, num(i.open_findings)))),
      { id: 'findings-by-insight' },
    )
    : h('p', { class: 'empty muted' }, 'No open findings.');
  return card('Open findings', h('div', {}, summary, body), h('a', { href: '#/insights', class: 'small' }, 'All insights →'));
}

function queuesCard(q) {
  const names = { p0: 'on demand', p1: 'compliance', p2: 'scheduled' };
  const rows = ['p0', 'p1', 'p2'].map((p) => h(
    'tr', { 'data-priority': p },
    h('td', { class: 'nowrap' }, h('span', { class: 'strong' }, p), ' ', h('span', { class: 'muted small' }, names[p])),
    h('td', { class: 'right' }, num(q[p].depth)),
    h('td', { class: 'right' }, num(q[p].running)),
    h('td', { class: 'right' }, secs(q[p].oldest_wait_secs)),
    h('td', { class: 'right' }, secs(q[p].mean_wait_secs)),
    h('td', { class: 'right' }, secs(q[p].mean_run_secs)),
    h('td', { class: 'right' }, num(q[p].done)),
    h('td', { class: 'right' }, q[p].failed ? h('span', { class: 'err-text' }, num(q[p].failed)) : '0'),
  ));
  return card(
    'Queues',
    table(['Priority', 'Waiting', 'Running', 'Oldest', 'Avg wait', 'Avg run', 'Done', 'Failed'], rows, { id: 'queues', class: 'table numeric' }),
    h('span', { class: q.dead_letter ? 'err-text small' : 'muted small' }, `${num(q.dead_letter)} dead letters`),
  );
}

function nodesCard(nodes) {
  const body = nodes.length
    ? table(
      ['Node', 'Roles', 'State', 'Jobs', 'Heartbeat'],
      nodes.map((n) => h('tr', { 'data-node': n.node },
        h('td', {}, h('span', { class: 'mono' }, n.node)),
        h('td', {}, n.roles.join(', ')),
        h('td', {}, badge(n.state)),
        h('td', { class: 'right' }, num(n.running_jobs)),
        h('td', { class: 'right' }, ago(n.last_seen)))),
      { id: 'nodes' },
    )
    : h('p', { class: 'muted empty' }, 'No node heard from yet.');
  return card('Cluster nodes', body);
}

// ---- resources ----------------------------------------------------------------------

export async function resources(ctx) {
  const p = ctx.params;
  const filter = {
    cloud: p.get('cloud') || '',
    type: p.get('type') || '',
    region: p.get('region') || '',
    tag: p.get('tag') || '',
  };
  const limit = intParam(p, 'limit', 50, PAGE_SIZES);
  const offset = intParam(p, 'offset', 0);
  const [clouds, counts, page] = await Promise.all([
    api.get('v2/clouds'),
    api.get(`v2/resource-counts${api.query({ cloud: filter.cloud })}`),
    api.get(`v2/resources${api.query({ ...filter, limit, offset })}`),
  ]);
  if (!ctx.alive()) return;

  const cloudName = Object.fromEntries(clouds.items.map((c) => [c.id, c.name]));
  const sel = (id, options, value) =>
    h('select', { id, name: id }, options.map(([v, label]) => h('option', { value: v, selected: v === value }, label)));
  const cloudSel = sel('f-cloud', [['', 'All clouds'], ...clouds.items.map((c) => [c.id, c.name])], filter.cloud);
  const typeOptions = counts.items.map((t) => [t.type, `${t.type} (${num(t.count)})`]);
  if (filter.type && !counts.items.some((t) => t.type === filter.type)) typeOptions.push([filter.type, filter.type]);
  const typeSel = sel('f-type', [['', 'All types'], ...typeOptions], filter.type);
  const region = h('input', { id: 'f-region', value: filter.region, placeholder: 'us-east-1' });
  const tag = h('input', { id: 'f-tag', value: filter.tag, placeholder: 'Owner or Owner=alice' });
  const size = sel('f-limit', PAGE_SIZES.map((n) => [String(n), `${n} per page`]), String(limit));
  const apply = (extra = {}) =>
    ctx.go('/resources', {
      cloud: cloudSel.value, type: typeSel.value, region: region.value.trim(), tag: tag.value.trim(),
      limit: size.value === '50' ? '' : size.value, ...extra,
    });
  const form = h(
    'form',
    { class: 'filters', id: 'resource-filters', onsubmit: (ev) => { ev.preventDefault(); apply(); } },
    h('label', {}, 'Cloud', cloudSel),
    h('label', {}, 'Type', typeSel),
    h('label', {}, 'Region', region),
    h('label', {}, 'Tag', tag),
    h('label', {}, 'Page size', size),
    h('div', { class: 'filter-actions' },
      h('button', { class: 'btn btn-primary', type: 'submit', id: 'apply-filters' }, 'Apply'),
      h('a', { class: 'btn btn-ghost', href: '#/resources' }, 'Clear')),
  );
  for (const s of [cloudSel, typeSel, size]) s.addEventListener('change', () => apply());

  const rows = page.items.map((r) => h(
    'tr', { 'data-uid': r.uid },
    h('td', {}, resourceLink(r.uid, r.name || r.id), r.name && r.name !== r.id ? h('div', { class: 'muted mono small' }, r.id) : null),
    h('td', {}, h('span', { class: 'mono small' }, r.type)),
    h('td', {}, r.region),
    h('td', {}, cloudName[r.cloud] || r.cloud),
    h('td', {}, tags(r.tags)),
    h('td', {}, ago(r.last_seen)),
  ));
  const list = page.items.length
    ? table(['Resource', 'Type', 'Region', 'Cloud', 'Tags', 'Last seen'], rows, { id: 'resources' })
    : h('p', { class: 'empty muted' }, 'No resource matches these filters.');
  const paging = pager(page.total, limit, offset, (o) => apply({ offset: o || '' }));
  ctx.view.append(
    header('Resources', `${num(page.total)} resources match.`),
    card('Filters', form),
    h('section', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', {}, 'Results'), paging), list, page.items.length > 10 ? h('div', { class: 'card-foot' }, pager(page.total, limit, offset, (o) => apply({ offset: o || '' }))) : null),
  );
}

export async function resource(ctx) {
  const [uid] = ctx.args;
  const [r, insights, clouds] = await Promise.all([
    api.get(`v2/resources/${api.seg(uid)}`),
    api.get('v2/insights'),
    api.get('v2/clouds'),
  ]);
  if (!ctx.alive()) return;
  const byId = Object.fromEntries(insights.items.map((i) => [i.id, i]));
  const cloud = clouds.items.find((c) => c.id === r.cloud);
  const facts = [
    ['Type', h('span', { class: 'mono' }, r.type)],
    ['Cloud id', h('span', { class: 'mono' }, r.id)],
    ['Palisade uid', h('span', { class: 'mono' }, r.uid)],
    ['Cloud account', cloud ? cloud.name : r.cloud],
    ['Account', r.account],
    ['Region', r.region],
    ['First seen', ago(r.first_seen)],
    ['Last seen', ago(r.last_seen)],
    ['Deleted', r.deleted_at ? ago(r.deleted_at) : 'no'],
    ['Tags', tags(r.tags)],
  ];
  const open = r.findings.filter((f) => f.state === 'open').length;
  const findings = r.findings.length
    ? table(
      ['Insight', 'Severity', 'State', 'First seen', 'Last seen'],
      r.findings.map((f) => h('tr', { 'data-finding': f.insight },
        h('td', {}, insightLink(f.insight, byId[f.insight] ? byId[f.insight].name : f.insight)),
        h('td', {}, byId[f.insight] ? badge(byId[f.insight].severity) : '–'),
        h('td', {}, badge(f.state)),
        h('td', {}, ago(f.first_seen)),
        h('td', {}, f.resolved_at ? ago(f.resolved_at) : ago(f.last_seen)))),
      { id: 'resource-findings' },
    )
    : h('p', { class: 'empty muted' }, 'No finding on this resource.');
  ctx.view.append(
    header(r.name || r.id, h('span', {}, h('a', { href: '#/resources' }, 'Resources'), ' / ', r.type),
      h('a', { class: 'btn', href: `#/resources${api.query({ cloud: r.cloud, type: r.type })}` }, 'More of this type')),
    h('div', { class: 'grid-2' },
      card('Details', h('dl', { class: 'facts', id: 'resource-facts' }, facts.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]))),
      card(`Findings (${open} open)`, findings)),
    card('Properties', h('pre', { class: 'json', id: 'properties' }, JSON.stringify(r.properties, null, 2))),
  );
}

// ---- insights -----------------------------------------------------------------------

export async function insights(ctx) {
  const list = await api.get('v2/insights');
  if (!ctx.alive()) return;
  const items = [...list.items].sort((a, b) =>
    (b.open_findings > 0) - (a.open_findings > 0) || severityRank(a.severity) - severityRank(b.severity) || a.name.localeCompare(b.name));
  ctx.view.append(
    header('Insights', `${num(list.total)} insights; ${num(items.filter((i) => i.open_findings > 0).length)} with open findings.`),
    card('Catalog', table(
      ['Insight', 'Severity', 'Resource types', 'Open findings'],
      items.map((i) => h('tr', { 'data-insight': i.id },
        h('td', {}, insightLink(i.id, i.name), h('div', { class: 'muted small' }, i.description)),
        h('td', {}, badge(i.severity)),
        h('td', {}, h('span', { class: 'mono small' }, i.resource_types.join(', '))),
        h('td', { class: 'right strong', 'data-open': i.open_findings }, num(i.open_findings)))),
      { id: 'insights' },
    )),
  );
}

export async function insight(ctx) {
  const [id] = ctx.args;
  const state = ['open', 'resolved', 'all'].includes(ctx.params.get('state')) ? ctx.params.get('state') : 'open';
  const limit = intParam(ctx.params, 'limit', 50, PAGE_SIZES);
  const offset = intParam(ctx.params, 'offset', 0);
  const [ins, page, clouds] = await Promise.all([
    api.get(`v2/insights/${api.seg(id)}`),
    api.get(`v2/insights/${api.seg(id)}/findings${api.query({ state, limit, offset })}`),
    api.get('v2/clouds'),
  ]);
  if (!ctx.alive()) return;
  const cloudName = Object.fromEntries(clouds.items.map((c) => [c.id, c.name]));
  const goPage = (extra) => ctx.go(`/insights/${api.seg(id)}`, { state: state === 'open' ? '' : state, offset: '', ...extra });
  const tabs = h('div', { class: 'tabs', role: 'tablist' }, ['open', 'resolved', 'all'].map((s) =>
    h('button', { type: 'button', class: s === state ? 'tab active' : 'tab', 'data-state': s, onclick: () => goPage({ state: s === 'open' ? '' : s }) }, s)));
  const rows = page.items.map((f) => h(
    'tr', { 'data-uid': f.resource_uid },
    h('td', {}, resourceLink(f.resource_uid, f.resource)),
    h('td', {}, h('span', { class: 'mono small' }, f.resource_type)),
    h('td', {}, f.region),
    h('td', {}, cloudName[f.cloud] || f.cloud),
    h('td', {}, badge(f.state)),
    h('td', {}, ago(f.first_seen)),
    h('td', {}, f.resolved_at ? ago(f.resolved_at) : ago(f.last_seen)),
  ));
  const body = rows.length
    ? table(['Resource', 'Type', 'Region', 'Cloud', 'State', 'First seen', 'Last seen'], rows, { id: 'insight-findings' })
    : h('p', { class: 'empty muted' }, `No ${state === 'all' ? '' : `${state} `}finding.`);
  ctx.view.append(
    header(ins.name, h('span', {}, h('a', { href: '#/insights' }, 'Insights'), ' / ', h('span', { class: 'mono' }, ins.id))),
    h('div', { class: 'card insight-summary' },
      h('div', { class: 'insight-meta' }, badge(ins.severity), h('span', { class: 'mono small' }, ins.resource_types.join(', ')),
        h('span', { class: 'strong', id: 'insight-open', 'data-open': ins.open_findings }, `${num(ins.open_findings)} open`)),
      h('p', {}, ins.description)),
    h('section', { class: 'card' },
      h('div', { class: 'card-head' }, tabs, pager(page.total, limit, offset, (o) => goPage({ state: state === 'open' ? '' : state, offset: o || '' }))),
      body),
  );
}

// ---- add a cloud --------------------------------------------------------------------

export async function newCloud(ctx) {
  const err = h('div', { class: 'form-error', role: 'alert', hidden: true });
  const field = (id, label, input, help) =>
    h('div', { class: 'field', 'data-field': id }, h('label', { for: id }, label), input, help ? h('div', { class: 'help muted' }, help) : null);
  const provider = h('select', { id: 'provider' }, h('option', { value: 'aws' }, 'Amazon Web Services (aws)'));
  const name = h('input', { id: 'cloud-name', required: true, maxlength: 200, placeholder: 'production' });
  const regions = h('input', { id: 'regions', required: true, value: 'us-east-1', placeholder: 'us-east-1, eu-west-1' });
  const kind = h('select', { id: 'credential-kind' },
    h('option', { value: 'default' }, 'Default chain (environment, profile, instance role)'),
    h('option', { value: 'keys' }, 'Access keys'),
    h('option', { value: 'assume_role' }, 'Assume a role (STS)'));
  const keyId = h('input', { id: 'access-key-id', autocomplete: 'off', spellcheck: 'false' });
  const secret = h('input', { id: 'secret-access-key', type: 'password', autocomplete: 'new-password' });
  const token = h('input', { id: 'session-token', type: 'password', autocomplete: 'off' });
  const roleArn = h('input', { id: 'role-arn', placeholder: 'arn:aws:iam::123456789012:role/palisade-reader', spellcheck: 'false' });
  const externalId = h('input', { id: 'external-id', autocomplete: 'off' });
  const keysBox = h('fieldset', { class: 'sub-fields', id: 'keys-fields' },
    field('access-key-id', 'Access key id', keyId),
    field('secret-access-key', 'Secret access key', secret, 'Stored on the server; never shown again.'),
    field('session-token', 'Session token (optional)', token));
  const roleBox = h('fieldset', { class: 'sub-fields', id: 'role-fields' },
    field('role-arn', 'Role ARN', roleArn),
    field('external-id', 'External id (optional)', externalId));
  const sync = () => {
    keysBox.hidden = kind.value !== 'keys';
    roleBox.hidden = kind.value !== 'assume_role';
  };
  kind.addEventListener('change', sync);
  sync();
  const submit = h('button', { class: 'btn btn-primary', type: 'submit', id: 'create-cloud' }, 'Add cloud');
  const form = h(
    'form',
    {
      class: 'form', id: 'cloud-form',
      onsubmit: async (ev) => {
        ev.preventDefault();
        err.hidden = true;
        let credentials = { kind: kind.value };
        if (kind.value === 'keys') {
          credentials = { kind: 'keys', access_key_id: keyId.value.trim(), secret_access_key: secret.value };
          if (token.value) credentials.session_token = token.value;
        } else if (kind.value === 'assume_role') {
          credentials = { kind: 'assume_role', role_arn: roleArn.value.trim() };
          if (externalId.value.trim()) credentials.external_id = externalId.value.trim();
        }
        const body = {
          provider: provider.value,
          name: name.value.trim(),
          regions: regions.value.split(/[\s,]+/).filter(Boolean),
          credentials,
        };
        submit.disabled = true;
        try {
          const made = await api.post('v2/clouds', body);
          ctx.say(`Cloud “${made.name}” added. Harvest it to see its resources.`);
          ctx.go('/');
        } catch (e) {
          err.textContent = e.code === 'csrf_rejected' ? 'This tab has no session token for changes: sign out and sign in again.' : e.message;
          err.hidden = false;
        } finally {
          submit.disabled = false;
        }
      },
    },
    err,
    field('provider', 'Provider', provider),
    field('cloud-name', 'Name', name, 'How this account is shown in Palisade.'),
    field('regions', 'Regions', regions, 'Comma-separated region names.'),
    field('credential-kind', 'Credentials', kind),
    keysBox,
    roleBox,
    h('div', { class: 'form-actions' }, submit, h('a', { class: 'btn btn-ghost', href: '#/' }, 'Cancel')),
  );
  ctx.view.append(header('Add a cloud account', 'Palisade reads the account with the credentials you give; it never changes it.'), h('div', { class: 'narrow' }, card('Account', form)));
  name.focus();
}
