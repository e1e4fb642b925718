// The benchmark report in a real browser (label "browser"): runs `qrt bench` with every section
// (half rate, scaling, client overhead, memory budget) and `qrt bench compare`, opens chart.html
// and compare.html in headless Chromium, and checks that
//   - the page loads and prints nothing to the console (the page has no scripts, so any console
//     line is a problem: its Content-Security-Policy reports a blocked fetch there);
//   - nothing is fetched: no external reference in the file, and Chromium's network log shows
//     no request made for the page (Chromium's own update and account services are ignored;
//     they cannot leave the machine either: every host resolves to nothing and the proxy is a
//     closed loopback port);
//   - every chart has its data drawn: the points and bars counted in the rendered DOM match what
//     report.json says each chart should show, with finite coordinates inside the chart;
//   - it reads without JavaScript: the file has no script (the DOM Chromium renders is the file's);
// and saves screenshots next to the reports (chart.png, compare.png). (Chromium's --dump-dom and
// --screenshot need scripting on inside the browser, so they cannot run with it disabled.)
//
// Usage: node chart_browser_test.mjs --qrt PATH [--chromium PATH] --work DIR
// Only Node's standard library; no npm packages.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => {
    if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]]);
    return acc;
  }, []),
);
const qrt = args.qrt;
// The targets the main job checks, shipped beside the benchmark's sources.
const targets = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bench/targets.yaml');
const chromium = args.chromium || 'chromium';
const work = path.resolve(args.work || fs.mkdtempSync(path.join(os.tmpdir(), 'qrt-chart-')));
let failures = 0;
const started = Date.now();

function fail(message) {
  failures += 1;
  console.error(`FAIL: ${message}`);
}
function check(condition, message) {
  if (!condition) fail(message);
  return condition;
}
function run(cmd, argv, what) {
  const r = spawnSync(cmd, argv, { encoding: 'utf8', maxBuffer: 64 << 20, timeout: 300_000 });
  if (r.error) throw new Error(`${what}: ${r.error.message}`);
  return r;
}

if (!qrt) {
  console.error('usage: node chart_browser_test.mjs --qrt PATH [--chromium PATH] --work DIR');
  process.exit(2);
}
if (run('sh', ['-c', `command -v ${chromium}`], 'chromium lookup').status !== 0) {
  console.error(`FAIL: ${chromium} not found (scripts/install-deps.sh installs Debian's chromium)`);
  process.exit(1);
}

// --- the reports ---------------------------------------------------------------------------
fs.rmSync(work, { recursive: true, force: true });
fs.mkdirSync(work, { recursive: true });
const reportDir = path.join(work, 'report');
const bench = run(
  qrt,
  // The main job's run (scripts/bench.sh), with the scaling run added at its smallest.
  ['bench', '--provider', 'memory', '--messages', '200000', '--size', '256', '--batch', '10',
   '--half-rate', '--overhead', '100', '--memory-budget', '67108864',
   '--targets', targets, '--environment', 'production', '--scaling', '--scaling-max', '2', '--report-dir', reportDir],
  'qrt bench',
);
if (!check(bench.status === 0, `qrt bench exited ${bench.status}: ${bench.stderr}`)) process.exit(1);
const report = JSON.parse(fs.readFileSync(path.join(reportDir, 'report.json'), 'utf8'));
const compareDir = path.join(work, 'compare');
const compare = run(
  qrt, ['bench', 'compare', reportDir, path.join(reportDir, 'report.json'), '--out', compareDir],
  'qrt bench compare',
);
check(compare.status === 0, `qrt bench compare exited ${compare.status}: ${compare.stderr}`);

// --- the browser ---------------------------------------------------------------------------
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'qrt-chromium-'));
const isolated = [
  '--headless=new', '--no-sandbox', '--disable-gpu', `--user-data-dir=${profile}`,
  '--no-first-run', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--disable-extensions', '--disable-default-apps', '--no-pings',
  '--disable-domain-reliability', '--disable-client-side-phishing-detection',
  '--disable-features=Translate,OptimizationHints,MediaRouter,SpellcheckService',
  '--host-resolver-rules=MAP * ~NOTFOUND', '--proxy-server=127.0.0.1:9',
];
// Chromium's own services: requested by the browser whatever the page, never by our page.
const browserServices = /^https?:\/\/([a-z0-9-]+\.)*(google\.com|googleapis\.com|gvt1\.com)\//;

function openPage(file, netlog) {
  const url = `file://${file}`;
  const r = run(chromium, [...isolated, '--enable-logging=stderr', '--v=0',
                           `--log-net-log=${netlog}`, '--dump-dom', url], `chromium ${file}`);
  check(r.status === 0, `chromium exited ${r.status} on ${file}`);
  const consoleLines = r.stderr.split('\n').filter((l) => l.includes(':CONSOLE'));
  for (const l of consoleLines) fail(`console output on ${path.basename(file)}: ${l}`);
  const urls = new Set();
  if (check(fs.existsSync(netlog), `no network log for ${file}`)) {
    for (const m of fs.readFileSync(netlog, 'utf8').matchAll(/"url":"([^"]*)"/g)) urls.add(m[1]);
  }
  for (const u of urls) {
    if (!u.startsWith('file://') && !u.startsWith('data:') && !browserServices.test(u)) {
      fail(`${path.basename(file)} made the browser fetch ${u}`);
    }
  }
  return r.stdout;
}

function screenshot(file, png) {
  const r = run(chromium, [...isolated, '--window-size=1000,4200', '--hide-scrollbars',
                           `--screenshot=${png}`, `file://${file}`], 'chromium screenshot');
  check(r.status === 0 && fs.existsSync(png) && fs.statSync(png).size > 20_000,
        `no screenshot at ${png}: ${r.stderr.slice(-400)}`);
}

function staticChecks(file) {
  const html = fs.readFileSync(file, 'utf8');
  check(!/<script/i.test(html), `${file} has a script: it must read without JavaScript`);
  for (const m of html.matchAll(/\b(src|href)\s*=|url\(|@import|<link\b/gi)) {
    fail(`${file} refers to something outside itself: ${html.slice(m.index, m.index + 60)}`);
  }
}

// --- what the DOM shows ----------------------------------------------------------------------
function attributes(tag) {
  return Object.fromEntries([...tag.matchAll(/([\w:-]+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
}

// chart name -> { drawn: points + bars, problems: [...] }
function charts(dom) {
  const out = {};
  const starts = [...dom.matchAll(/<figure class="chart"[^>]*data-chart="([^"]+)"[^>]*>/g)];
  starts.forEach((s, i) => {
    const part = dom.slice(s.index, i + 1 < starts.length ? starts[i + 1].index : undefined);
    const svg = attributes(part.match(/<svg\b[^>]*>/)?.[0] || '');
    const [, , w, h] = (svg.viewBox || '0 0 0 0').split(' ').map(Number);
    const inside = (x, y) => Number.isFinite(x) && Number.isFinite(y) && x >= 0 && x <= w &&
                             y >= 0 && y <= h;
    const chart = { drawn: 0, problems: [] };
    for (const m of part.matchAll(/<polyline\b[^>]*>/g)) {
      const a = attributes(m[0]);
      if (a.class !== 'series') continue;
      const pts = a.points.trim().split(/\s+/).filter(Boolean).map((p) => p.split(',').map(Number));
      if (pts.length !== Number(a['data-count'])) {
        chart.problems.push(`${a['data-series']}: ${pts.length} points, data-count ${a['data-count']}`);
      }
      const outside = pts.filter(([x, y]) => !inside(x, y));
      if (outside.length) chart.problems.push(`${a['data-series']}: ${outside.length} points outside`);
      chart.drawn += pts.length;
    }
    for (const m of part.matchAll(/<rect\b[^>]*>/g)) {
      const a = attributes(m[0]);
      if (a.class !== 'datum') continue;
      const [x, y, bw, bh] = ['x', 'y', 'width', 'height'].map((k) => Number(a[k]));
      if (!inside(x, y) || !inside(x + bw, y + bh) || !Number.isFinite(Number(a['data-value']))) {
        chart.problems.push(`bar ${a['data-series']} at ${x},${y} ${bw}x${bh}`);
      }
      chart.drawn += 1;
    }
    out[s[1]] = chart;
  });
  return out;
}

// What each chart must draw, from report.json alone.
function expectedFromReport(r) {
  const withLatency = r.series.filter((s) => s.e2e_count > 0 || s.e2e_mean_us > 0).length;
  const e = {
    throughput: 3 + (r.baseline ? 1 : 0),
    percentiles:
      5 *
      (1 +
        (r.half_rate ? 1 : 0) +
        (r.baseline ? 1 : 0) +
        (r.half_rate && r.half_rate.baseline_e2e_latency_us ? 1 : 0)),
    operations: 9,
    'throughput-over-time': 4 * r.series.length,
    'latency-over-time': 2 * withLatency,
  };
  if (r.scaling) e.scaling = 2 * r.scaling.length;
  if (r.overhead) e.overhead = 4;
  if (r.memory_budget) e.memory = 2;
  return e;
}

// --- chart.html ------------------------------------------------------------------------------
const chartHtml = path.join(reportDir, 'chart.html');
staticChecks(chartHtml);
const dom = openPage(chartHtml, path.join(work, 'chart.netlog.json'));
check(dom.includes('</html>') && dom.includes('<title>qrt bench'), 'chart.html did not load');
check(dom.includes('data-summary'), 'chart.html has no summary box');
check(report.series.length >= 50,
      `only ${report.series.length} samples over ${report.wall_seconds} s (want at least 50)`);
const expected = expectedFromReport(report);
const drawn = charts(dom);
for (const [name, want] of Object.entries(expected)) {
  const got = drawn[name];
  if (!check(got, `chart ${name} is missing`)) continue;
  check(got.drawn === want, `chart ${name}: ${got.drawn} points and bars drawn, report has ${want}`);
  for (const p of got.problems) fail(`chart ${name}: ${p}`);
  if (want > 0) check(got.drawn > 0, `chart ${name} is empty`);
}
for (const name of Object.keys(drawn)) check(name in expected, `unexpected chart ${name}`);
screenshot(chartHtml, path.join(reportDir, 'chart.png'));

// --- compare.html ----------------------------------------------------------------------------
const compareHtml = path.join(compareDir, 'compare.html');
staticChecks(compareHtml);
const cdom = openPage(compareHtml, path.join(work, 'compare.netlog.json'));
const figures = compare.stdout.split('\n').filter((l) => /^\S.*\s[-+]\d+\.\d %/.test(l)).length;
const bars = charts(cdom).compare;
if (check(bars, 'compare.html has no chart')) {
  check(figures >= 10, `compare printed only ${figures} figures:\n${compare.stdout}`);
  check(bars.drawn === figures, `compare.html draws ${bars.drawn} bars for ${figures} figures`);
  for (const p of bars.problems) fail(`compare chart: ${p}`);
}
screenshot(compareHtml, path.join(compareDir, 'compare.png'));

fs.rmSync(profile, { recursive: true, force: true });
const seconds = ((Date.now() - started) / 1000).toFixed(1);
if (failures) {
  console.error(`chart_browser_test: ${failures} failure(s) in ${seconds} s; pages in ${work}`);
  process.exit(1);
}
console.log(`chart_browser_test: ok in ${seconds} s (${Object.keys(drawn).length} charts, ` +
            `${report.series.length} samples); screenshots ${reportDir}/chart.png, ` +
            `${compareDir}/compare.png`);
