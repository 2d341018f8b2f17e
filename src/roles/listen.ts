/** Starts an HTTP server on the configured address and answers the base URL. */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';

export async function listen(
  http: { readonly host: string; readonly port: number; readonly maxConnections: number },
  handle: (req: IncomingMessage, res: ServerResponse) => void,
  upgrade?: (req: IncomingMessage, socket: Duplex, head: Buffer) => void,
): Promise<{ server: Server; url: string; close(): Promise<void> }> {
  const { host, port } = http;
  // A client has 20 s to send a request's headers (Node's default is 60 s): a slow-headers client holds a
  // connection for that long at most. Bodies are bounded by the size limits and the request timeout (300 s).
  const server = createServer({ keepAliveTimeout: 65_000, headersTimeout: 20_000 }, handle);
  // [http] max-connections: a flood of idle connections cannot use up the process's file descriptors.
  if (http.maxConnections > 0) server.maxConnections = http.maxConnections;
  // Upgraded (WebSocket) connections are not closed by closeAllConnections(): track them to end them.
  const upgraded = new Set<Duplex>();
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    upgraded.add(socket);
    socket.once('close', () => upgraded.delete(socket));
    if (upgrade !== undefined) upgrade(req, socket, head);
    else socket.destroy();
  });
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    else socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const h = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    server,
    url: `http://${h}:${addr.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        for (const s of upgraded) s.destroy();
      }),
  };
}
