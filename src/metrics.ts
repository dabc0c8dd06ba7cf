import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { MemoryBudget } from './config/memory-budget.js';

/**
 * The process's Prometheus registry. Components declare their metrics at module level through the
 * get-or-create helpers below (so importing a module twice, or building two instances in one test
 * process, never throws "already registered"). Served at /metrics on the HTTP port.
 * Our names start with `mycelis_memory_`; collectProcessMetrics adds prom-client's `process_*`/`nodejs_*`.
 */
export const metricsRegistry = new Registry();

let processMetrics = false;

/**
 * Node process metrics on the same registry (prom-client's defaults: CPU, memory, heap, GC, event-loop
 * lag, handles): what an operator looks at first when latency or memory moves. Once per process
 * (the service's entry point calls it; tests that build many services in one process share them).
 */
export function collectProcessMetrics(): void {
  if (processMetrics) return;
  processMetrics = true;
  collectDefaultMetrics({ register: metricsRegistry });
}

function getOrCreate<T>(name: string, create: () => T): T {
  const existing = metricsRegistry.getSingleMetric(name);
  return (existing as T | undefined) ?? create();
}

export function counter(name: string, help: string, labelNames: readonly string[] = []): Counter<string> {
  return getOrCreate(name, () => new Counter({ name, help, labelNames, registers: [metricsRegistry] }));
}

/**
 * `collect`, when given, sets the gauge's value when /metrics is scraped (for values that change on
 * every response of a stream: a set() there costs two objects and a label hash each time).
 */
export function gauge(name: string, help: string, labelNames: readonly string[] = [], collect?: (this: Gauge<string>) => void): Gauge<string> {
  return getOrCreate(name, () => new Gauge({ name, help, labelNames, registers: [metricsRegistry], ...(collect ? { collect } : {}) }));
}

export function histogram(
  name: string,
  help: string,
  labelNames: readonly string[] = [],
  buckets: number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
): Histogram<string> {
  return getOrCreate(name, () => new Histogram({ name, help, labelNames, buckets, registers: [metricsRegistry] }));
}

const budgetGauge = gauge(
  'mycelis_memory_budget_bytes',
  'The memory budget (src/config/memory-budget.ts): the limit it was made from, V8 heap and semi-space, and the byte bound of each queue',
  ['part'],
);
const v8HeapLimitGauge = gauge('mycelis_memory_v8_heap_limit_bytes', 'The heap limit V8 reports (old and young generation), after the budget\'s flags');

/** Exports the memory budget and the heap limit in effect (once, at start). */
export function exportMemoryBudget(b: MemoryBudget, heapSizeLimitBytes: number): void {
  budgetGauge.labels('limit').set(b.limitBytes);
  budgetGauge.labels('heap').set(b.heapBytes);
  budgetGauge.labels('semi_space').set(b.semiSpaceBytes);
  budgetGauge.labels('ingest').set(b.ingestBytes);
  budgetGauge.labels('batch').set(b.batchBytes);
  budgetGauge.labels('handover').set(b.handoverBytes);
  budgetGauge.labels('streams').set(b.streamBytes);
  budgetGauge.labels('watch').set(b.watchBytes);
  v8HeapLimitGauge.set(heapSizeLimitBytes);
}
