/**
 * The receiver's HTTP surface:
 *   POST /receiver/push            customhttp notifications from the gateway (signature checked when a secret is set)
 *   GET  /receiver/ws              one WebSocket per browser tab (protocol in docs/receiver.md)
 *   POST /receiver/file            multipart upload from the browser (header x-parley-session)
 *   GET  /receiver/file/{id}       download (query session=<token>)
 *   GET  /receiver/file-limits     file limits (query session=<token>)
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { ParleyError, publicAdvice, toParleyError } from '../errors.ts';
import { parseFrame } from '../http/ws-frame.ts';
import { readBody } from '../http/body.ts';
import { parseMultipart } from '../http/multipart.ts';
import { sendJson } from '../http/respond.ts';
import type { Logger } from '../log.ts';
import { verifyWebhook } from '../push/signing.ts';
import type { ChatReply } from './gateway-client.ts';
import type { Receiver } from './receiver.ts';
import { decodeSegmentOrNotFound, requestUrl } from '../http/request-url.ts';
import { sendBounded } from '../http/ws-send.ts';
import { watchLiveness } from '../http/ws-liveness.ts';

export const RECEIVER_PREFIX = '/receiver/';
const MAX_PUSH_BODY = 1024 * 1024;
const MAX_FRAME = 64 * 1024;
const MAX_BAD_FRAMES = 10;

export interface ReceiverHttpOptions {
  readonly receiver: Receiver;
  readonly signingSecret: string;
  readonly maxFileSize: number;
  readonly log: Logger;
  /**
   * The per-client limit of a browser's address (RATE_LIMITED when over it), for what opens chats or
   * moves files: the gateway exempts the receiver's own address, so browsers are limited here.
   */
  readonly limitClient?: (address: string) => void;
  /** How often a browser socket is pinged (default: src/http/ws-liveness.ts); tests use less. */
  readonly livenessMs?: number;
}

/**
 * A Chat API reply as a browser may see it: without the session's tokens (`secureKey`, `userId`, `alias`,
 * `chatId`); the browser holds only its own random token.
 */
function forBrowser(reply: ChatReply): Omit<ChatReply, 'secureKey' | 'userId' | 'alias' | 'chatId'> {
  const { secureKey: _k, userId: _u, alias: _a, chatId: _c, ...rest } = reply;
  return rest;
}

function fail(res: ServerResponse, e: unknown): void {
  const err = toParleyError(e);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, err.spec.http, { error: { code: err.code, message: publicAdvice(err) } });
}

export function createReceiverHttp(o: ReceiverHttpOptions) {
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME });
  wss.on('connection', (ws: WebSocket, req: IncomingMessage) => browserSocket(ws, o.receiver, () => o.limitClient?.(req.socket.remoteAddress ?? ''), o.livenessMs));

  async function push(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = await readBody(req, MAX_PUSH_BODY);
    if (o.signingSecret !== '') verifyWebhook(o.signingSecret, req.headers, raw);
    let body: unknown;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch {
      throw new ParleyError('INVALID_PARAMETER', 'The push body is not JSON.');
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ParleyError('INVALID_PARAMETER', 'The push body is not a JSON object.');
    const result = o.receiver.onPush(body);
    // 410 tells the chat server to stop resending a notification for a session this receiver does not run.
    if (result === 'unknown-device') return sendJson(res, 410, { error: { code: 'UNKNOWN_CHAT', message: 'No session for this deviceId.' } });
    sendJson(res, 200, { ok: true, duplicate: result === 'duplicate' });
  }

  async function upload(req: IncomingMessage, res: ServerResponse): Promise<void> {
    o.limitClient?.(req.socket.remoteAddress ?? '');
    const token = String(req.headers['x-parley-session'] ?? '');
    o.receiver.session(token);
    const { form, file } = await parseMultipart(req, { maxFieldLength: 4096, maxFileSize: o.maxFileSize, maxBodySize: o.maxFileSize + 65536 });
    if (file === undefined) throw new ParleyError('MISSING_PARAMETER', 'The multipart part "file" is required.');
    const reply = await o.receiver.upload(token, file, form.userData['file-description'] ?? form.fields.get('description'));
    sendJson(res, 200, forBrowser(reply));
  }

  async function download(res: ServerResponse, fileId: string, token: string): Promise<void> {
    const r = await o.receiver.download(token, fileId);
    res.writeHead(r.status, { ...r.headers, 'content-length': r.body.length, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
    res.end(r.body);
  }

  return {
    handle(req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams): void {
      const rel = path.slice(RECEIVER_PREFIX.length);
      const run = async () => {
        if (rel === 'push' && req.method === 'POST') return push(req, res);
        if (rel === 'file' && req.method === 'POST') return upload(req, res);
        if (rel === 'file-limits' && req.method === 'GET') {
          o.limitClient?.(req.socket.remoteAddress ?? '');
          return sendJson(res, 200, forBrowser(await o.receiver.operate(query.get('session') ?? '', 'file/limits')));
        }
        const m = /^file\/([^/]+)$/.exec(rel);
        if (m !== null && req.method === 'GET') return download(res, decodeSegmentOrNotFound(m[1] ?? ''), query.get('session') ?? '');
        req.resume();
        throw new ParleyError('NOT_FOUND');
      };
      run().catch((e: unknown) => {
        const err = toParleyError(e);
        if (err.code === 'INTERNAL') o.log.error({ err: e }, 'receiver request failed');
        fail(res, err);
      });
    },
    upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
      if (requestUrl(req)?.pathname !== `${RECEIVER_PREFIX}ws`) return false;
      wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
      return true;
    },
    close(): void {
      for (const c of wss.clients) c.terminate();
      wss.close();
    },
  };
}

/**
 * One browser tab. Frames in: start {nickname, subject?, emailAddress?} | resume {token, from} | send {text}
 * | typing {typing, text?} | leave | ping. Frames out: started {token, chatId, nickname} | events {events,
 * chatEnded, nextPosition} | pong | error {error: {code, message}}.
 */
/**
 * Refusals of malformed or unauthorised frames: ten of them close the socket. A missing nickname or an
 * empty message (MISSING_PARAMETER) is a user's slip the page normally prevents, refused without counting.
 */
const CLIENT_FAULTS: ReadonlySet<string> = new Set(['INVALID_PARAMETER', 'MESSAGE_TOO_LONG', 'ACCESS_DENIED']);

/** An `events` frame (or any other) on its way to one tab. */
type TabFrame = { type: string; events?: Array<{ index: number }>; chatEnded?: boolean; nextPosition?: number };

/** Frames of one tab waiting to be handled, at most. */
const MAX_QUEUED_FRAMES = 64;

function browserSocket(ws: WebSocket, receiver: Receiver, limit: () => void, livenessMs?: number): void {
  // A tab gone without closing (a phone out of coverage, a laptop asleep) is dropped after a missed pong.
  watchLiveness(ws, livenessMs);
  let token: string | undefined;
  let detach: (() => void) | undefined;
  let bad = 0;
  let closed = false;
  /** The next event index this tab was sent: a frame repeating what it has is trimmed. */
  let shown = 0;
  /** Frames for the tab while its `started` and first events are not sent yet (a start or resume). */
  let held: TabFrame[] | undefined;
  const send = (frame: unknown) => {
    sendBounded(ws, JSON.stringify(frame));
  };
  /** Events frames from the receiver: in order and once for this tab, after its `started`. */
  const show = (frame: TabFrame) => {
    if (held !== undefined) {
      held.push(frame);
      return;
    }
    if (frame.type !== 'events' || frame.events === undefined) return send(frame);
    const events = frame.events.filter((e) => e.index >= shown);
    for (const e of events) shown = Math.max(shown, e.index + 1);
    if (events.length > 0 || frame.chatEnded === true) send({ ...frame, events });
  };
  /** Sends the tab its `started` and first events, then what came meanwhile. */
  const begin = (started: unknown, first: { events: ReadonlyArray<{ index: number }>; chatEnded: boolean; nextPosition: number }) => {
    const waiting = held ?? [];
    held = undefined;
    send(started);
    // The first events frame always goes out, empty or not (the page waits for it).
    send({ type: 'events', events: first.events, chatEnded: first.chatEnded, nextPosition: first.nextPosition });
    shown = first.events.reduce((n, e) => Math.max(n, e.index + 1), first.nextPosition);
    for (const f of waiting) show(f);
  };
  const bind = (t: string) => {
    detach?.();
    token = t;
    held = [];
    detach = receiver.attach(t, { send: (frame) => show(frame as TabFrame) });
  };
  ws.on('close', () => {
    closed = true;
    detach?.();
  });
  ws.on('error', () => ws.terminate());
  // One frame at a time, in the order they came: two sends reach the chat in the order typed. A tab that
  // keeps sending faster than its frames are handled is cut (the page reconnects and resumes).
  let queue: Promise<void> = Promise.resolve();
  let queued = 0;
  ws.on('message', (data, isBinary) => {
    if (++queued > MAX_QUEUED_FRAMES) {
      ws.close(4429, 'too many frames at once');
      return;
    }
    queue = queue.then(() => handle(data, isBinary)).finally(() => void queued--);
  });
  const handle = (data: WebSocket.RawData, isBinary: boolean): Promise<void> =>
    (async () => {
      const msg = parseFrame(isBinary ? undefined : data.toString());
      const str = (k: string, max = 65536): string | undefined => {
        const v = msg[k];
        if (v === undefined) return undefined;
        if (typeof v !== 'string' || v.length > max) throw new ParleyError('INVALID_PARAMETER', `${k} must be a string of at most ${max} characters.`);
        return v;
      };
      switch (msg.type) {
        case 'start': {
          const nickname = str('nickname', 256)?.trim() ?? '';
          if (nickname === '') throw new ParleyError('MISSING_PARAMETER', 'nickname is required.');
          limit();
          const { session, events } = await receiver.start({ nickname, subject: str('subject', 1024) ?? '', emailAddress: str('emailAddress', 256) ?? '' });
          // Closed while the chat was being started: nothing to attach (the chat stays cached for a resume).
          if (!closed) {
            bind(session.browserToken);
            begin({ type: 'started', token: session.browserToken, chatId: session.chatId, nickname: session.nickname }, { events, chatEnded: session.ended, nextPosition: session.nextPosition });
          }
          // What was pushed between the reply and now (not sent: no tab showed the chat yet).
          receiver.opened(session.browserToken);
          return;
        }
        case 'resume': {
          const t = str('token', 256) ?? '';
          const from = msg['from'];
          if (typeof from !== 'number' || !Number.isInteger(from) || from < 0) throw new ParleyError('INVALID_PARAMETER', 'from must be an integer >= 0.');
          const s = receiver.session(t);
          bind(t);
          let r: Awaited<ReturnType<Receiver['catchUp']>>;
          try {
            r = await receiver.catchUp(t, from);
          } catch (err) {
            held = undefined;
            throw err;
          }
          begin({ type: 'started', token: t, chatId: s.chatId, nickname: s.nickname, resumed: true }, r);
          return;
        }
        case 'ping':
          return send({ type: 'pong' });
      }
      if (token === undefined) throw new ParleyError('ACCESS_DENIED', 'Start or resume a chat first.');
      switch (msg.type) {
        case 'send': {
          const text = str('text') ?? '';
          if (text.trim() === '') throw new ParleyError('MISSING_PARAMETER', 'text is required.');
          await receiver.operate(token, 'send', { message: text });
          return;
        }
        case 'typing': {
          const on = msg['typing'];
          if (typeof on !== 'boolean') throw new ParleyError('INVALID_PARAMETER', 'typing must be true or false.');
          const text = str('text', 4096);
          await receiver.operate(token, on ? 'startTyping' : 'stopTyping', text === undefined ? {} : { message: text });
          return;
        }
        case 'leave':
          await receiver.operate(token, 'disconnect');
          return;
        default:
          throw new ParleyError('INVALID_PARAMETER', 'Unknown frame type.');
      }
    })().catch((e: unknown) => {
      const err = toParleyError(e);
      send({ type: 'error', error: { code: err.code, message: publicAdvice(err) } });
      bad += CLIENT_FAULTS.has(err.code) ? 1 : 0;
      if (bad >= MAX_BAD_FRAMES) ws.close(4400, 'too many bad frames');
    });
}
