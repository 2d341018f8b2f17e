/**
 * Security: WebSockets of the agent desk and of the customer page whose
 * peer stopped answering. Real `parley start` on 127.0.0.1 port 0 with SQLite in a temp dir.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { AgentClient, startTestServer, type TestServer } from './helpers.ts';

let srv: TestServer | undefined;
const sockets: WebSocket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.terminate();
  await srv?.close();
  srv = undefined;
});

/** A WebSocket client that never answers pings: what the server sees of a peer that vanished (a laptop
 * closed, a phone out of coverage, a NAT that dropped its mapping) without a FIN or RST. */
async function silentSocket(url: string): Promise<{ ws: WebSocket; pings: () => number; closed: Promise<number> }> {
  const ws = new WebSocket(url, { autoPong: false });
  sockets.push(ws);
  let pings = 0;
  ws.on('ping', () => pings++);
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return { ws, pings: () => pings, closed };
}

function frame(ws: WebSocket, type: string): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    const on = (d: Buffer) => {
      const f = JSON.parse(d.toString()) as Record<string, unknown>;
      if (f['type'] === type) {
        ws.off('message', on);
        resolve(f);
      }
    };
    ws.on('message', on);
  });
}

describe('WebSockets whose peer vanished', () => {
  // Regression test (this was a bug, now fixed). Was: src/chat-server/agent-stream.ts:60-75 (desk sockets) and src/receiver/receiver-http.ts:61,145-190
  // (customer sockets) never ping their peer; src/http/ws-liveness.ts (whose own comment says such a socket
  // "looks open for good") is applied only to the internal gateway link (gateway-socket.ts:50,
  // notification-link.ts:52), and neither page pings (web/desk/socket.ts, web/customer/app.ts). A desk or a
  // customer tab that vanishes without a FIN (sleep, lost coverage, NAT timeout) on a quiet chat keeps its
  // socket, its receiver attachment and one of the `[http] max-connections` places forever; enough of them
  // and the listener closes every new connection at once, which docs/security.md ("floods": idle
  // connections cannot use up the process) says cannot happen. Right behaviour: ping both kinds of socket
  // and terminate one that does not answer (as watchLiveness does, 10 s + 10 s).
  it(
    'a desk socket and a customer socket that never answer pings are closed by the server',
    async () => {
      srv = await startTestServer('', { PARLEY_HTTP_WS_PING_INTERVAL: '1' });
      const ws = srv.url.replace('http', 'ws');
      const alice = new AgentClient(srv.url, 'alice', 'alice-secret');
      await alice.login();
      const desk = await silentSocket(`${ws}/agent/api/ws`);
      desk.ws.send(JSON.stringify({ type: 'auth', token: alice.token }));
      await frame(desk.ws, 'ready');
      const tab = await silentSocket(`${ws}/receiver/ws`);
      tab.ws.send(JSON.stringify({ type: 'start', nickname: 'Ann' }));
      await frame(tab.ws, 'started');
      // Pinged every second ([http] ws-ping-interval = 1): closed after two intervals; 8 s is a generous bound.
      const within = (p: Promise<number>) => Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 8_000))]);
      const [deskClosed, tabClosed] = await Promise.all([within(desk.closed), within(tab.closed)]);
      expect({ deskPinged: desk.pings() > 0, tabPinged: tab.pings() > 0 }).toEqual({ deskPinged: true, tabPinged: true });
      expect({ deskClosed, tabClosed }).toEqual({ deskClosed: true, tabClosed: true });
    },
    20_000,
  );
});
