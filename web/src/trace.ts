// The trace view: GetTrace as a timeline. One lane per agent (in order of first appearance) with its
// span from first to last record and a dot per record placed on a shared time axis (coloured by
// level; hover for the record, click to find it in the list), then the records in event-time order
// with their offset from the start and the time since the same agent's previous record.
import { Code, ConnectError } from '@connectrpc/connect';
import type { GetTraceResponse } from '../gen/mycelis/memory/v1/memory_pb.js';
import type { MemoryClient } from './client.js';
import { clock, duration, iso, ms } from './format.js';

function el<K extends keyof HTMLElementTagNameMap>(tag: K, text?: string, cls?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

/** Lane colours (agents beyond them reuse them in turn). */
const LANES = 8;

export class TraceView {
  private generation = 0;
  private controller: AbortController | undefined;

  constructor(
    private readonly client: MemoryClient,
    private readonly root: HTMLElement,
    private readonly onUnauthenticated: () => void,
  ) {
    root.addEventListener('click', (ev) => {
      const t = ev.target as HTMLElement;
      if (t.closest('.trace-close') || t === root) {
        ev.preventDefault();
        this.dismiss();
        return;
      }
      const dot = t.closest<HTMLElement>('.dot');
      if (dot?.dataset['row']) {
        const row = root.querySelector<HTMLElement>(`tr[data-row="${dot.dataset['row']}"]`);
        row?.scrollIntoView({ block: 'center' });
        row?.classList.add('flash');
        setTimeout(() => row?.classList.remove('flash'), 1200);
      }
    });
    document.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape' && !this.root.hidden) this.dismiss();
    });
  }

  /** Closes the view by leaving the #trace=… address (Back would reopen it). */
  private dismiss(): void {
    if (location.hash.startsWith('#trace=')) history.pushState(null, '', location.pathname + location.search);
    this.close();
  }

  close(): void {
    this.generation++;
    this.controller?.abort();
    this.root.hidden = true;
    this.root.replaceChildren();
  }

  async open(traceId: string): Promise<void> {
    const gen = ++this.generation;
    this.controller?.abort();
    const ac = new AbortController();
    this.controller = ac;
    this.root.hidden = false;
    this.root.dataset['trace'] = traceId;
    this.root.dataset['state'] = 'loading';
    this.root.replaceChildren(this.frame(traceId, el('p', 'loading…', 'muted')));
    try {
      const res = await this.client.getTrace({ traceId }, { signal: ac.signal, timeoutMs: 30_000 });
      if (gen !== this.generation) return;
      this.root.replaceChildren(this.frame(traceId, ...this.render(res)));
      this.root.dataset['state'] = 'shown';
    } catch (err) {
      if (gen !== this.generation) return;
      const ce = ConnectError.from(err);
      if (ce.code === Code.Unauthenticated) this.onUnauthenticated();
      this.root.replaceChildren(this.frame(traceId, el('p', ce.code === Code.NotFound ? `no records with trace id ${traceId}` : `trace unavailable: ${ce.rawMessage || Code[ce.code]}`, 'error')));
      this.root.dataset['state'] = 'failed';
    }
  }

  private frame(traceId: string, ...body: HTMLElement[]): HTMLElement {
    const box = el('div', undefined, 'trace-box panel');
    const head = el('div', undefined, 'trace-head');
    const title = el('h2', 'Trace ');
    title.append(el('span', traceId, 'mono'));
    const close = el('button', '×', 'trace-close');
    close.type = 'button';
    close.title = 'close (Esc)';
    head.append(title, close);
    box.append(head, ...body);
    return box;
  }

  private render(res: GetTraceResponse): HTMLElement[] {
    const start = ms(res.startedAt) ?? 0;
    const end = ms(res.endedAt) ?? start;
    const span = Math.max(1, end - start);
    const pct = (t: number): string => `${(((t - start) / span) * 100).toFixed(3)}%`;
    const summary = el(
      'p',
      `${res.totalRecords} record${res.totalRecords === 1 ? '' : 's'} · ${res.agents.length} agent${res.agents.length === 1 ? '' : 's'} · ${duration(end - start)} · ${iso(res.startedAt)} → ${clock(res.endedAt)}`,
      'muted trace-summary',
    );
    const out: HTMLElement[] = [summary];
    if (res.truncated) out.push(el('p', `showing the first ${res.records.length} records by event time (the trace has ${res.totalRecords})`, 'warn'));

    // Lanes.
    const laneOf = new Map<string, number>();
    res.agents.forEach((a, i) => laneOf.set(a.agentId, i));
    const lanes = el('div', undefined, 'lanes');
    const tracks: HTMLElement[] = [];
    res.agents.forEach((a, i) => {
      const row = el('div', undefined, `lane lane-${i % LANES}`);
      row.dataset['agent'] = a.agentId;
      const label = el('div', undefined, 'lane-label');
      label.append(el('span', a.agentId, 'cut cap'), el('span', `${a.records}${a.errors ? ` · ${a.errors} err` : ''}`, a.errors ? 'sub err' : 'sub'));
      label.title = `${a.agentId}${a.teamId ? ` (team ${a.teamId})` : ''}\n${a.records} records, ${a.errors} errors\n${iso(a.firstAt)} → ${iso(a.lastAt)} (${duration((ms(a.lastAt) ?? 0) - (ms(a.firstAt) ?? 0))})`;
      const track = el('div', undefined, 'track');
      const bar = el('div', undefined, 'bar');
      const first = ms(a.firstAt) ?? start;
      const last = ms(a.lastAt) ?? first;
      bar.style.left = pct(first);
      bar.style.width = `${(((last - first) / span) * 100).toFixed(3)}%`;
      track.append(bar);
      tracks.push(track);
      row.append(label, track);
      lanes.append(row);
    });
    const axis = el('div', undefined, 'lane axis');
    const ticks = el('div', undefined, 'track');
    for (const f of [0, 0.25, 0.5, 0.75, 1]) {
      const tick = el('span', `+${duration(f * (end - start))}`, 'tick');
      tick.style.left = `${f * 100}%`;
      ticks.append(tick);
    }
    axis.append(el('div', '', 'lane-label'), ticks);
    lanes.append(axis);
    out.push(lanes);

    // Records.
    const table = el('table', undefined, 'log trace-records');
    const head = el('thead');
    const hr = el('tr');
    for (const h of ['+Offset', '+Agent', 'Level', 'Agent', 'Intent', 'Message']) hr.append(el('th', h, h === 'Message' ? 'fill' : h === 'Intent' ? 'wide-only' : ''));
    head.append(hr);
    const body = el('tbody');
    const previous = new Map<string, number>();
    res.records.forEach((r, n) => {
      const e = r.entry;
      const agent = e?.source || e?.agentId || 'unknown';
      const at = ms(e?.timestamp) ?? start;
      const level = (e?.level || 'INFO').toUpperCase();
      const prev = previous.get(agent);
      previous.set(agent, at);
      const lane = laneOf.get(agent) ?? 0;
      const message = e?.message ?? '';
      const intent = e?.intent ?? '';
      const dot = el('span', undefined, `dot lvl-${level}`);
      dot.style.left = pct(at);
      dot.dataset['row'] = String(n);
      dot.title = `+${duration(at - start)} ${level} ${intent}${message && message !== intent ? `: ${message}` : ''}`;
      tracks[lane]?.append(dot);
      const tr = el('tr', undefined, `lvl-${level} lane-${lane % LANES}`);
      tr.dataset['row'] = String(n);
      tr.dataset['seq'] = String(r.seq);
      const time = el('td', `+${duration(at - start)}`);
      time.title = iso(e?.timestamp);
      const who = el('td', undefined, 'agent');
      who.append(el('span', '', 'swatch'), el('span', agent));
      const msg = el('td', undefined, 'fill');
      msg.append(el('span', message, 'cut'));
      msg.title = message;
      tr.append(time, el('td', prev === undefined ? '' : `+${duration(at - prev)}`), el('td', level, 'lvl'), who, el('td', intent, 'wide-only'), msg);
      body.append(tr);
    });
    table.append(head, body);
    out.push(table);
    return out;
  }
}
