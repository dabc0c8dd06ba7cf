// The live page served at / on the HTTP port: the agent registry (WatchRegistry: a snapshot, then each
// change as the service sees it; statuses and "last seen" exactly as the service computes them, so
// agents grey out as OFFLINE when the service says so), the live log (StreamLogs over Connect-Web),
// a trace view (GetTrace: a record's trace id opens the workflow as a timeline, one lane per agent),
// and a search box (SearchLogs over the whole log with the log's filters; hits with the matched words
// marked, newest first or by relevance, More for the next page).
// Invariants of the log view: records are shown in cursor order, none twice and none skipped across
// reconnects and pauses: every (re)connect after the first asks for `after_cursor` = the last cursor
// received (responses carry one even when empty), and a record whose seq is not above the last shown
// one is dropped. The DOM holds at most `maxRows` rows (oldest removed first).
import { Code, ConnectError } from '@connectrpc/connect';
import type { MessageInitShape } from '@bufbuild/protobuf';
import {
  RegistryChange_Kind,
  SearchLogsRequest_Order,
  type Agent,
  type LogFilterSchema,
  type LogRecord,
  type SearchHit,
  type StreamLogsRequestSchema,
} from '../gen/mycelis/memory/v1/memory_pb.js';
import { createMemoryClient, getToken, setToken } from './client.js';
import { ago, clock, iso, metaSummary, ms, splitList, STATUS_NAME } from './format.js';
import { TraceView } from './trace.js';
import './style.css';

const params = new URLSearchParams(location.search);
const numParam = (name: string, dflt: number, min: number, max: number): number => {
  const v = Number(params.get(name));
  return params.has(name) && Number.isFinite(v) ? Math.min(max, Math.max(min, Math.floor(v))) : dflt;
};
const MAX_ROWS = numParam('rows', 500, 10, 5000);
const INITIAL_TAIL = numParam('tail', 100, 0, 10_000);
// How often the registry's "last seen" ages are redrawn (changes themselves are drawn as they come).
const AGES_EVERY_MS = numParam('refresh', 1000, 250, 60_000);
// The service sends a keepalive at least every 15 s; silence well past that means a dead connection.
const STREAM_SILENCE_MS = numParam('silence', 45_000, 1000, 600_000);
const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 5000;

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} missing from the page`);
  return el as T;
};

const client = createMemoryClient();
const conn = $<HTMLSpanElement>('conn');
const tokenForm = $<HTMLFormElement>('token-form');
const tokenInput = $<HTMLInputElement>('token-input');
const tokenMsg = $<HTMLSpanElement>('token-msg');
const logRows = $<HTMLTableSectionElement>('log-rows');
const logSummary = $<HTMLSpanElement>('log-summary');
const logError = $<HTMLParagraphElement>('log-error');
const registryRows = $<HTMLTableSectionElement>('registry-rows');
const registrySummary = $<HTMLSpanElement>('registry-summary');
const registryError = $<HTMLParagraphElement>('registry-error');
const teamInput = $<HTMLInputElement>('filter-team');
const agentInput = $<HTMLInputElement>('filter-agent');
const levelBoxes = [...$<HTMLFieldSetElement>('filter-levels').querySelectorAll<HTMLInputElement>('input[type=checkbox]')];
const pauseButton = $<HTMLButtonElement>('pause');

function el<K extends keyof HTMLElementTagNameMap>(tag: K, text?: string, cls?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

/**
 * A cell whose value stays on one line, cut with an ellipsis when the column is narrower: the full
 * text is its title (hover), and a click shows it wrapped (toggleOpen). `capped` bounds the column to
 * about a name's width (.cap); uncapped cells fill the room their column is given.
 */
function cutCell(text: string, cls: string, capped: boolean, title = text): HTMLTableCellElement {
  const td = el('td', undefined, `cut-cell ${cls}`.trim());
  td.append(el('span', text, capped ? 'cut cap' : 'cut'));
  td.title = title;
  return td;
}

function setCut(td: HTMLTableCellElement | undefined, text: string, title = text): void {
  const span = td?.querySelector('.cut');
  if (!td || !span) return;
  if (span.textContent !== text) span.textContent = text;
  if (td.title !== title) td.title = title;
}

/** Click on a cut cell: show its whole value wrapped, or cut it again. False when the click was elsewhere. */
function toggleOpen(ev: MouseEvent): boolean {
  if ((ev.target as HTMLElement).closest('a')) return false; // a link (a trace) does its own thing
  const td = (ev.target as HTMLElement).closest<HTMLTableCellElement>('td.cut-cell');
  const cut = td?.querySelector<HTMLElement>('.cut');
  if (!td || !cut) return false;
  if (!td.classList.contains('open') && cut.scrollWidth <= cut.clientWidth) return false; // nothing hidden
  td.classList.toggle('open');
  return true;
}

function setConn(state: 'connecting' | 'live' | 'reconnecting' | 'paused' | 'unauthenticated' | 'failed', text?: string): void {
  conn.dataset['state'] = state;
  conn.textContent = text ?? state;
}

// ---- token --------------------------------------------------------------------------------------

function askForToken(message: string): void {
  tokenForm.hidden = false;
  tokenMsg.textContent = message;
  tokenInput.focus();
}

tokenForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  setToken(tokenInput.value.trim() || null);
  tokenInput.value = '';
  tokenMsg.textContent = '';
  tokenForm.hidden = true;
  logs.restart(false);
  registry.restart();
});
$<HTMLButtonElement>('token-button').addEventListener('click', () => {
  if (tokenForm.hidden) askForToken(getToken() ? 'a token is set for this tab; submit empty to forget it' : '');
  else tokenForm.hidden = true;
});

// ---- live log -----------------------------------------------------------------------------------

function currentFilter(): MessageInitShape<typeof LogFilterSchema> {
  return {
    teamIds: splitList(teamInput.value),
    agentIds: splitList(agentInput.value),
    levels: levelBoxes.filter((b) => b.checked).map((b) => b.value),
  };
}

function recordRow(r: LogRecord): HTMLTableRowElement {
  const e = r.entry;
  const level = (e?.level || 'INFO').toUpperCase();
  const agent = e?.source || e?.agentId || 'unknown';
  const tr = el('tr', undefined, `lvl-${level}`);
  tr.dataset['seq'] = String(r.seq);
  tr.dataset['id'] = r.id;
  tr.dataset['agent'] = agent;
  tr.dataset['team'] = e?.teamId ?? '';
  tr.dataset['level'] = level;
  const time = el('td', clock(e?.timestamp));
  time.title = `${iso(e?.timestamp)} · seq ${r.seq} · ${r.subject}`;
  const team = e?.teamId ?? '';
  const intent = e?.intent ?? '';
  const message = e?.message ?? '';
  // The message's title also carries what phones do not show as columns (team, intent) and the trace.
  const context = [intent && `intent ${intent}`, team && `team ${team}`, e?.traceId && `trace ${e.traceId}`].filter(Boolean).join(' · ');
  const messageTd = cutCell(message, 'fill', false, context ? `${message}\n\n${context}` : message);
  if (e?.traceId) {
    // The record's trace opens as a timeline (#trace=<id>: linkable, Back closes it).
    const link = el('a', '↗', 'trace-link');
    link.href = `#trace=${encodeURIComponent(e.traceId)}`;
    link.title = `open trace ${e.traceId} as a timeline`;
    messageTd.prepend(link);
  }
  tr.append(time, el('td', level, 'lvl'), cutCell(agent, '', true), cutCell(team, 'wide-only', true), cutCell(intent, 'wide-only', true), messageTd);
  return tr;
}

class LogView {
  private cursor: string | undefined;
  private lastSeq = -1n;
  private generation = 0;
  private controller: AbortController | undefined;
  private paused = false;
  private received = 0;

  /** (Re)starts the stream. fresh: a new filter, so clear the rows and begin with the last INITIAL_TAIL records. */
  restart(fresh: boolean): void {
    this.generation++;
    this.controller?.abort();
    if (fresh) {
      this.cursor = undefined;
      this.lastSeq = -1n;
      this.received = 0;
      logRows.replaceChildren();
    }
    if (!this.paused) void this.run(this.generation, currentFilter());
    this.summary();
  }

  setPaused(paused: boolean): void {
    this.paused = paused;
    pauseButton.setAttribute('aria-pressed', String(paused));
    pauseButton.textContent = paused ? 'Resume' : 'Pause';
    if (paused) {
      // Stop reading; the cursor stays, so Resume continues exactly where this stopped.
      this.generation++;
      this.controller?.abort();
      setConn('paused', 'paused');
    } else {
      this.restart(false);
    }
  }

  clear(): void {
    logRows.replaceChildren();
    this.summary();
  }

  private summary(): void {
    logSummary.textContent = `${logRows.rows.length} shown (max ${MAX_ROWS}) · ${this.received} received`;
  }

  private show(records: LogRecord[]): void {
    const frag = document.createDocumentFragment();
    // Newest on top: insert the batch in reverse above the existing rows.
    for (let i = records.length - 1; i >= 0; i--) frag.append(recordRow(records[i]!));
    logRows.prepend(frag);
    while (logRows.rows.length > MAX_ROWS) logRows.lastElementChild?.remove();
  }

  private async run(gen: number, filter: MessageInitShape<typeof LogFilterSchema>): Promise<void> {
    let attempt = 0;
    while (gen === this.generation) {
      const ac = new AbortController();
      this.controller = ac;
      let watchdog = setTimeout(() => ac.abort(), STREAM_SILENCE_MS);
      const req: MessageInitShape<typeof StreamLogsRequestSchema> = this.cursor ? { filter, afterCursor: this.cursor } : { filter, tail: INITIAL_TAIL };
      setConn(attempt === 0 ? 'connecting' : 'reconnecting', attempt === 0 ? 'connecting…' : `reconnecting (attempt ${attempt})…`);
      try {
        for await (const res of client.streamLogs(req, { signal: ac.signal })) {
          if (gen !== this.generation) return;
          clearTimeout(watchdog);
          watchdog = setTimeout(() => ac.abort(), STREAM_SILENCE_MS);
          if (attempt > 0 || conn.dataset['state'] !== 'live') setConn('live', 'live');
          attempt = 0;
          logError.hidden = true;
          const fresh = res.records.filter((r) => r.seq > this.lastSeq);
          if (fresh.length > 0) {
            this.lastSeq = fresh[fresh.length - 1]!.seq;
            this.received += fresh.length;
            this.show(fresh);
          }
          if (res.cursor) this.cursor = res.cursor;
          this.summary();
        }
        // A normal end means the service is shutting down (it sent our cursor): reconnect.
      } catch (err) {
        if (gen !== this.generation) return;
        const ce = ConnectError.from(err);
        if (ce.code === Code.Unauthenticated) {
          setConn('unauthenticated', 'token needed');
          askForToken(getToken() ? 'the service refused this token' : 'this service requires an API token');
          return;
        }
        if (ce.code === Code.InvalidArgument || ce.code === Code.OutOfRange) {
          // A filter the service rejects (or a cursor it no longer knows): say so and stop.
          setConn('failed', 'stopped');
          logError.textContent = `the service rejected the request: ${ce.rawMessage}`;
          logError.hidden = false;
          return;
        }
        logError.textContent = `stream interrupted (${ce.rawMessage || Code[ce.code]}); resuming from the last cursor`;
        logError.hidden = false;
      } finally {
        clearTimeout(watchdog);
      }
      if (gen !== this.generation) return;
      attempt++;
      setConn('reconnecting', `reconnecting (attempt ${attempt})…`);
      const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(attempt - 1, 10)) * (0.5 + Math.random() / 2);
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

const logs = new LogView();

let filterTimer: ReturnType<typeof setTimeout> | undefined;
const onFilterChange = (): void => {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => logs.restart(true), 300);
};
teamInput.addEventListener('input', onFilterChange);
agentInput.addEventListener('input', onFilterChange);
for (const b of levelBoxes) b.addEventListener('change', onFilterChange);
$<HTMLFormElement>('filters').addEventListener('submit', (ev) => ev.preventDefault());
pauseButton.addEventListener('click', () => logs.setPaused(pauseButton.getAttribute('aria-pressed') !== 'true'));
$<HTMLButtonElement>('clear').addEventListener('click', () => logs.clear());

// ---- search -------------------------------------------------------------------------------------

const searchInput = $<HTMLInputElement>('search-input');
const searchRelevance = $<HTMLInputElement>('search-relevance');
const searchResults = $<HTMLDivElement>('search-results');
const searchRows = $<HTMLTableSectionElement>('search-rows');
const searchSummary = $<HTMLSpanElement>('search-summary');
const searchError = $<HTMLParagraphElement>('search-error');
const searchMore = $<HTMLButtonElement>('search-more');

/** The snippet as DOM: text, with each «matched word» in a <mark> (never parsed as HTML). */
function snippetNodes(snippet: string): Node[] {
  const out: Node[] = [];
  for (const [i, part] of snippet.split(/[«»]/).entries()) {
    if (part === '') continue;
    out.push(i % 2 === 1 ? el('mark', part) : document.createTextNode(part));
  }
  return out;
}

function hitRow(h: SearchHit): HTMLTableRowElement {
  const r = h.record;
  const e = r?.entry;
  const level = (e?.level || 'INFO').toUpperCase();
  const agent = e?.source || e?.agentId || 'unknown';
  const tr = el('tr', undefined, `lvl-${level}`);
  tr.dataset['id'] = r?.id ?? '';
  tr.dataset['seq'] = String(r?.seq ?? '');
  const time = el('td', clock(e?.timestamp));
  time.title = `${iso(e?.timestamp)} · seq ${r?.seq ?? ''} · rank ${h.rank.toFixed(4)}`;
  const match = el('td', undefined, 'cut-cell fill');
  const span = el('span', undefined, 'cut');
  span.append(...snippetNodes(h.snippet));
  match.append(span);
  match.title = `${e?.message ?? ''}${e?.traceId ? `\n\ntrace ${e.traceId}` : ''}`;
  if (e?.traceId) {
    const link = el('a', '↗', 'trace-link');
    link.href = `#trace=${encodeURIComponent(e.traceId)}`;
    link.title = `open trace ${e.traceId} as a timeline`;
    match.prepend(link);
  }
  tr.append(time, el('td', level, 'lvl'), cutCell(agent, '', true), cutCell(e?.teamId ?? '', 'wide-only', true), match);
  return tr;
}

class SearchView {
  private generation = 0;
  private query = '';
  private token = '';
  private shown = 0;
  private filter: MessageInitShape<typeof LogFilterSchema> = {};
  private order = SearchLogsRequest_Order.NEWEST;

  /** A new search with the log's current filters. */
  start(query: string): void {
    this.query = query.trim();
    if (this.query === '') return this.close();
    this.filter = currentFilter();
    this.order = searchRelevance.checked ? SearchLogsRequest_Order.RELEVANCE : SearchLogsRequest_Order.NEWEST;
    this.token = '';
    this.shown = 0;
    searchRows.replaceChildren();
    searchResults.hidden = false;
    void this.page(++this.generation);
  }

  more(): void {
    if (this.token !== '') void this.page(this.generation);
  }

  close(): void {
    this.generation++;
    searchResults.hidden = true;
    searchRows.replaceChildren();
  }

  private async page(gen: number): Promise<void> {
    searchMore.hidden = true;
    searchError.hidden = true;
    searchSummary.textContent = this.shown === 0 ? 'searching…' : `${this.shown} hits · loading more…`;
    try {
      const res = await client.searchLogs({ query: this.query, filter: this.filter, pageSize: 50, pageToken: this.token, order: this.order }, { timeoutMs: 30_000 });
      if (gen !== this.generation) return;
      const frag = document.createDocumentFragment();
      for (const h of res.hits) frag.append(hitRow(h));
      searchRows.append(frag);
      this.shown += res.hits.length;
      this.token = res.nextPageToken;
      searchMore.hidden = this.token === '';
      const how = this.order === SearchLogsRequest_Order.RELEVANCE ? 'by relevance' : 'newest first';
      searchSummary.textContent = this.shown === 0 ? `no match for ${this.query}` : `${this.shown} hit${this.shown === 1 ? '' : 's'}${this.token ? '+' : ''} for ${this.query}, ${how}`;
    } catch (err) {
      if (gen !== this.generation) return;
      const ce = ConnectError.from(err);
      if (ce.code === Code.Unauthenticated) askForToken(getToken() ? 'the service refused this token' : 'this service requires an API token');
      searchSummary.textContent = '';
      searchError.textContent = ce.code === Code.InvalidArgument ? `the service rejected the search: ${ce.rawMessage}` : `search failed (${ce.rawMessage || Code[ce.code]})`;
      searchError.hidden = false;
    }
  }
}

const search = new SearchView();
$<HTMLFormElement>('search-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  search.start(searchInput.value);
});
searchMore.addEventListener('click', () => search.more());
$<HTMLButtonElement>('search-close').addEventListener('click', () => search.close());
searchRows.addEventListener('click', (ev) => void toggleOpen(ev));

// ---- registry -----------------------------------------------------------------------------------

const registryRowsById = new Map<string, HTMLTableRowElement>();

function renderRegistry(agents: Agent[], asOfMs: number): void {
  const seen = new Set<string>();
  const counts: Record<string, number> = {};
  let prev: HTMLTableRowElement | null = null;
  const teams = new Set<string>();
  for (const a of agents) {
    seen.add(a.agentId);
    teams.add(a.teamId);
    const status = STATUS_NAME[a.status] ?? 'UNKNOWN';
    const reported = STATUS_NAME[a.reportedStatus] ?? 'UNKNOWN';
    counts[status] = (counts[status] ?? 0) + 1;
    let tr = registryRowsById.get(a.agentId);
    if (!tr) {
      tr = el('tr');
      tr.dataset['agent'] = a.agentId;
      // Agent: the id, and on phones the team under it (the Team column gives way there).
      const agentTd = el('td', undefined, 'agent');
      agentTd.append(el('span', a.agentId, 'cut cap'), el('span', '', 'cut cap sub narrow-only'));
      const statusTd = el('td');
      statusTd.append(el('span', '', 'badge'));
      tr.append(agentTd, statusTd, cutCell('', 'wide-only team', true), el('td'), cutCell('', 'fill meta wide-only', false), cutCell('', 'fill err', false));
      registryRowsById.set(a.agentId, tr);
    }
    tr.className = `status-${status}`;
    tr.dataset['status'] = status;
    tr.dataset['team'] = a.teamId;
    const badge = tr.cells[1]!.firstElementChild as HTMLSpanElement;
    if (badge.textContent !== status) badge.textContent = status;
    badge.title = status === reported ? `reported ${reported}` : `reported ${reported}; effective ${status}`;
    const meta = metaSummary(a.meta);
    const teamUnder = tr.cells[0]!.lastElementChild!;
    if (teamUnder.textContent !== a.teamId) teamUnder.textContent = a.teamId;
    tr.cells[0]!.title = `${a.agentId}\nteam ${a.teamId}\n(click to follow its log)`;
    setCut(tr.cells[2], a.teamId);
    const lastSeen = ago(ms(a.lastSeen), asOfMs);
    tr.dataset['seen'] = String(ms(a.lastSeen) ?? '');
    if (tr.cells[3]!.textContent !== lastSeen) tr.cells[3]!.textContent = lastSeen;
    tr.cells[3]!.title = iso(a.lastSeen);
    setCut(tr.cells[4], meta);
    setCut(tr.cells[5], a.lastErrorSummary);
    // Keep the service's order (by agent id) with minimal DOM moves.
    const want: ChildNode | null = prev ? prev.nextSibling : registryRows.firstChild;
    if (want !== tr) registryRows.insertBefore(tr, want);
    prev = tr;
  }
  for (const [id, tr] of registryRowsById) {
    if (!seen.has(id)) {
      tr.remove();
      registryRowsById.delete(id);
    }
  }
  const parts = ['IDLE', 'BUSY', 'ERROR', 'OFFLINE'].filter((s) => counts[s]).map((s) => `${counts[s]} ${s.toLowerCase()}`);
  registrySummary.textContent = `${agents.length} agents${parts.length ? ' · ' + parts.join(', ') : ''} · as of ${new Date(asOfMs).toLocaleTimeString()}`;
  // The filter suggestions change only when agents or teams come or go.
  const key = `${[...teams].sort().join('\u0000')}\u0001${agents.map((a) => a.agentId).join('\u0000')}`;
  if (key !== suggestionsKey) {
    suggestionsKey = key;
    $<HTMLDataListElement>('teams').replaceChildren(...[...teams].sort().map((t) => Object.assign(el('option'), { value: t })));
    $<HTMLDataListElement>('agents').replaceChildren(...agents.map((a) => Object.assign(el('option'), { value: a.agentId })));
  }
}
let suggestionsKey = '';

/** Only the "last seen" ages (between changes the service's clock moves on, and so do they). */
function renderAges(asOfMs: number): void {
  for (const tr of registryRows.rows) {
    const td = tr.cells[3];
    const seen = tr.dataset['seen'];
    if (!td || seen === undefined) continue;
    const text = ago(Number(seen), asOfMs);
    if (td.textContent !== text) td.textContent = text;
  }
}

logRows.addEventListener('click', (ev) => void toggleOpen(ev));
registryRows.addEventListener('click', (ev) => {
  if (toggleOpen(ev)) return;
  // Anywhere else on the row: follow that agent's log (again: stop following).
  const tr = (ev.target as HTMLElement).closest('tr');
  const id = tr?.dataset['agent'];
  if (!id) return;
  agentInput.value = agentInput.value === id ? '' : id;
  onFilterChange();
});

/**
 * The registry, followed live: WatchRegistry's snapshot pages (until LIVE) become the table, each
 * CHANGE updates one agent, RESET starts a fresh snapshot. Reconnects with backoff (a fresh snapshot
 * each time); "last seen" ages count on from the service's latest time (observed_at).
 */
class RegistryWatch {
  private generation = 0;
  private controller: AbortController | undefined;
  private agents = new Map<string, Agent>();
  private serverMs = Date.now();
  private localMs = performance.now();
  private drawPending = false;

  nowMs(): number {
    return this.serverMs + (performance.now() - this.localMs);
  }

  restart(): void {
    this.generation++;
    this.controller?.abort();
    void this.run(this.generation);
  }

  private draw(): void {
    if (this.drawPending) return;
    this.drawPending = true;
    requestAnimationFrame(() => {
      this.drawPending = false;
      const list = [...this.agents.values()].sort((a, b) => (a.agentId < b.agentId ? -1 : a.agentId > b.agentId ? 1 : 0));
      renderRegistry(list, this.nowMs());
    });
  }

  private async run(gen: number): Promise<void> {
    // The token this watch goes out with: an answer to a request made with an older token says
    // nothing about the current one (the user may have entered it while this request was in flight).
    const usedToken = getToken();
    let attempt = 0;
    while (gen === this.generation) {
      const ac = new AbortController();
      this.controller = ac;
      let watchdog = setTimeout(() => ac.abort(), STREAM_SILENCE_MS);
      let pending: Map<string, Agent> | null = null;
      try {
        for await (const m of client.watchRegistry({ snapshot: true }, { signal: ac.signal })) {
          if (gen !== this.generation) return;
          clearTimeout(watchdog);
          watchdog = setTimeout(() => ac.abort(), STREAM_SILENCE_MS);
          const at = ms(m.observedAt);
          if (at !== undefined) {
            this.serverMs = at;
            this.localMs = performance.now();
          }
          switch (m.kind) {
            case RegistryChange_Kind.RESET:
              pending = new Map();
              break;
            case RegistryChange_Kind.SNAPSHOT:
              pending ??= new Map();
              for (const a of m.snapshot) pending.set(a.agentId, a);
              break;
            case RegistryChange_Kind.LIVE:
              this.agents = pending ?? new Map();
              pending = null;
              attempt = 0;
              registryError.hidden = true;
              this.draw();
              break;
            case RegistryChange_Kind.CHANGE:
              if (m.agent) this.agents.set(m.agent.agentId, m.agent);
              this.draw();
              break;
            default:
              break;
          }
        }
        // A normal end means the service is shutting down: reconnect.
      } catch (err) {
        if (gen !== this.generation || usedToken !== getToken()) return;
        const ce = ConnectError.from(err);
        if (ce.code === Code.Unauthenticated) {
          askForToken(usedToken ? 'the service refused this token' : 'this service requires an API token');
          registryError.textContent = `registry unavailable: ${ce.rawMessage}`;
          registryError.hidden = false;
          return; // a new token restarts the watch
        }
        registryError.textContent = `registry: ${ce.rawMessage || Code[ce.code]}; reconnecting`;
        registryError.hidden = false;
      } finally {
        clearTimeout(watchdog);
      }
      if (gen !== this.generation) return;
      attempt++;
      const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(attempt - 1, 10)) * (0.5 + Math.random() / 2);
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

const registry = new RegistryWatch();
registry.restart();
setInterval(() => renderAges(registry.nowMs()), AGES_EVERY_MS);

// ---- trace --------------------------------------------------------------------------------------

const traceView = new TraceView(client, $<HTMLElement>('trace-view'), () => askForToken(getToken() ? 'the service refused this token' : 'this service requires an API token'));
const followHash = (): void => {
  const m = /^#trace=(.+)$/.exec(location.hash);
  if (m) void traceView.open(decodeURIComponent(m[1]!));
  else traceView.close();
};
window.addEventListener('hashchange', followHash);
followHash();
logs.restart(true);
