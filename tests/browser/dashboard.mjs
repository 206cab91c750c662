// Drives the coordinator dashboard in headless Chromium (Debian's `chromium`) with
// playwright-core. Spawned by tests/tests/dashboard.rs against a running job; exits non-zero
// with a message on the first failed check and prints a JSON summary line on success.
//
// Environment: DASHBOARD_URL, JOB_ID, TOKEN (admin), READ_TOKEN (given at the login form), SCREENSHOT (png path), CHROMIUM (binary),
// PLANTED (the exact untrusted text the mock backend returns for planted rows), REASONS_JOB_ID (a
// finished job with failed rows, filter and dedup removals), FINISHED_JOBS (how many jobs ended
// before JOB_ID started).
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const url = env('DASHBOARD_URL');
const jobId = env('JOB_ID');
const token = env('TOKEN');
const readToken = env('READ_TOKEN');
const screenshot = env('SCREENSHOT');
const planted = env('PLANTED');
const reasonsJobId = env('REASONS_JOB_ID');
const finishedJobs = Number(env('FINISHED_JOBS'));
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const WAIT = 90_000;

function check(cond, msg) {
  if (!cond) throw new Error(`check failed: ${msg}`);
}

const profile = mkdtempSync(join(tmpdir(), 'sf-chromium-'));
// A fresh profile directory (Playwright passes it as --user-data-dir).
const context = await chromium.launchPersistentContext(profile, {
  executablePath,
  headless: true,
  viewport: { width: 1400, height: 1300 },
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
const summary = {};
try {
  const page = context.pages()[0] || (await context.newPage());
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  // Requests made before the login and the refused cancels log their 401/403 as console
  // errors; those are expected.
  page.on('console', (m) => {
    if (m.type() === 'error' && !/status of 40[13]/.test(m.text())) pageErrors.push(m.text());
  });
  // Any attempt to load the planted <img src=x> would show up as a request for /x.
  const strayRequests = [];
  page.on('request', (r) => { if (/\/x$/.test(r.url())) strayRequests.push(r.url()); });

  await page.goto(url, { waitUntil: 'load' });
  // 0. The coordinator has tokens: the page asks for one, keeps it in the tab, not a cookie.
  await page.locator('#login').waitFor({ state: 'visible', timeout: WAIT });
  check((await page.locator('.job').count()) === 0, 'jobs shown before a token was given');
  await page.fill('#token-input', readToken);
  await page.click('#token-submit');
  const stored = await page.evaluate(() => ({
    session: sessionStorage.getItem('synthforge.token'),
    cookie: document.cookie,
  }));
  check(stored.session === readToken && stored.cookie === '', `token kept as ${JSON.stringify(stored)}`);
  check(await page.locator('#insecure-banner').isHidden(), 'insecure banner shown on a guarded coordinator');
  summary.login = true;
  const card = page.locator(`.job[data-job="${jobId}"]`);
  await card.waitFor({ timeout: WAIT });
  // User-given strings (the job name here) are text too.
  const name = await card.locator('.job-name').textContent();
  check(name.includes('<b>demo</b>') && (await card.locator('.job-name b').count()) === 0, `job name rendered as ${name}`);

  // 1. Progress advances.
  const rowsDone = async () => Number(await card.locator('.rows-done').textContent());
  const first = await rowsDone();
  await page.waitForFunction(
    ([id, n]) => {
      const e = document.querySelector(`.job[data-job="${id}"] .rows-done`);
      return e && Number(e.textContent) > n;
    },
    [jobId, first],
    { timeout: WAIT },
  );
  const second = await rowsDone();
  check(second > first, `rows done went from ${first} to ${second}`);
  const width = await card.locator('.bar-fill').evaluate((e) => parseFloat(e.style.width));
  check(width > 0, `progress bar has width ${width}%`);
  summary.rows_done = [first, second];

  // 2. The chart draws: several points, and the rows/s line put blue pixels on the canvas.
  await page.waitForFunction(() => Number(document.getElementById('chart').dataset.points) >= 3, null, { timeout: WAIT });
  await page.waitForFunction(() => Number(document.querySelector('.rows-per-s')?.textContent) > 0, null, { timeout: WAIT });
  const blue = await page.evaluate(() => {
    const c = document.getElementById('chart');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (d[i + 2] > 180 && d[i] < 90 && d[i + 3] > 0) n++;
    }
    return n;
  });
  check(blue > 50, `chart has ${blue} blue (rows/s line) pixels`);
  summary.chart_blue_pixels = blue;

  // 3. Planted generated text shows as text and never runs.
  await page.waitForFunction(
    (text) => [...document.querySelectorAll('.sample-completion')].some((e) => e.textContent.includes(text)),
    planted,
    { timeout: WAIT },
  );
  await page.waitForTimeout(1500); // give an (unwanted) onerror handler time to fire
  const xss = await page.evaluate(() => ({
    pwned: typeof window.pwned,
    scripts: document.querySelectorAll('#samples script, #jobs script').length,
    imgs: document.querySelectorAll('img').length,
    shown: [...document.querySelectorAll('.sample-completion')].filter((e) => e.textContent.includes('<script>')).length,
  }));
  check(xss.pwned === 'undefined', `window.pwned is ${xss.pwned}`);
  check(xss.scripts === 0 && xss.imgs === 0, `injected elements in the DOM: ${JSON.stringify(xss)}`);
  check(xss.shown > 0, 'the planted text is visible as text');
  check(strayRequests.length === 0, `planted <img> was fetched: ${strayRequests}`);
  summary.planted_samples_shown = xss.shown;

  // Workers and backends panels are filled from heartbeats.
  await page.waitForFunction(() => document.querySelectorAll('#workers tbody tr[data-worker]').length >= 1, null, { timeout: WAIT });
  await page.waitForFunction(() => document.querySelectorAll('#backends tbody tr td').length > 1, null, { timeout: WAIT });
  summary.workers = await page.locator('#workers tbody tr[data-worker]').count();

  // Sampled rows label their prompt and completion.
  const labels = await page.evaluate(() => [...document.querySelectorAll('#samples .sample-label')].map((e) => e.textContent));
  check(labels.includes('prompt') && labels.includes('completion'), `sample labels: ${labels}`);
  summary.sample_labels = [...new Set(labels)];

  // Elapsed time shows and advances on the running job's card.
  const elapsed = async () => (await card.locator('.elapsed').textContent()).trim();
  const e1 = await elapsed();
  check(/^\d+(s|m \d+s)$/.test(e1), `elapsed shows as ${e1}`);
  await page.waitForFunction(([id, before]) => {
    const e = document.querySelector(`.job[data-job="${id}"] .elapsed`);
    return e && e.textContent.trim() !== before;
  }, [jobId, e1], { timeout: WAIT });
  summary.elapsed = [e1, await elapsed()];

  // Finished jobs are collapsed to one line each, a page at a time, below the running job.
  const finishedRows = () => page.locator('#finished-jobs tbody tr.finished-job');
  check((await finishedRows().count()) === 8, `first page shows ${await finishedRows().count()} finished jobs`);
  check((await page.locator('.job').count()) === 1, 'only the running job is a full card');
  const info = async () => (await page.locator('.page-info').textContent()).trim();
  const pages = Math.ceil(finishedJobs / 8);
  check((await info()) === `page 1 of ${pages}`, `pager says ${await info()}`);
  const detailTop = await page.locator('#detail').evaluate((e) => e.getBoundingClientRect().top);
  await page.click('.page-next');
  await page.waitForFunction((p) => document.querySelector('.page-info')?.textContent.trim() === `page 2 of ${p}`, pages, { timeout: WAIT });
  check((await finishedRows().count()) === finishedJobs - 8, `second page shows ${await finishedRows().count()}`);
  await page.click('.page-prev');
  await page.waitForFunction(() => document.querySelector('.page-info')?.textContent.trim().startsWith('page 1 '), null, { timeout: WAIT });
  summary.finished_pages = pages;

  // The finished job with failures: reasons with an example, the funnel, dedup removals.
  await page.click(`tr.finished-job[data-job="${reasonsJobId}"]`);
  await page.waitForFunction((id) => document.getElementById('detail-name')?.textContent.includes(id), reasonsJobId, { timeout: WAIT });
  await page.waitForFunction(() => document.querySelectorAll('#failure-reasons tr.failure-reason').length > 0, null, { timeout: WAIT });
  const reasons = await page.evaluate(() => [...document.querySelectorAll('#failure-reasons tr.failure-reason')]
    .map((tr) => [...tr.children].map((td) => td.textContent)));
  check(reasons.length === 1 && reasons[0][0].startsWith('read: ') && reasons[0][1] === '2', `failure reasons: ${JSON.stringify(reasons)}`);
  check(/ at .*reasons\.jsonl:\d+$/.test(reasons[0][2]), `failure example: ${reasons[0][2]}`);
  summary.failure_reasons = reasons;
  const funnel = await page.evaluate(() => [...document.querySelectorAll('#funnel tbody tr')]
    .map((tr) => ({ stage: tr.dataset.stage, in: tr.querySelector('.funnel-in').textContent, out: tr.querySelector('.funnel-out').textContent, removed: tr.querySelector('.funnel-removed').textContent, failed: tr.querySelector('.funnel-failed').textContent })));
  const stage = (n) => funnel.find((f) => f.stage === n) || {};
  check(funnel.map((f) => f.stage).join(',') === 'read,generate,filter,dedup', `funnel stages: ${JSON.stringify(funnel)}`);
  check(stage('read').in === '32' && stage('read').out === '30' && stage('read').failed.startsWith('read: '), `read step: ${JSON.stringify(stage('read'))}`);
  check(stage('filter').in === '30' && stage('filter').out === '27' && stage('filter').removed === 'filter:length: 3', `filter step: ${JSON.stringify(stage('filter'))}`);
  check(stage('dedup').in === '27' && stage('dedup').out === '25' && stage('dedup').removed === 'dedup_exact: 2', `dedup step: ${JSON.stringify(stage('dedup'))}`);
  summary.funnel = funnel;
  // The detail panel did not move down when the list changed pages or jobs finished.
  const detailTop2 = await page.locator('#detail').evaluate((e) => e.getBoundingClientRect().top);
  check(Math.abs(detailTop2 - detailTop) < 1, `detail panel moved from ${detailTop} to ${detailTop2}`);
  await page.screenshot({ path: screenshot.replace(/\.png$/, '-reasons.png'), fullPage: true });

  // Back to the running job.
  await card.locator('.job-head').click();
  await page.waitForFunction((id) => document.getElementById('detail-name')?.textContent.includes(id), jobId, { timeout: WAIT });

  // Workers: the two live ones; the one killed earlier is gone.
  const workerIds = await page.evaluate(() => [...document.querySelectorAll('#workers tbody tr[data-worker]')].map((r) => r.dataset.worker));
  check(!workerIds.includes('w3-dies') && workerIds.length === 2, `workers listed: ${workerIds}`);

  // Let the chart gather ~15 s of history so the screenshot shows a real curve.
  await page.waitForFunction(() => Number(document.getElementById('chart').dataset.points) >= 15, null, { timeout: WAIT });
  summary.chart_points = Number(await page.locator('#chart').getAttribute('data-points'));
  await page.screenshot({ path: screenshot, fullPage: true });

  // 4. Cancel with the read token is refused, and so is a wrong admin token; the job keeps
  // running. (The page asks for an admin token once; the second prompt is dismissed.)
  page.once('dialog', (d) => d.accept('not-the-token'));
  await card.locator('button.cancel').click();
  await card.locator('.msg').filter({ hasText: 'refused' }).waitFor({ timeout: WAIT });
  const stillRunning = await page.evaluate(async (id) => {
    const headers = { Authorization: `Bearer ${sessionStorage.getItem('synthforge.token')}` };
    return (await (await fetch(`/api/jobs/${id}`, { headers })).json()).record.state;
  }, jobId);
  check(stillRunning === 'running', `after a refused cancel the job is ${stillRunning}`);

  // 5. Cancel with the admin token (asked for when the read token is refused) works.
  page.once('dialog', (d) => d.accept(token));
  await card.locator('button.cancel').click();
  const ended = page.locator(`tr.finished-job[data-job="${jobId}"]`);
  await ended.locator('.state').filter({ hasText: 'cancelled' }).waitFor({ timeout: WAIT });
  summary.cancelled = true;

  // 6. After the end the job's chart and backend table stay (it is still the selected job).
  await page.waitForFunction((id) => document.getElementById('detail-name')?.textContent.includes(id), jobId, { timeout: WAIT });
  await page.waitForTimeout(3000); // several polls after the end
  const after = await page.evaluate(() => {
    const c = document.getElementById('chart');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let blue = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i + 2] > 180 && d[i] < 90 && d[i + 3] > 0) blue++;
    return {
      points: Number(c.dataset.points),
      blue,
      backends: document.querySelectorAll('#backends tbody tr td').length,
      elapsed: document.getElementById('detail-elapsed').textContent,
    };
  });
  check(after.points >= 15 && after.blue > 50, `chart after the end: ${JSON.stringify(after)}`);
  check(after.backends > 1, `backend table after the end: ${JSON.stringify(after)}`);
  check(after.elapsed.startsWith('cancelled · ran '), `elapsed after the end: ${after.elapsed}`);
  summary.after_end = after;
  check(pageErrors.length === 0, `page errors: ${pageErrors.join(' | ')}`);
  await page.screenshot({ path: screenshot.replace(/\.png$/, '-cancelled.png'), fullPage: true });
  console.log(JSON.stringify({ ok: true, ...summary }));
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
