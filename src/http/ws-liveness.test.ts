import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { watchLiveness } from './ws-liveness.ts';

const servers: WebSocketServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    for (const c of s.clients) c.terminate();
    await new Promise((r) => s.close(r));
  }
});

async function peer(autoPong: boolean): Promise<string> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', autoPong });
  servers.push(wss);
  await new Promise((r) => wss.once('listening', r));
  return `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
}

async function open(url: string): Promise<WebSocket> {
  const ws = new WebSocket(url);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  return ws;
}

describe('watchLiveness', () => {
  it('terminates a socket whose peer stopped answering pings (a half-open connection)', async () => {
    const ws = await open(await peer(false));
    watchLiveness(ws, 40);
    const closed = await new Promise<boolean>((resolve) => {
      ws.once('close', () => resolve(true));
      setTimeout(() => resolve(false), 2_000);
    });
    expect(closed).toBe(true);
  });

  it('keeps a socket whose peer answers', async () => {
    const ws = await open(await peer(true));
    watchLiveness(ws, 40);
    await new Promise((r) => setTimeout(r, 300));
    expect(ws.readyState).toBe(ws.OPEN);
    ws.close();
  });
});
