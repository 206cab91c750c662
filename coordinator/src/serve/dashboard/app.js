// synthforge dashboard. Polls the JSON API once a second and redraws.
//
// Generated text and every user-given string is untrusted: it only ever reaches the page as
// text (textContent / text nodes via el()), never as HTML. Do not add innerHTML here.
'use strict';

const POLL_MS = 1000;
// Finished jobs are listed collapsed, this many per page, so the list stays short however many
// jobs the coordinator has run and the detail panel below it stays in place.
const FINISHED_PER_PAGE = 8;
// Failure reasons listed in the detail panel (the rest are summed in one line).
const TOP_REASONS = 8;
const TERMINAL = ['succeeded', 'failed', 'cancelled'];
// The token lives in this tab's sessionStorage (gone when the tab closes), never in a cookie:
// a cookie would be sent by the browser on requests other sites make to this coordinator.
const TOKEN_KEY = 'synthforge.token';
const state = {
  selected: null,
  token: sessionStorage.getItem(TOKEN_KEY),
  adminToken: null, // asked for on cancel when the page's token may not cancel; memory only
  messages: {},
  detail: null,
  finishedPage: 0,
};

class Unauthorized extends Error {}

function authHeaders(token) {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function setToken(t) {
  state.token = t || null;
  if (state.token) sessionStorage.setItem(TOKEN_KEY, state.token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

function showLogin(message) {
  document.getElementById('login').hidden = false;
  document.body.classList.add('needs-token'); // hides the (empty) panels until a token works
  document.getElementById('login-msg').textContent = message || '';
}

document.getElementById('login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const input = document.getElementById('token-input');
  setToken(input.value.trim());
  input.value = '';
  document.getElementById('login').hidden = true;
  document.body.classList.remove('needs-token');
  poll();
});

// Builds an element; string children become text nodes (never parsed as HTML).
function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === 'class') e.className = v;
    else if (k === 'onclick') e.addEventListener('click', v);
    else if (k === 'style') e.style.cssText = v;
    else e.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)));
  }
  return e;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

function fmtNum(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  if (Math.abs(n) >= 1e9) return (n / 1e9).toFixed(2) + 'G';
  if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(2) + 'M';
  if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(1) + 'k';
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

function fmtDuration(s) {
  if (s === null || s === undefined) return '–';
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${sec}s`;
  return `${sec}s`;
}

function fmtAgo(ms) {
  if (!ms) return 'never';
  const s = Math.max(0, (Date.now() - ms) / 1000);
  return s < 1 ? 'just now' : `${fmtDuration(s)} ago`;
}

async function getJson(path) {
  const r = await fetch(path, { cache: 'no-store', headers: authHeaders(state.token) });
  if (r.status === 401) throw new Unauthorized(`${path}: HTTP 401`);
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

async function cancelJob(id) {
  const token = state.adminToken || state.token;
  let msg;
  try {
    // JSON content type: a request no other site's page can send without a CORS preflight,
    // which this coordinator does not answer (see serve/same_origin.rs).
    const r = await fetch(`/api/jobs/${encodeURIComponent(id)}/cancel`, {
      method: 'POST',
      headers: { ...authHeaders(token), 'Content-Type': 'application/json' },
      body: '{}',
    });
    if (r.status === 401 || r.status === 403) {
      state.adminToken = null;
      const t = window.prompt(`This token may not cancel. Admin token to cancel ${id}:`);
      if (t) {
        state.adminToken = t;
        return cancelJob(id);
      }
      msg = { ok: false, text: 'refused: cancelling needs the admin token' };
    } else if (!r.ok) {
      msg = { ok: false, text: `failed: HTTP ${r.status} ${await r.text()}` };
    } else {
      const body = await r.json();
      msg = { ok: true, text: body.cancelled ? 'cancelled' : 'already ended' };
    }
  } catch (e) {
    msg = { ok: false, text: `failed: ${e.message}` };
  }
  state.messages[id] = msg;
  poll();
}

function sum(obj) {
  return Object.values(obj || {}).reduce((a, b) => a + b, 0);
}

function select(id) {
  state.selected = id;
  poll();
}

// Lines under a job's numbers that say what state it is in beyond the state badge (its error;
// other conditions add a line here). Each entry: { cls, text }.
function jobStateLines(j) {
  const lines = [];
  if (j.record.error) lines.push({ cls: 'error', text: j.record.error });
  if (j.waiting) lines.push({ cls: 'waiting', text: j.waiting });
  const p = j.record.planning;
  if (j.record.state === 'planning' && p) {
    lines.push({
      cls: 'planning',
      text: `planning: ${fmtNum(p.objects_planned)} of ${fmtNum(p.objects_total)} input objects, ` +
        `${fmtNum(p.tasks_written)} tasks, ${fmtNum(p.rows_planned)} rows so far`,
    });
  }
  if (j.dedup_phase && !TERMINAL.includes(j.record.state)) {
    const p = j.dedup_phase;
    lines.push({ cls: 'phase', text: `dedup phase: ${p.done}/${p.total} bucket tasks done` });
  }
  return lines;
}

function renderJobs(jobs) {
  const root = document.getElementById('jobs');
  clear(root);
  if (!jobs.length) {
    root.appendChild(el('p', { class: 'muted' }, 'No jobs yet.'));
    return;
  }
  jobs.sort((a, b) => b.record.created_ms - a.record.created_ms);
  if (!state.selected || !jobs.some((j) => j.record.id === state.selected)) {
    state.selected = jobs[0].record.id;
  }
  const active = jobs.filter((j) => !TERMINAL.includes(j.record.state));
  const finished = jobs.filter((j) => TERMINAL.includes(j.record.state));
  for (const j of active) root.appendChild(jobCard(j));
  if (finished.length) root.appendChild(finishedList(finished));
}

// A running (or finalizing) job: its numbers, progress bar and cancel button.
function jobCard(j) {
  const r = j.record;
  const st = j.stats;
  // A planning job has no rows to count yet (the API says 1 for a job of no rows).
  const pct = r.state === 'planning' ? 0 : Math.min(100, j.progress * 100);
  const msg = state.messages[r.id];
  return el('div', { class: 'job' + (r.id === state.selected ? ' selected' : ''), 'data-job': r.id },
    el('div', { class: 'job-head', onclick: () => select(r.id) },
      el('span', { class: 'job-name' }, r.name),
      el('span', { class: 'muted job-id' }, r.id),
      el('span', { class: `state state-${r.state}` }, r.state),
      el('span', { class: 'muted' }, r.output)),
    el('div', { class: 'bar', title: `${pct.toFixed(1)}%` },
      el('div', { class: 'bar-fill', style: `width:${pct.toFixed(2)}%` })),
    el('div', { class: 'nums' },
      el('span', {}, 'progress ', el('b', { class: 'progress-pct' }, `${pct.toFixed(1)}%`)),
      el('span', {}, 'rows ', el('b', { class: 'rows-done' }, `${j.rows_done}`), ` / ${r.rows_total}`),
      el('span', {}, 'out ', el('b', {}, fmtNum(st.rows_out))),
      el('span', {}, 'rows/s ', el('b', { class: 'rows-per-s' }, fmtNum(j.rows_per_s))),
      el('span', {}, 'tokens/s ', el('b', { class: 'tokens-per-s' }, fmtNum(j.tokens_per_s))),
      el('span', {}, 'elapsed ', el('b', { class: 'elapsed' }, fmtDuration(j.elapsed_s))),
      el('span', {}, 'ETA ', el('b', { class: 'eta' }, fmtDuration(j.eta_s))),
      el('span', {}, 'tasks ', el('b', {}, `${j.tasks_done}/${r.tasks_total}`),
        ` (${j.tasks_leased} running, ${j.tasks_pending} pending, ${j.tasks_failed} failed)`),
      el('span', {}, 'removed ', el('b', {}, fmtNum(sum(st.removed)))),
      el('span', {}, 'failed rows ', el('b', {}, fmtNum(st.rows_failed))),
      el('span', {}, 'tokens ', el('b', {}, fmtNum(st.prompt_tokens)), ' in / ',
        el('b', {}, fmtNum(st.completion_tokens)), ' out')),
    ...jobStateLines(j).map((l) => el('div', { class: `state-line ${l.cls}` }, l.text)),
    el('div', {},
      el('button', { class: 'cancel', 'data-job': r.id, onclick: () => cancelJob(r.id) }, 'Cancel'),
      msg ? el('span', { class: 'msg ' + (msg.ok ? 'ok' : 'error') }, msg.text) : null));
}

// Finished jobs, newest first: one line each, a page at a time.
function finishedList(finished) {
  const pages = Math.max(1, Math.ceil(finished.length / FINISHED_PER_PAGE));
  state.finishedPage = Math.min(state.finishedPage, pages - 1);
  const first = state.finishedPage * FINISHED_PER_PAGE;
  const shown = finished.slice(first, first + FINISHED_PER_PAGE);
  const table = el('table', { id: 'finished-jobs' },
    el('thead', {}, el('tr', {}, ...['job', 'id', 'state', 'rows out', 'removed', 'failed rows', 'elapsed', 'ended']
      .map((h) => el('th', {}, h)))));
  const body = el('tbody', {});
  for (const j of shown) {
    const r = j.record;
    const msg = state.messages[r.id];
    body.appendChild(el('tr', {
      class: 'finished-job' + (r.id === state.selected ? ' selected' : ''), 'data-job': r.id,
      onclick: () => select(r.id),
    },
    el('td', { class: 'job-name' }, r.name), el('td', { class: 'muted job-id' }, r.id),
    el('td', {}, el('span', { class: `state state-${r.state}` }, r.state),
      msg ? el('span', { class: 'msg ' + (msg.ok ? 'ok' : 'error') }, msg.text) : null),
    el('td', {}, fmtNum(j.stats.rows_out)), el('td', {}, fmtNum(sum(j.stats.removed))),
    el('td', {}, fmtNum(j.stats.rows_failed)), el('td', { class: 'elapsed' }, fmtDuration(j.elapsed_s)),
    el('td', {}, fmtAgo(r.finished_ms))));
  }
  table.appendChild(body);
  const turn = (delta) => { state.finishedPage += delta; poll(); };
  return el('div', { class: 'panel finished' },
    el('h3', {}, `Finished jobs (${finished.length})`),
    table,
    el('div', { class: 'pager' },
      el('button', { class: 'page-prev', onclick: () => turn(-1), ...(state.finishedPage === 0 ? { disabled: '' } : {}) }, '‹ newer'),
      el('span', { class: 'page-info muted' }, `page ${state.finishedPage + 1} of ${pages}`),
      el('button', { class: 'page-next', onclick: () => turn(1), ...(state.finishedPage >= pages - 1 ? { disabled: '' } : {}) }, 'older ›')));
}

function renderDetail(d) {
  const sec = document.getElementById('detail');
  if (!d) { sec.hidden = true; return; }
  sec.hidden = false;
  document.getElementById('detail-name').textContent = `${d.record.name} (${d.record.id})`;
  const ended = TERMINAL.includes(d.record.state);
  document.getElementById('detail-elapsed').textContent =
    `${d.record.state} · ${ended ? 'ran' : 'running for'} ${fmtDuration(d.elapsed_s)}`;
  drawChart(document.getElementById('chart'), d.series, ended);
  renderFunnel(d.funnel || []);
  renderFailures(d);
  renderBackends(d.backends);
  renderSamples(d.samples);
}

// Rows in → out per stage, with what each stage removed and failed, by reason.
function renderFunnel(steps) {
  const tb = document.querySelector('#funnel tbody');
  clear(tb);
  if (!steps.length) tb.appendChild(el('tr', {}, el('td', { colspan: 5, class: 'muted' }, 'no stages')));
  const reasons = (m) => {
    const entries = Object.entries(m || {}).sort((a, b) => b[1] - a[1]);
    if (!entries.length) return '–';
    return el('span', {}, ...entries.map(([r, n]) => el('span', { class: 'reason' }, `${r}: ${fmtNum(n)}`)));
  };
  for (const st of steps) {
    const label = st.stage + (st.stages > 1 ? ` ×${st.stages}` : '') + (st.at_finalize ? ' (whole job, at the end)' : '');
    tb.appendChild(el('tr', { 'data-stage': st.stage },
      el('td', {}, label),
      el('td', { class: 'funnel-in' }, fmtNum(st.rows_in)),
      el('td', { class: 'funnel-out' }, fmtNum(st.rows_out)),
      el('td', { class: 'funnel-removed' }, reasons(st.removed)),
      el('td', { class: 'funnel-failed' }, reasons(st.failed))));
  }
}

// Failed rows by reason (top reasons first, with the first row of each as an example) and
// failed tasks.
function renderFailures(d) {
  const st = d.stats;
  document.getElementById('failed-rows').textContent =
    `${fmtNum(st.rows_failed)} seed rows went to failures/; ${d.failed_tasks.length} tasks failed.`;
  const tb = document.querySelector('#failure-reasons tbody');
  clear(tb);
  const entries = Object.entries(st.failed || {}).sort((a, b) => b[1] - a[1]);
  if (!entries.length) {
    const why = st.rows_failed ? 'reasons not reported (rows counted before reasons were)' : 'none';
    tb.appendChild(el('tr', {}, el('td', { colspan: 3, class: 'muted' }, why)));
  }
  for (const [reason, n] of entries.slice(0, TOP_REASONS)) {
    const ex = (st.failed_examples || {})[reason];
    tb.appendChild(el('tr', { class: 'failure-reason' },
      el('td', { class: 'error' }, reason), el('td', {}, fmtNum(n)),
      el('td', { class: 'failure-example' }, ex ? `${ex.seed_id} at ${ex.source}` : '–')));
  }
  if (entries.length > TOP_REASONS) {
    const rest = entries.slice(TOP_REASONS);
    tb.appendChild(el('tr', {}, el('td', { class: 'muted' }, `${rest.length} more reasons`),
      el('td', {}, fmtNum(rest.reduce((a, [, n]) => a + n, 0))), el('td', {})));
  }
  const fl = document.getElementById('failures');
  clear(fl);
  for (const [task, err] of d.failed_tasks) fl.appendChild(el('li', {}, `task ${task}: `, el('span', { class: 'error' }, err)));
}

function renderBackends(backends) {
  const be = document.querySelector('#backends tbody');
  clear(be);
  if (!backends.length) be.appendChild(el('tr', {}, el('td', { colspan: 11, class: 'muted' }, 'no reports yet (workers send them with heartbeats)')));
  for (const b of backends) {
    const errs = Object.entries(b.errors_by_code).map(([c, n]) => `${c === '0' ? 'transport' : c}: ${n}`).join(', ') || 'none';
    be.appendChild(el('tr', {},
      el('td', {}, b.backend), el('td', {}, b.model), el('td', {}, b.url + (b.ejected ? ' (ejected)' : '')),
      el('td', {}, fmtNum(b.limit)), el('td', {}, fmtNum(b.in_flight)), el('td', {}, fmtNum(b.requests_ok)),
      el('td', {}, fmtNum(b.latency_p50_ms)), el('td', {}, fmtNum(b.latency_p95_ms)),
      el('td', {}, errs), el('td', {}, fmtNum(b.retries)), el('td', {}, fmtNum(b.workers))));
  }
}

function renderSamples(samples) {
  const sm = document.getElementById('samples');
  clear(sm);
  if (!samples.length) sm.appendChild(el('p', { class: 'muted' }, 'No committed rows yet.'));
  for (const s of samples.slice().reverse()) {
    sm.appendChild(el('div', { class: 'sample' },
      el('div', { class: 'muted' }, `seed ${s.seed_id} · task ${s.task_id} · ${s.stage} · ${s.model}`),
      s.prompt ? el('div', { class: 'sample-label' }, 'prompt') : null,
      s.prompt ? el('pre', { class: 'sample-prompt' }, s.prompt) : null,
      el('div', { class: 'sample-label' }, 'completion'),
      el('pre', { class: 'sample-completion' }, s.completion)));
  }
}

// Rows/s (left axis, blue) and tokens/s (right axis, amber) over time.
// After the job ended the chart keeps its whole history (the API keeps the series).
function drawChart(canvas, series, ended) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || canvas.width, h = canvas.clientHeight || canvas.height;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const pad = { l: 48, r: 56, t: 10, b: 22 };
  const pw = w - pad.l - pad.r, ph = h - pad.t - pad.b;
  ctx.font = '11px system-ui, sans-serif';
  ctx.strokeStyle = '#d9dde3';
  ctx.strokeRect(pad.l, pad.t, pw, ph);
  canvas.dataset.points = String(series.length);
  if (series.length < 2) {
    ctx.fillStyle = '#6b7280';
    ctx.fillText(ended ? 'the job ended before a rate was measured' : 'waiting for data…', pad.l + 8, pad.t + 18);
    return;
  }
  const t0 = series[0].t_ms, t1 = series[series.length - 1].t_ms;
  const maxRows = Math.max(1e-9, ...series.map((p) => p.rows_per_s)) * 1.1;
  const maxTok = Math.max(1e-9, ...series.map((p) => p.tokens_per_s)) * 1.1;
  const x = (t) => pad.l + ((t - t0) / Math.max(1, t1 - t0)) * pw;
  const line = (key, max, color) => {
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    series.forEach((p, i) => {
      const y = pad.t + ph - (p[key] / max) * ph;
      if (i === 0) ctx.moveTo(x(p.t_ms), y); else ctx.lineTo(x(p.t_ms), y);
    });
    ctx.stroke();
  };
  // tokens/s as a shaded area underneath, rows/s as the line on top: both stay visible
  // even when they move together.
  ctx.fillStyle = 'rgba(217, 119, 6, 0.15)';
  ctx.beginPath();
  ctx.moveTo(x(t0), pad.t + ph);
  for (const p of series) ctx.lineTo(x(p.t_ms), pad.t + ph - (p.tokens_per_s / maxTok) * ph);
  ctx.lineTo(x(t1), pad.t + ph);
  ctx.closePath();
  ctx.fill();
  line('tokens_per_s', maxTok, '#d97706');
  line('rows_per_s', maxRows, '#2563eb');
  ctx.fillStyle = '#2563eb';
  ctx.fillText(fmtNum(maxRows / 1.1), 4, pad.t + 10);
  ctx.fillText('0', 4, pad.t + ph);
  ctx.fillStyle = '#d97706';
  ctx.fillText(fmtNum(maxTok / 1.1), w - pad.r + 4, pad.t + 10);
  ctx.fillStyle = '#6b7280';
  ctx.fillText(`${fmtDuration((t1 - t0) / 1000)} shown${ended ? ' (job ended)' : ''}`, pad.l, h - 6);
  ctx.fillText(new Date(t1).toLocaleTimeString(), pad.l + pw - 60, h - 6);
}

function renderWorkers(workers) {
  const tb = document.querySelector('#workers tbody');
  clear(tb);
  if (!workers.length) tb.appendChild(el('tr', {}, el('td', { colspan: 7, class: 'muted' }, 'no workers registered')));
  for (const w of workers) {
    tb.appendChild(el('tr', { 'data-worker': w.id },
      el('td', {}, w.id), el('td', {}, w.address), el('td', {}, w.current_task || 'idle'),
      el('td', {}, fmtAgo(w.last_seen_ms)), el('td', {}, fmtNum(w.rows_per_s)),
      el('td', {}, fmtNum(w.rows_done_total + w.task_rows_done)), el('td', {}, fmtNum(w.tasks_done))));
  }
}

async function loadInfo() {
  try {
    const r = await fetch('/api/info', { cache: 'no-store' });
    const info = await r.json();
    document.getElementById('insecure-banner').hidden = !info.insecure;
    if (info.worker_grace_s) {
      document.getElementById('workers-note').textContent =
        `(a worker silent for ${fmtDuration(info.worker_grace_s)} is no longer listed)`;
    }
    if (info.auth_required && !state.token) showLogin();
  } catch (e) {
    // the poll below reports the connection
  }
}

let polling = false;
async function poll() {
  if (polling) return;
  // Waiting for the user to give a token: do not hammer the API with refused requests.
  if (!state.token && !document.getElementById('login').hidden) return;
  polling = true;
  const conn = document.getElementById('conn');
  try {
    const [jobs, workers] = await Promise.all([getJson('/api/jobs'), getJson('/api/workers')]);
    renderJobs(jobs);
    renderWorkers(workers);
    state.detail = state.selected ? await getJson(`/api/jobs/${encodeURIComponent(state.selected)}`) : null;
    renderDetail(state.detail);
    conn.textContent = 'live';
    document.getElementById('updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
  } catch (e) {
    if (e instanceof Unauthorized) {
      conn.textContent = 'token required';
      showLogin(state.token ? 'That token was refused.' : '');
      setToken(null);
    } else {
      conn.textContent = `disconnected (${e.message})`;
    }
  } finally {
    polling = false;
  }
}

loadInfo();
poll();
setInterval(poll, POLL_MS);
