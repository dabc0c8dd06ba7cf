// The live page's tables hold their shape (issue 14): 11 agents with long ids, teams, meta and error
// summaries, and log records with long messages, shown in headless Chromium at 1920x1080, 1400x900 and
// a 390 px phone. At each size, for the agents table and the log table: every visible column is at
// least 40 px wide, no cell is taller than 4 lines, and neither the panels nor the page scroll
// sideways; long values are cut with an ellipsis and carry the full text in their title; a click on a
// cut cell shows it whole. Screenshots go to test-artifacts/page-layout-<w>x<h>.png for a person.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type NatsConnection } from 'nats';
import { chromium, type Browser, type Page } from 'playwright-core';
import { LogEntry, MessageType, MsgEnvelope } from '../../src/gen/mycelis/swarm/v1/swarm.js';
import { ROOT } from '../helpers/service.js';
import { SHARED_NATS_URL } from '../helpers/nats.js';
import { waitFor } from '../helpers/wait.js';
import { startStack, type Stack } from './operator-harness.js';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = join(ROOT, 'test-artifacts');
const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (apt-get install chromium; .ci/run does this)`;
const SIZES: [number, number][] = [
  [1920, 1080],
  [1400, 900],
  [390, 844],
];
const AGENTS = 11;

const now = (): { seconds: string; nanos: number } => {
  const ms = Date.now();
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
};

/** Realistic but long: ids and teams of various lengths, meta with many keys, multi-sentence errors with an unbroken URL. */
async function publishSwarm(nc: NatsConnection, prefix: string): Promise<number> {
  let sent = 0;
  for (let i = 0; i < AGENTS; i++) {
    const agent = i % 3 === 0 ? `research-assistant-quarterly-financial-reports-${i}` : `worker-${i}`;
    const team = i % 2 === 0 ? 'operations-europe-west-research-division' : 'ops';
    nc.publish(
      `${prefix}.prod.agent.${agent}.heartbeat`,
      MsgEnvelope.encode({
        id: `hb-${i}`,
        timestamp: now(),
        sourceAgentId: agent,
        type: MessageType.MESSAGE_TYPE_EVENT,
        payload: {
          $case: 'event',
          value: {
            eventType: 'heartbeat',
            streamId: '',
            data: { status: 'BUSY', battery: 87 - i, location: `lab-3/rack-12/slot-${i}`, model: 'gpt-4o-2024-08-06', version: '1.4.2', notes: 'nightly batch of reconciliation jobs '.repeat(3) },
          },
        },
        traceId: '',
        spanId: '',
        teamId: team,
      }).finish(),
    );
    const error =
      `ToolError: web_search failed after ${i + 1} retries: upstream returned 503 Service Unavailable from ` +
      `https://api.search.example.com/v1/query?q=quarterly+revenue+by+region&limit=50&cursor=${'x'.repeat(40 + i * 10)} ` +
      'while preparing the weekly report; the agent gave up and escalated to its team lead. '.repeat(1 + (i % 3));
    nc.publish(
      `${prefix}.log.${agent}`,
      LogEntry.encode({
        timestamp: now(),
        traceId: `trace-${'0123456789abcdef'.repeat(2)}`,
        agentId: agent,
        teamId: team,
        sourceUri: '',
        intent: i % 2 === 0 ? 'report.generate.quarterly-financials' : 'tool.failed',
        status: 'FAILURE',
        errorMessage: error,
        level: 'ERROR',
        source: agent,
        message: i % 4 === 0 ? `${error} ${'Context: '.repeat(5)}${'y'.repeat(300)}` : error,
      }).finish(),
    );
    sent += 2;
  }
  await nc.flush();
  return sent;
}

interface Measure {
  tables: { name: string; columns: { label: string; width: number }[]; maxLines: number; tallest: string; cut: number; cutWithoutTitle: number }[];
  panels: { id: string; scrollWidth: number; clientWidth: number }[];
  page: { scrollWidth: number; innerWidth: number };
}

// Runs in the page (passed as a string: the test compiles without the DOM library).
const MEASURE = `(() => {
  const visible = (e) => e.getClientRects().length > 0;
  const tables = [['agents', '#registry table'], ['log', '#logs table:has(#log-rows)']].map(([name, sel]) => {
    const table = document.querySelector(sel);
    const columns = [...table.querySelectorAll('thead th')].filter(visible).map((th) => ({ label: th.textContent.trim(), width: Math.round(th.getBoundingClientRect().width * 10) / 10 }));
    let maxLines = 0, tallest = '', cut = 0, cutWithoutTitle = 0;
    for (const td of table.querySelectorAll('tbody td')) {
      if (!visible(td)) continue;
      const cs = getComputedStyle(td);
      const lineHeight = parseFloat(getComputedStyle(td.querySelector('.cut') ?? td).lineHeight);
      const lines = (td.clientHeight - parseFloat(cs.paddingTop) - parseFloat(cs.paddingBottom)) / lineHeight;
      if (lines > maxLines) { maxLines = lines; tallest = td.textContent.slice(0, 80); }
      for (const c of td.querySelectorAll('.cut')) {
        if (visible(c) && c.scrollWidth > c.clientWidth + 1) { cut++; if (!td.title.includes(c.textContent)) cutWithoutTitle++; }
      }
    }
    return { name, columns, maxLines: Math.round(maxLines * 100) / 100, tallest, cut, cutWithoutTitle };
  });
  const panels = [...document.querySelectorAll('.panel')].map((p) => ({ id: p.id, scrollWidth: p.scrollWidth, clientWidth: p.clientWidth }));
  return { tables, panels, page: { scrollWidth: document.documentElement.scrollWidth, innerWidth } };
})()`;

describe('live page layout at desktop and phone sizes', { skip }, () => {
  let stack: Stack;
  let browser: Browser;
  let page: Page;
  let rows = 0;

  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    stack = await startStack('page_layout');
    const nc = await connect({ servers: SHARED_NATS_URL });
    try {
      rows = await publishSwarm(nc, stack.names.prefix);
    } finally {
      await nc.close();
    }
    await stack.waitRows(rows);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'],
    });
    page = await browser.newPage({ viewport: { width: SIZES[0]![0], height: SIZES[0]![1] } });
    page.on('pageerror', (err) => process.stderr.write(`page error: ${err.message}\n`));
    await page.goto(`${stack.httpBase}/`);
    await waitFor('11 agents with their errors and every record on the page', async () => {
      const [agents, errors, records] = (await page.evaluate(
        `[document.querySelectorAll('#registry-rows tr').length, [...document.querySelectorAll('#registry-rows td.err')].filter((td) => td.textContent).length, document.querySelectorAll('#log-rows tr').length]`,
      )) as number[];
      return agents === AGENTS && errors === AGENTS && records === rows;
    }, { timeoutMs: 60_000, intervalMs: 200 });
  });
  after(async () => {
    await browser?.close().catch(() => undefined);
    await stack?.close();
  });

  for (const [width, height] of SIZES) {
    it(`${width}x${height}: columns at least 40 px, cells at most 4 lines, no sideways scrolling`, async (t) => {
      await page.setViewportSize({ width, height });
      await page.evaluate('new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))');
      const m = (await page.evaluate(MEASURE)) as Measure;
      await page.screenshot({ path: join(ARTIFACTS, `page-layout-${width}x${height}.png`) });
      for (const table of m.tables) {
        t.diagnostic(`${width}x${height} ${table.name}: ${table.columns.map((c) => `${c.label} ${c.width}`).join(', ')}; tallest cell ${table.maxLines} lines; ${table.cut} values cut`);
        assert.ok(table.columns.length >= 4, `${table.name}: at least 4 visible columns (${JSON.stringify(table.columns)})`);
        for (const c of table.columns) assert.ok(c.width >= 40, `${width}x${height} ${table.name}: column "${c.label}" is ${c.width} px wide (under 40)`);
        assert.ok(table.maxLines <= 4, `${width}x${height} ${table.name}: a cell is ${table.maxLines} lines tall: ${table.tallest}`);
        assert.ok(table.cut > 0, `${table.name}: the long values are cut`);
        assert.equal(table.cutWithoutTitle, 0, `${table.name}: every cut value has its full text in the title`);
      }
      for (const p of m.panels) assert.ok(p.scrollWidth <= p.clientWidth + 1, `${width}x${height}: panel #${p.id} scrolls sideways (${p.scrollWidth} > ${p.clientWidth})`);
      assert.ok(m.page.scrollWidth <= m.page.innerWidth, `${width}x${height}: the page scrolls sideways (${m.page.scrollWidth} > ${m.page.innerWidth})`);
    });
  }

  it('a click on a cut value shows it whole, a second click cuts it again', async () => {
    await page.setViewportSize({ width: 1400, height: 900 });
    const cell = page.locator('#registry-rows td.err').first();
    const geometry = async (): Promise<{ open: boolean; height: number; hidden: number }> =>
      (await page.evaluate(`(() => {
        const td = document.querySelector('#registry-rows td.err');
        const cut = td.querySelector('.cut');
        return { open: td.classList.contains('open'), height: td.clientHeight, hidden: cut.scrollWidth - cut.clientWidth };
      })()`)) as { open: boolean; height: number; hidden: number };
    const closed = await geometry();
    assert.ok(!closed.open && closed.hidden > 0, `the error summary is cut (${JSON.stringify(closed)})`);
    await cell.click();
    const open = await geometry();
    assert.ok(open.open && open.height > 2 * closed.height && open.hidden <= 1, `open shows the whole summary (${JSON.stringify(open)})`);
    assert.equal(await page.inputValue('#filter-agent'), '', 'expanding a value does not filter the log');
    await page.screenshot({ path: join(ARTIFACTS, 'page-layout-1400x900-open.png') });
    await cell.click();
    assert.deepEqual(await geometry(), closed);
  });
});
