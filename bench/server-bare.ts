/**
 * Baseline server for the benchmarks: plain `node:http`, reads the POST body to its end and answers a
 * ~300 byte JSON object shaped like a Chat API v2 reply. No routing, no parsing, no store: the ceiling a
 * Node HTTP server reaches on this machine under the same load generator.
 * Prints `READY <url>` on stdout; exits on SIGTERM or when stdin closes.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exitWithParent } from './lib/child.ts';

const REPLY_TEMPLATE = {
  statusCode: 0,
  alias: '117',
  chatEnded: false,
  chatId: '0001AaBbCcDdEeFf',
  messages: [] as unknown[],
  nextPosition: 0,
  userId: '0A1B2C3D4E5F6A7B',
  secureKey: '8f2d1c4b6a5e7d9c0b1a2f3e4d5c6b7a',
  userData: { note: 'baseline reply padded to about three hundred bytes of JSON like a Parley send reply' },
};

let counter = 0;
const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
  let size = 0;
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
  });
  req.on('end', () => {
    const body = JSON.stringify({ ...REPLY_TEMPLATE, nextPosition: ++counter, received: size });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`READY http://127.0.0.1:${port}\n`);
});

exitWithParent(
  () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
);
