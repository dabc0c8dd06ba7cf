// Pulls from a durable JetStream consumer with credit: at most `maxMessages` messages and `maxBytes`
// bytes delivered to this process and not yet finished (acked, handed back, or left to redeliver).
//
// Why not nats.js's consume(): read against nats.js 2.29 and nats-server 2.9, consume() has three ways
// to leave a delivered message sitting unseen in the process, each of which cost ACK_WAIT (60 s then)
// in the trials, and no way to bound what is held by bytes:
// 1. It asks for more as messages ARRIVE, not as they are acked. What the process holds is bounded
//    only by max_ack_pending, in messages; 10,000 tool results of 512 KiB are 5 GB. A pull's max_bytes
//    bounds one request, not what is held.
// 2. Its stop() unsubscribes the pull inbox at once: whatever the server sent before it saw the UNSUB
//    (up to a whole pull) is dropped by the client, stays ack-pending, and waits out ACK_WAIT. Whether
//    a SIGTERM hit such a window is luck: the "58 s, once; 4.5 s on another try" of a restart.
// 3. It counts what its pulls may still deliver in one running total, corrected only by the status
//    messages that carry Nats-Pending-* headers. nats-server also ends pull requests silently (one
//    that expired while the consumer sat at max_ack_pending is dropped in nextWaiting() without a
//    408), so the client believes messages are on their way that never come, stops asking, and only
//    recovers when two idle heartbeats are missed (30 s): the "trickled in commits of 4-26 rows for
//    30 s".
//
// Here every pull request has its own reply subject and subscription, so each delivery and each
// status is attributed to its request. A request asks for the credit that is free (and never less than
// one message of the largest size NATS allows, so a large message is always taken), and at most a
// quarter of the credit. Credit returns when the pipeline finishes a message, and only then is more
// asked for.
//
// Two requests are open while the first one waits, the second sent once the first is half its life old,
// so that when one expires another that has not is already queued on the server. nats-server 2.9
// (loopAndGatherMsgs) takes the next message - a redelivery off its redelivery queue - BEFORE it looks
// for a waiting request (nextWaiting); when it finds none that can take it (the only one just expired
// and not yet swept, or its max_bytes left too little: a 409), it puts back a new message (o.sseq--)
// but drops a redelivery from the queue: that message stays ack-pending with its ack timer restarted,
// and comes back only after ANOTHER ACK_WAIT (fixed in nats-server 2.11, #5305). With one request at a
// time, the restarted process's request expiring just as the dead process's messages fell due cost
// their redelivery 2 x ACK_WAIT (18.8 s measured against a bound of ACK_WAIT + 5 s, CI on a loaded
// host). With a second, younger request queued, nextWaiting skips the expired one and delivers.
//
// The subscription of a request is never withdrawn while the request may still deliver: nats-server
// marks a message delivered (ack pending) when it queues it, and routes it to the subscriber later;
// after an UNSUB the route finds no subscriber and the message is lost until ACK_WAIT (measured here:
// 3,140 of 5,000 deliveries of an open request lost by an UNSUB right after the first arrived, even
// with a PING after it). So a request ends only when the server has no more to send for it: its count
// delivered or its bytes used up (counted here exactly as the server counts them), or a status (404,
// 408, 409), which travels the same queue as the deliveries and so arrives after all of them. Requests
// are short (`expiresMs`): when nothing comes the server ends them with a 408, and a new one is sent.
// One the server removed without a status (it does so for a request found expired while delivering)
// is ended `graceMs` after its expiry. stop() sends no new request and waits for the open ones to end,
// so a graceful stop waits at most about `expiresMs` and loses nothing in the client: whatever the
// server sent reaches onMessage.
import { createInbox, type Msg, type NatsConnection, type Subscription } from 'nats';
import type { Logger } from '../logger.js';

/** Delivered-and-unfinished messages, shared by successive pullers of one ingest. */
export class Credit {
  messages = 0;
  bytes = 0;
  private onFree: (() => void) | null = null;
  private scheduled = false;

  constructor(
    readonly maxMessages: number,
    readonly maxBytes: number,
  ) {}

  take(bytes: number): void {
    this.messages++;
    this.bytes += bytes;
  }

  /** A message is finished (acked, handed back, or left to JetStream's redelivery). */
  release(bytes: number): void {
    this.messages--;
    this.bytes -= bytes;
    if (!this.scheduled && this.onFree) {
      // Batches finish thousands of messages at once: ask for more once, after them.
      this.scheduled = true;
      queueMicrotask(() => {
        this.scheduled = false;
        this.onFree?.();
      });
    }
  }

  /** Who to tell when credit comes back (the current puller). */
  listen(fn: (() => void) | null): void {
    this.onFree = fn;
  }
}

/** The pull stopped for a reason only setting the consumer up again can fix (it was deleted, JetStream is gone, ...). */
export class PullError extends Error {
  override readonly name = 'PullError';
  constructor(
    message: string,
    readonly code: number,
  ) {
    super(message);
  }
}

export interface PullOptions {
  readonly stream: string;
  readonly consumer: string;
  /** Each pull request expires on the server after this long (a stop waits for the open one to end). */
  readonly expiresMs: number;
  /** A request the server expired without telling is taken as ended this long after its expiry. */
  readonly graceMs: number;
  /** Called for every delivered message, with its size as the server counts it. Synchronous. */
  readonly onMessage: (m: Msg, bytes: number) => void;
  /** JetStream API prefix. */
  readonly apiPrefix?: string;
}

interface PullRequest {
  readonly id: number;
  readonly inbox: string;
  readonly sub: Subscription;
  /** Messages and bytes the server may still deliver for it (its reserved credit). */
  n: number;
  b: number;
  /** When it was sent (Date.now()). */
  readonly sentAt: number;
  /** When the request is taken as ended even without a word from the server. */
  readonly deadline: number;
  /** Being unsubscribed after its deadline: no longer open; its reservation is returned when `done`. */
  closing: boolean;
  done: boolean;
}

/** The size NATS counts for a delivery: subject, reply, headers and payload (nats-server's `sz`). */
export function deliverySize(m: Msg): number {
  const size = (m as Msg & { size?: () => number }).size;
  return typeof size === 'function' ? size.call(m) : m.subject.length + (m.reply ?? '').length + m.data.length;
}

/** The JetStream metadata carried by a delivery's ack subject. */
export interface DeliveryInfo {
  readonly deliveryCount: number;
  readonly streamSeq: number;
  readonly timestampNanos: number;
}

/** Positions of the first dots of an ack subject (parseAckSubject needs those up to the tenth token). */
const DOTS = new Int32Array(16);

/**
 * `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>` or, with a domain and account
 * hash, `$JS.ACK.<domain>.<hash>.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>.<token>`.
 */
export function parseAckSubject(reply: string): DeliveryInfo | null {
  // Per delivery: the dots are found in place and only the three numbers are sliced out (a split made
  // an array and ten strings for every message).
  if (!reply.startsWith('$JS.ACK.')) return null;
  let dots = 0;
  for (let i = reply.indexOf('.'); i !== -1; i = reply.indexOf('.', i + 1)) {
    if (dots < DOTS.length) DOTS[dots] = i;
    dots++;
  }
  const tokens = dots + 1;
  const at = tokens === 9 ? 4 : tokens >= 11 ? 6 : -1;
  if (at < 0) return null;
  const deliveryCount = Number(reply.slice(DOTS[at - 1]! + 1, DOTS[at]!));
  const streamSeq = Number(reply.slice(DOTS[at]! + 1, DOTS[at + 1]!));
  const timestampNanos = Number(reply.slice(DOTS[at + 2]! + 1, DOTS[at + 3]!));
  if (!Number.isSafeInteger(deliveryCount) || !Number.isSafeInteger(streamSeq) || !Number.isFinite(timestampNanos)) return null;
  return { deliveryCount, streamSeq, timestampNanos };
}
const enc = new TextEncoder();

export class PullConsumer {
  private readonly log: Logger;
  private readonly nextSubject: string;
  private readonly inboxBase = createInbox();
  private readonly requests = new Set<PullRequest>();
  private nextId = 0;
  private stopping = false;
  private failure: Error | null = null;
  private watchdog: NodeJS.Timeout | null = null;
  private resolveClosed!: (err: Error | null) => void;
  /** Resolves when the puller stopped: null after stop(), the error when it failed. */
  readonly closed: Promise<Error | null> = new Promise((r) => (this.resolveClosed = r));
  /** Pull requests sent (for tests and debugging). */
  requestsSent = 0;

  constructor(
    private readonly nc: NatsConnection,
    private readonly credit: Credit,
    private readonly opts: PullOptions,
    logger: Logger,
  ) {
    this.log = logger.child({ component: 'pull-consumer' });
    this.nextSubject = `${opts.apiPrefix ?? '$JS.API'}.CONSUMER.MSG.NEXT.${opts.stream}.${opts.consumer}`;
  }

  /** The largest delivery NATS can make: its max_payload plus room for subject, reply and headers. */
  private get largestDelivery(): number {
    return (this.nc.info?.max_payload ?? 1024 * 1024) + 8192;
  }

  start(): void {
    this.credit.listen(() => this.pull());
    this.watchdog = setInterval(() => this.check(), 100);
    this.watchdog.unref();
    this.pull();
  }

  /**
   * Sends no more requests and resolves once the open ones have ended: every message the server sent
   * has then been handed to onMessage (at most about expiresMs).
   */
  async stop(): Promise<void> {
    if (!this.stopping) {
      this.stopping = true;
      this.credit.listen(null);
    }
    await this.settled();
    this.finish(null);
  }

  /** Requests the server may still deliver for (not being withdrawn). */
  get openRequests(): readonly { readonly sentAt: number; readonly messages: number; readonly bytes: number }[] {
    return [...this.requests].filter((r) => !r.closing).map((r) => ({ sentAt: r.sentAt, messages: r.n, bytes: r.b }));
  }

  /**
   * Asks for the free credit when enough is free and either no request is open, or the only open one is
   * half its life old (the second keeps a live request queued on the server when the first expires).
   */
  private pull(): void {
    if (this.stopping || this.failure || this.nc.isClosed()) return;
    let reservedMessages = 0;
    let reservedBytes = 0;
    let open = 0;
    let youngest = 0;
    for (const r of this.requests) {
      reservedMessages += r.n;
      reservedBytes += r.b;
      if (!r.closing) {
        open++;
        youngest = Math.max(youngest, r.sentAt);
      }
    }
    const now = Date.now();
    if (open >= 2 || (open === 1 && now - youngest < this.opts.expiresMs / 2)) return;
    const c = this.credit;
    const heldMessages = c.messages + reservedMessages;
    const heldBytes = c.bytes + reservedBytes;
    const freeMessages = c.maxMessages - heldMessages;
    const freeBytes = c.maxBytes - heldBytes;
    const largest = this.largestDelivery;
    if (freeMessages <= 0) return;
    // A request with less room than the largest message could be refused the next one (409): wait.
    if (heldMessages > 0 && freeBytes < largest) return;
    // A quarter of the credit at a time (what a stop may still have to hand back), and never less than
    // the largest message: with nothing held, one larger than the whole budget is still taken (alone).
    const n = Math.min(freeMessages, Math.max(1, Math.floor(c.maxMessages / 4)));
    const b = Math.max(Math.min(freeBytes, Math.floor(c.maxBytes / 4)), largest);
    const id = ++this.nextId;
    const inbox = `${this.inboxBase}.${id}`;
    const req: PullRequest = {
      id,
      inbox,
      n,
      b,
      sentAt: now,
      deadline: now + this.opts.expiresMs + this.opts.graceMs,
      closing: false,
      done: false,
      sub: this.nc.subscribe(inbox, { callback: (err, m) => this.onMsg(req, err, m) }),
    };
    this.requests.add(req);
    const body = { batch: n, max_bytes: b, expires: this.opts.expiresMs * 1_000_000 };
    this.requestsSent++;
    this.nc.publish(this.nextSubject, enc.encode(JSON.stringify(body)), { reply: inbox });
  }

  private onMsg(req: PullRequest, err: Error | null, m: Msg): void {
    if (err) {
      // A subscription error (permissions): nothing will come on it.
      this.end(req);
      this.fail(new PullError(`pull subscription failed: ${err.message}`, 0));
      return;
    }
    if (m.subject === req.inbox) {
      this.onStatus(req, m);
      return;
    }
    const size = deliverySize(m);
    req.n--;
    req.b = Math.max(0, req.b - size);
    this.credit.take(size);
    try {
      this.opts.onMessage(m, size);
    } finally {
      // The server ends a request when its count is delivered or its bytes are used up exactly.
      if (req.n <= 0 || req.b <= 0) {
        this.end(req);
        this.pull();
      }
    }
  }

  private onStatus(req: PullRequest, m: Msg): void {
    const code = m.headers?.code ?? 0;
    const description = m.headers?.description ?? '';
    if (code === 100) return; // an idle heartbeat (not asked for)
    if (code === 404 || code === 408) {
      // No messages / Request Timeout / Interest Expired / Requests Pending: the request ended.
      this.end(req);
      this.pull();
      return;
    }
    if (code === 409) {
      this.end(req);
      const d = description.toLowerCase();
      if (d.includes('message size exceeds maxbytes') || d.includes('leadership change')) {
        this.pull();
        return;
      }
      // Consumer Deleted, push based, Exceeded MaxWaiting/MaxRequestBatch/MaxRequestExpires/MaxRequestMaxBytes.
      this.fail(new PullError(`JetStream ended the pull: ${code} ${description}`, code));
      return;
    }
    if (code === 503) {
      this.end(req);
      this.fail(new PullError('JetStream did not answer the pull (503 no responders): the consumer or stream is missing, or JetStream is down', code));
      return;
    }
    this.end(req);
    this.fail(new PullError(`JetStream rejected the pull: ${code} ${description}`, code));
  }

  /** The request can deliver nothing more: release its reservation. */
  private end(req: PullRequest): void {
    if (req.done) return;
    req.done = true;
    req.n = 0;
    req.b = 0;
    this.requests.delete(req);
    if (!req.sub.isClosed()) req.sub.unsubscribe();
    if (this.requests.size === 0) this.wakeSettled();
  }

  /** Past its deadline: unsubscribe, and end it once the server has seen that (what arrives still counts). */
  private withdraw(req: PullRequest, reason: string): void {
    if (req.done || req.closing) return;
    req.closing = true;
    this.log.debug({ request: req.id, reason, left: req.n }, 'withdrawing pull request');
    const drained = this.nc.isClosed() || req.sub.isClosed() ? Promise.resolve() : req.sub.drain();
    drained.catch(() => undefined).finally(() => {
      this.end(req);
      this.pull();
    });
  }

  private check(): void {
    const now = Date.now();
    for (const r of this.requests) {
      // Expired without a status (or lost with a reconnect, or the server restarted).
      if (!r.closing && now >= r.deadline) this.withdraw(r, 'expired without a status');
    }
    // Credit may have come back while a request was open (it could not be used then).
    this.pull();
  }

  private fail(err: Error): void {
    if (this.failure || this.stopping) return;
    this.failure = err;
    this.credit.listen(null);
    // Open requests end on their own (a status, or their deadline); then the puller is closed.
    void this.settled().then(() => this.finish(err));
  }

  private settledWaiters: (() => void)[] = [];
  private settled(): Promise<void> {
    if (this.requests.size === 0) return Promise.resolve();
    return new Promise((r) => this.settledWaiters.push(r));
  }
  private wakeSettled(): void {
    const w = this.settledWaiters;
    this.settledWaiters = [];
    for (const f of w) f();
  }

  private finish(err: Error | null): void {
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = null;
    this.resolveClosed(err);
  }
}
