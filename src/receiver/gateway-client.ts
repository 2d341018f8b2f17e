/**
 * The receiver's Chat API v2 client for the gateway: form-encoded POSTs over one undici Pool, replies
 * parsed as the standard envelope. Transport failures and 5xx become a retryable error.
 */
import { Pool } from 'undici';
import type { ReplyMessage } from '../chat/types.ts';
import { ParleyError } from '../errors.ts';

export interface ChatReply {
  readonly statusCode: 0 | 1 | 2;
  readonly chatId?: string;
  readonly userId?: string;
  readonly secureKey?: string;
  readonly alias?: string;
  readonly chatEnded: boolean;
  readonly nextPosition?: number;
  readonly messages: readonly ReplyMessage[];
  readonly userData?: Readonly<Record<string, string>>;
  readonly errors?: ReadonlyArray<{ code: number; advice: string }>;
}

export interface Tokens {
  readonly chatId: string;
  readonly userId: string;
  readonly secureKey: string;
  readonly alias: string;
}

export class GatewayClient {
  private readonly pool: Pool;
  private readonly base: string;

  constructor(
    gatewayUrl: string,
    private readonly serviceName: string,
    private readonly opts: { timeoutMs: number; apiKey?: string } = { timeoutMs: 10_000 },
  ) {
    const u = new URL(gatewayUrl);
    this.pool = new Pool(u.origin, { connections: 64, pipelining: 1 });
    this.base = `${u.pathname.replace(/\/$/, '')}/genesys/2/chat/${encodeURIComponent(serviceName)}`;
  }

  get service(): string {
    return this.serviceName;
  }

  requestChat(fields: Record<string, string>): Promise<ChatReply> {
    return this.post(this.base, fields);
  }

  /** `{chatId}/{operation}` with the session's tokens. */
  operate(t: Tokens, operation: string, fields: Record<string, string | number> = {}): Promise<ChatReply> {
    return this.post(`${this.base}/${encodeURIComponent(t.chatId)}/${operation}`, {
      secureKey: t.secureKey,
      userId: t.userId,
      alias: t.alias,
      ...Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, String(v)])),
    });
  }

  /** Uploads a file with the session's tokens (multipart, part "file"). */
  async upload(
    t: Tokens,
    file: { fileName: string; contentType: string; bytes: Buffer },
    description: string | undefined,
    transcriptPosition: number,
  ): Promise<{ status: number; reply: ChatReply }> {
    const boundary = `----parley${Math.random().toString(16).slice(2)}${Date.now().toString(16)}`;
    const fields: Record<string, string> = { secureKey: t.secureKey, userId: t.userId, alias: t.alias, transcriptPosition: String(transcriptPosition) };
    if (description !== undefined && description !== '') fields['userData[file-description]'] = description;
    const parts: Buffer[] = [];
    for (const [k, v] of Object.entries(fields)) {
      parts.push(Buffer.from(`--${boundary}\r\ncontent-disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`));
    }
    const name = file.fileName.replace(/["\r\n]/g, '_');
    parts.push(Buffer.from(`--${boundary}\r\ncontent-disposition: form-data; name="file"; filename="${name}"\r\ncontent-type: ${file.contentType}\r\n\r\n`));
    parts.push(file.bytes, Buffer.from(`\r\n--${boundary}--\r\n`));
    const res = await this.send(`${this.base}/${encodeURIComponent(t.chatId)}/file`, Buffer.concat(parts), `multipart/form-data; boundary=${boundary}`);
    return { status: res.status, reply: res.json };
  }

  /** The file bytes, content type and disposition, or the error envelope. */
  async download(t: Tokens, fileId: string): Promise<{ status: number; headers: Record<string, string>; body: Buffer }> {
    const form = new URLSearchParams({ secureKey: t.secureKey, userId: t.userId, alias: t.alias }).toString();
    try {
      const res = await this.pool.request({
        method: 'POST',
        path: `${this.base}/${encodeURIComponent(t.chatId)}/file/${encodeURIComponent(fileId)}/download`,
        headers: this.headers('application/x-www-form-urlencoded'),
        body: form,
        headersTimeout: this.opts.timeoutMs,
        bodyTimeout: this.opts.timeoutMs,
      });
      const body = Buffer.from(await res.body.arrayBuffer());
      const headers: Record<string, string> = {};
      for (const k of ['content-type', 'content-disposition']) {
        const v = res.headers[k];
        if (typeof v === 'string') headers[k] = v;
      }
      return { status: res.statusCode, headers, body };
    } catch (err) {
      throw new ParleyError('UNAVAILABLE', 'The chat gateway is not reachable.', { cause: err });
    }
  }

  private async post(path: string, fields: Record<string, string>): Promise<ChatReply> {
    const res = await this.send(path, new URLSearchParams(fields).toString(), 'application/x-www-form-urlencoded');
    return res.json;
  }

  private headers(contentType: string): Record<string, string> {
    const h: Record<string, string> = { 'content-type': contentType };
    if (this.opts.apiKey !== undefined && this.opts.apiKey !== '') h['x-api-key'] = this.opts.apiKey;
    return h;
  }

  private async send(path: string, body: string | Buffer, contentType: string): Promise<{ status: number; json: ChatReply }> {
    let status: number;
    let text: string;
    try {
      const res = await this.pool.request({
        method: 'POST',
        path,
        headers: this.headers(contentType),
        body,
        headersTimeout: this.opts.timeoutMs,
        bodyTimeout: this.opts.timeoutMs,
      });
      status = res.statusCode;
      text = await res.body.text();
    } catch (err) {
      throw new ParleyError('UNAVAILABLE', 'The chat gateway is not reachable.', { cause: err });
    }
    let json: ChatReply;
    try {
      json = JSON.parse(text) as ChatReply;
    } catch {
      throw new ParleyError('UNAVAILABLE', `The chat gateway answered ${status} without a Chat API v2 body.`);
    }
    if (status >= 500 || json.statusCode === 1) {
      throw new ParleyError('UNAVAILABLE', json.errors?.[0]?.advice ?? `The chat gateway answered ${status}.`);
    }
    return { status, json };
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}
