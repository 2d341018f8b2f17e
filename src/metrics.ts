/** Prometheus metrics of one process (prom-client), served at /metrics, and the counters the health endpoint shows. */
import type { ServerResponse } from 'node:http';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  readonly registry: Registry;
  readonly pushNotifications: Counter<'event'>;
  readonly pushAttempts: Counter<'result'>;
  readonly pushOutboxDepth: Gauge;
  readonly chatSessionsCreated: Counter;
  readonly chatMessages: Counter<'from'>;
}

/**
 * The metrics of a process. `chatSeries: false` (a gateway or receiver process): the chat server's series
 * exist for the code that takes them but are not served, so /metrics does not show them at a misleading 0.
 */
export function createMetrics(opts: { defaultMetrics?: boolean; chatSeries?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'parley_' });
  const registers = opts.chatSeries ?? true ? [registry] : [];
  return {
    registry,
    pushNotifications: new Counter({
      name: 'parley_push_notifications_total',
      help: 'Flex-push notifications by lifecycle event: created, delivered, acked, failed, parked.',
      labelNames: ['event'],
      registers,
    }),
    pushAttempts: new Counter({
      name: 'parley_push_attempts_total',
      help: 'customhttp POSTs by result: delivered, retry, gone.',
      labelNames: ['result'],
      registers,
    }),
    pushOutboxDepth: new Gauge({
      name: 'parley_push_outbox_depth',
      help: 'Notifications not yet final (pending, or delivered and awaiting acknowledgement).',
      registers,
    }),
    chatSessionsCreated: new Counter({ name: 'parley_chat_sessions_created_total', help: 'Chat sessions created.', registers }),
    chatMessages: new Counter({
      name: 'parley_chat_messages_total',
      help: 'Transcript Message events by sender type.',
      labelNames: ['from'],
      registers,
    }),
  };
}

/** The current value of a counter with one label value (for the health JSON). */
export async function counterValue(c: Counter<string>, labels: Record<string, string> = {}): Promise<number> {
  const got = await c.get();
  const want = Object.entries(labels);
  return got.values.filter((v) => want.every(([k, val]) => v.labels[k] === val)).reduce((n, v) => n + v.value, 0);
}

/** Answers GET /metrics in the Prometheus text format. */
export function sendMetrics(res: ServerResponse, metrics: Pick<Metrics, 'registry'>): void {
  void metrics.registry.metrics().then((text) => {
    res.writeHead(200, { 'content-type': metrics.registry.contentType });
    res.end(text);
  });
}
