/**
 * A push receiver for tests: a real HTTP server on 127.0.0.1 port 0 that records every POST and answers as
 * told (status, hang, close the connection).
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedPush {
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly raw: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly body: any;
}

export type Behaviour = { kind: 'status'; status: number; headers?: Record<string, string> } | { kind: 'hang' } | { kind: 'close' };

export interface FakeReceiver {
  readonly url: string;
  readonly port: number;
  readonly received: ReceivedPush[];
  /** How to answer the next requests (default: 200). */
  behave(b: Behaviour): void;
  /** Resolves when at least `n` POSTs have arrived. */
  waitFor(n: number, timeoutMs?: number): Promise<ReceivedPush[]>;
  close(): Promise<void>;
}

export async function startFakeReceiver(port = 0): Promise<FakeReceiver> {
  const received: ReceivedPush[] = [];
  let behaviour: Behaviour = { kind: 'status', status: 200 };
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      let body: unknown;
      try {
        body = JSON.parse(raw);
      } catch {
        body = raw;
      }
      received.push({ path: req.url ?? '', headers: req.headers, raw, body });
      for (const w of waiters.filter((x) => received.length >= x.n)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
      const b = behaviour;
      if (b.kind === 'hang') return;
      if (b.kind === 'close') {
        req.socket.destroy();
        return;
      }
      res.writeHead(b.status, { 'content-type': 'text/plain', ...b.headers });
      res.end(b.status < 300 ? 'success' : 'no');
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const actual = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${actual}`,
    port: actual,
    received,
    behave(b) {
      behaviour = b;
    },
    waitFor(n, timeoutMs = 5000) {
      if (received.length >= n) return Promise.resolve(received.slice());
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`expected ${n} pushes, got ${received.length}`)), timeoutMs);
        waiters.push({
          n,
          resolve: () => {
            clearTimeout(t);
            resolve(received.slice());
          },
        });
      });
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Request Chat userData that subscribes to customhttp push. */
export function pushUserData(deviceId: string, extra: Record<string, string> = {}): Record<string, string> {
  const ud: Record<string, string> = {
    GCTI_Chat_PushSubscribe: 'true',
    GCTI_GMS_NodeGroup: 'gms-cluster',
    GCTI_GMS_PushDeviceId: deviceId,
    GCTI_GMS_PushDeviceType: 'customhttp',
    ...extra,
  };
  return Object.fromEntries(Object.entries(ud).map(([k, v]) => [`userData[${k}]`, v]));
}

/** The push sections of a test config pointing at `receiverUrl`. */
export function pushIni(receiverUrl: string, extra = ''): string {
  return `
[settings]
flex-push-on-join = true
flex-push-content = session-id, user-id, secure-key, app-dbid
flex-push-resend-delay = 15
flex-push-resend-attempts = 3
[chat]
enable_notification_mode = true
[push]
pushEnabled = customhttp
customhttp.url = ${receiverUrl}/push
customhttp.message = dummy message
debug.customhttp.url = ${receiverUrl}/debug
debug.customhttp.message = debug message
allowed-networks = loopback
request-timeout = 1
[push.AsyncSMSChat]
customhttp.url = ${receiverUrl}/sms
customhttp.message = sms message
${extra}`;
}
