/**
 * The gateway's link to chat server nodes over HTTP (split deployment). Each request goes to the node its
 * `alias` names while that node lives; a request whose alias names a dead or unknown node goes to a live
 * node, which restores the session from the store and answers with its own alias. NOT_OWNER answers are
 * followed to the owner; a node that fails at the transport level is suspected and another one tried; one
 * that times out is not (slow is not dead) and may be asked once more. Every attempt carries the same
 * idempotency key (a Request Chat: the same retry key), so a call applied by a node that answered late is
 * answered again, not applied twice.
 */
import { randomUUID } from 'node:crypto';
import { Pool } from 'undici';
import type { ClientIdentity, ClientOperation, ClientReply, RequestChatInput, UploadInput } from '../chat-server/client-ops.ts';
import { NODE_RPC_PATH, NODE_TOKEN_HEADER, type NodeCall } from '../chat-server/node-rpc.ts';
import type { Position } from '../chat/transcript.ts';
import type { FileMeta } from '../chat/types.ts';
import type { NodeDirectory } from '../cluster/node-directory.ts';
import { ERRORS, ParleyError, type ErrorCode } from '../errors.ts';
import { createRandomIds, type IdSource } from '../ids.ts';
import type { NodeRecord } from '../store/port.ts';
import type { NodeLink } from './node-link.ts';

const ATTEMPTS = 4;

/** Transport errors that say nothing listens at the node's address (it is gone, not merely slow). */
const NOT_THERE = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);

function transportCode(err: unknown): string {
  const e = err as { code?: unknown; cause?: { code?: unknown } } | null;
  const code = e?.code === 'UND_ERR_SOCKET' && typeof e.cause?.code === 'string' ? e.cause.code : e?.code;
  return typeof code === 'string' ? code : '';
}

export class RemoteNodeLink implements NodeLink {
  private readonly pools = new Map<string, Pool>();

  private readonly ids: Pick<IdSource, 'chatId'>;

  constructor(
    private readonly nodes: NodeDirectory,
    private readonly opts: { token: string; timeoutMs: number; ids?: Pick<IdSource, 'chatId'> },
  ) {
    this.ids = opts.ids ?? createRandomIds();
  }

  async requestChat(serviceName: string, input: RequestChatInput): Promise<ClientReply> {
    // A node over its session limit answers UNAVAILABLE: try the next one. Every attempt carries the same
    // chat id and key, so a node that gets the call again answers the chat the first attempt opened.
    const retryKey = { chatId: this.ids.chatId(), requestId: randomUUID() };
    return this.route(undefined, { call: 'requestChat', serviceName, input, retryKey }) as Promise<ClientReply>;
  }

  perform(chatId: string, serviceName: string, identity: ClientIdentity, op: ClientOperation, position: Position): Promise<ClientReply> {
    return this.route(identity.alias, { call: 'perform', chatId, serviceName, identity, op, position }) as Promise<ClientReply>;
  }

  upload(chatId: string, serviceName: string, identity: ClientIdentity, file: UploadInput, position: Position): Promise<ClientReply> {
    const f = { fileName: file.fileName, contentType: file.contentType, base64: file.bytes.toString('base64'), ...(file.description === undefined ? {} : { description: file.description }) };
    return this.route(identity.alias, { call: 'upload', chatId, serviceName, identity, file: f, position }) as Promise<ClientReply>;
  }

  async download(chatId: string, serviceName: string, identity: ClientIdentity, fileId: string): Promise<{ meta: FileMeta; bytes: Buffer }> {
    const r = (await this.route(identity.alias, { call: 'download', chatId, serviceName, identity, fileId })) as { meta: FileMeta; base64: string };
    return { meta: r.meta, bytes: Buffer.from(r.base64, 'base64') };
  }

  private async route(alias: string | undefined, first: NodeCall): Promise<unknown> {
    // One idempotency key for every attempt of this call: a node that restores the session after the first
    // node committed the call but died before answering sees the key and does not apply it again.
    const call: NodeCall = 'identity' in first ? ({ ...first, identity: { ...first.identity, requestId: randomUUID() } } as NodeCall) : first;
    const tried = new Set<string>();
    /** Nodes that timed out once: each may be asked once more (it may have applied the call meanwhile). */
    const slow = new Set<string>();
    let preferred = alias !== undefined && alias !== '' && this.nodes.isAlive(alias) ? this.nodes.get(alias) : undefined;
    let last: ParleyError | undefined;
    for (let i = 0; i < ATTEMPTS; i++) {
      const node = preferred ?? this.nodes.live().find((n) => !tried.has(n.appDbid));
      preferred = undefined;
      if (node === undefined) break;
      tried.add(node.appDbid);
      try {
        return await this.call(node, call);
      } catch (e) {
        const err = e instanceof ParleyError ? e : new ParleyError('UNAVAILABLE', 'The chat server node did not answer.', { cause: e });
        last = err;
        if (err.code === 'NOT_OWNER') {
          // The node that answers knows the owner is alive (it checked): follow it there, even when this
          // gateway suspects that node after a dropped connection or has not seen it register yet.
          const owner = typeof err.details?.['owner'] === 'string' ? (err.details['owner'] as string) : undefined;
          if (owner !== undefined && !tried.has(owner)) preferred = await this.known(owner);
          tried.delete(node.appDbid); // the same node may restore it after the owner is gone
          continue;
        }
        if (err.code === 'UNAVAILABLE') {
          if ((err.details?.['timedOut'] === true || err.details?.['dropped'] === true) && !slow.has(node.appDbid)) {
            slow.add(node.appDbid);
            tried.delete(node.appDbid);
          }
          continue;
        }
        throw err;
      }
    }
    throw last ?? new ParleyError('UNAVAILABLE', 'No chat server node is available.');
  }

  private async call(node: NodeRecord, call: NodeCall): Promise<unknown> {
    let status: number;
    let text: string;
    try {
      const res = await this.pool(node.url).request({
        method: 'POST',
        path: NODE_RPC_PATH,
        headers: { 'content-type': 'application/json', [NODE_TOKEN_HEADER]: this.opts.token },
        body: JSON.stringify(call),
        headersTimeout: this.opts.timeoutMs,
        bodyTimeout: this.opts.timeoutMs,
      });
      status = res.statusCode;
      text = await res.body.text();
    } catch (err) {
      const code = transportCode(err);
      // Slow is not dead: the node may have applied the call and may still answer it (asked again, see route()).
      if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
        throw new ParleyError('UNAVAILABLE', `Chat server node ${node.appDbid} did not answer in time.`, { cause: err, details: { timedOut: true } });
      }
      // Only a connection that could not be made says the node is gone; a dropped one (a reset, a closed
      // keep-alive socket) may have carried the call to a live node, which is asked again like a slow one.
      if (NOT_THERE.has(code)) {
        this.nodes.suspect(node.appDbid);
        throw new ParleyError('UNAVAILABLE', `Chat server node ${node.appDbid} did not answer.`, { cause: err });
      }
      throw new ParleyError('UNAVAILABLE', `The connection to chat server node ${node.appDbid} dropped.`, { cause: err, details: { dropped: true } });
    }
    let body: { ok?: unknown; error?: { code: string; message: string; details?: Record<string, unknown> } };
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      // Not a node's answer (a proxy, a dying process): another node may serve the call.
      this.nodes.suspect(node.appDbid);
      throw new ParleyError('UNAVAILABLE', `Chat server node ${node.appDbid} answered ${status} without JSON.`);
    }
    if (status === 200 && 'ok' in body) return body.ok;
    const code = (body.error?.code ?? 'INTERNAL') as ErrorCode;
    // The node refused this gateway ([node] internal-token): the deployment's fault, not the customer's.
    if (code === 'API_KEY_REQUIRED') {
      // The cause goes to the gateway's log (once per 10 s: src/http/failure-log.ts), not to the customer.
      const cause = new Error(`chat server node ${node.appDbid} (${node.url}) refused the gateway: check [node] internal-token on both`);
      throw new ParleyError('UNAVAILABLE', 'The chat server is not available; retry later.', { cause });
    }
    throw new ParleyError(code in ERRORS ? code : 'INTERNAL', body.error?.message, body.error?.details === undefined ? undefined : { details: body.error.details });
  }

  /** A node by app dbid: the registry is read again when it is not known here yet (registered since the last poll). */
  private async known(appDbid: string): Promise<NodeRecord | undefined> {
    if (this.nodes.get(appDbid) === undefined) await this.nodes.refresh();
    return this.nodes.get(appDbid);
  }

  private pool(url: string): Pool {
    let p = this.pools.get(url);
    if (p === undefined) {
      // A new address (a node restarted elsewhere): the pools of addresses no live node has any more go.
      const current = new Set(this.nodes.live().map((n) => n.url));
      for (const [old, pool] of this.pools) {
        if (current.has(old)) continue;
        this.pools.delete(old);
        void pool.close().catch(() => undefined);
      }
      p = new Pool(url, { connections: 64, pipelining: 1 });
      this.pools.set(url, p);
    }
    return p;
  }

  /** Connection pools held (one per node address in use). */
  get poolCount(): number {
    return this.pools.size;
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.pools.values()].map((p) => p.close()));
  }
}
