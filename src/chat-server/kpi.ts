/**
 * The health/KPI document of a chat server node (GET /health): the Genesys-named identity fields the
 * receiver's HA logic needs (app_dbid, process_os_pid), start time, sessions, flex (push) users, rates of
 * messages and notifications, outbox depth and store latency. (The Genesys endpoint's path and JSON were
 * NOT FOUND publicly; this shape is Parley's, documented in docs/deployment.md.)
 */
import type { Clock } from '../clock.ts';
import { counterValue, type Metrics } from '../metrics.ts';
import type { PushEngine } from '../push/engine.ts';
import type { Store } from '../store/port.ts';
import type { LiveSessions } from './live-sessions.ts';

const SAMPLE_MS = 5000;

export class Kpi {
  private last = { at: 0, messages: 0, notifications: 0 };
  private rates = { messagesPerSecond: 0, notificationsPerSecond: 0 };
  private storeLatencyMs = 0;
  private timer: NodeJS.Timeout | undefined;
  readonly startedAt: number;

  constructor(
    private readonly o: { alias: string; clock: Clock; metrics: Metrics; sessions: LiveSessions; push: PushEngine; store: Store },
  ) {
    this.startedAt = o.clock.now();
  }

  run(): void {
    void this.sample();
    this.timer = setInterval(() => void this.sample(), SAMPLE_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
  }

  async sample(): Promise<void> {
    const now = this.o.clock.now();
    const messages = await counterValue(this.o.metrics.chatMessages);
    const notifications = await counterValue(this.o.metrics.pushNotifications, { event: 'created' });
    if (this.last.at > 0 && now > this.last.at) {
      const s = (now - this.last.at) / 1000;
      this.rates = { messagesPerSecond: (messages - this.last.messages) / s, notificationsPerSecond: (notifications - this.last.notifications) / s };
    }
    this.last = { at: now, messages, notifications };
    const t0 = performance.now();
    try {
      // An id no chat has (chat ids are base62), valid text in every store.
      await this.o.store.loadSession('kpi-probe');
      this.storeLatencyMs = performance.now() - t0;
    } catch {
      this.storeLatencyMs = -1;
    }
  }

  async health(extra: Record<string, unknown> = {}) {
    const n = this.o.metrics.pushNotifications;
    const c = this.o.sessions.counts();
    return {
      // The last store probe failed: requests that need the store fail too (the figures are this node's memory).
      status: this.storeLatencyMs < 0 ? 'store-unavailable' : 'ok',
      app_dbid: this.o.alias,
      process_os_pid: process.pid,
      start_time: this.startedAt,
      sessions: { active: c.open - c.dormant, dormant: c.dormant, total: c.open },
      flex_users: c.flex,
      messages_per_second: round(this.rates.messagesPerSecond),
      notifications_per_second: round(this.rates.notificationsPerSecond),
      outbox_depth: this.o.push.depth,
      store_latency_ms: round(this.storeLatencyMs),
      push: {
        outbox_depth: this.o.push.depth,
        created: await counterValue(n, { event: 'created' }),
        delivered: await counterValue(n, { event: 'delivered' }),
        acked: await counterValue(n, { event: 'acked' }),
        failed: await counterValue(n, { event: 'failed' }),
      },
      ...extra,
    };
  }
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}
