/**
 * Clients and checks for the soak test (test/soak.test.ts): a customer and an agent per chat, both
 * retrying statusCode 1 / NOT_OWNER / dead nodes with backoff and counting every answer; then the
 * consistency checks of the final transcripts against everything the customers, the agents and the push
 * receiver were told.
 */
import type pg from 'pg';
import { canonical, ClusterChat, indexProblems, isEnvelope, messageCounts, NodeAgent, post, SERVICE, sleep, type Cluster, type Reply, type WireEvent } from './cluster.ts';
import type { ReceivedPush } from '../receiver-fixture.ts';

/** mulberry32: a small seeded PRNG, so that a run's choices can be repeated (timing aside). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Everything the soak counted. `failures` must stay empty. */
export class SoakStats {
  /** HTTP requests made by customers and agents (every attempt). */
  ops = 0;
  /** Attempts repeated after a retryable answer or a dead node. */
  retries = 0;
  readonly retryReasons = new Map<string, number>();
  /** Domain errors that a race explains (CHAT_ENDED after a close or disconnect raced, ...). */
  readonly expected = new Map<string, number>();
  readonly failures: string[] = [];
  /** Operations that succeeded, by kind ("customer send", "agent hold", ...). */
  readonly done = new Map<string, number>();
  chatsStarted = 0;
  customerSends = 0;
  agentSends = 0;
  kills = 0;
  terminations = 0;

  bump(m: Map<string, number>, key: string): void {
    m.set(key, (m.get(key) ?? 0) + 1);
  }

  retry(reason: string): void {
    this.retries++;
    this.bump(this.retryReasons, reason);
  }

  fail(what: string): void {
    this.failures.push(what);
  }
}

export type AgentState = 'new' | 'in' | 'held' | 'gone';

/** One chat of the soak: its customer, its agent's view, and what the test did to it. */
export interface SoakChat {
  readonly id: string;
  readonly chat: ClusterChat;
  readonly agentId: 'alice' | 'bob';
  readonly asyncMode: boolean;
  /** Every event an agent API answer (200) carried, by index. */
  readonly agentTold: Map<number, WireEvent>;
  /** Contradictions between agent answers (same index, other content). */
  readonly agentConflicts: string[];
  /** Agent messages answered 200. */
  readonly agentAcked: string[];
  /** Texts (customer or agent) whose attempt got no statusCode 0 / 200: in the transcript at most once. */
  readonly unconfirmed: string[];
  /** The customer stops using the chat (disconnected, told it ended, abandoned, or the soak stopped). */
  done: boolean;
  /** Who ended it, as far as the test asked (the end is checked against the final transcript). */
  endedBy: 'customer' | 'agent' | undefined;
  /** A client was told the chat ended (CHAT_ENDED, or chatEnded: true in a reply). */
  endedSeen: boolean;
  agent: AgentState;
}

export function newSoakChat(chat: ClusterChat, agentId: 'alice' | 'bob', asyncMode: boolean): SoakChat {
  return {
    id: chat.deviceId,
    chat,
    agentId,
    asyncMode,
    agentTold: new Map(),
    agentConflicts: [],
    agentAcked: [],
    unconfirmed: [],
    done: false,
    endedBy: undefined,
    endedSeen: false,
    agent: 'new',
  };
}

/** Backoff for attempt k: 100 ms doubling up to 2 s, with jitter. */
export function backoff(k: number, random: () => number): number {
  const base = Math.min(2000, 100 * 2 ** Math.min(k, 5));
  return base / 2 + random() * (base / 2);
}

function errorCode(r: Reply): number | undefined {
  const e = (r.body as { errors?: Array<{ code?: number }> } | undefined)?.errors?.[0];
  return typeof e?.code === 'number' ? e.code : undefined;
}

const CHAT_ENDED = 106;

export interface CustomerOpOptions {
  readonly stats: SoakStats;
  readonly random: () => number;
  /** Gateway index: the next attempt goes through the next gateway. */
  gw: () => number;
  /** Give up (a failure) when statusCode 1 lasts longer. */
  readonly retryWithinMs: number;
}

/**
 * One customer operation with the latest alias and next position, through alternating gateways; statusCode
 * 1 and transport failures are retried with backoff. A `send` gets a new text per attempt (`base`, then
 * `base ~r1`, ...), so that an attempt that went through without an answer is told apart from a duplicate.
 * Returns the statusCode 0 reply, 'ended' for CHAT_ENDED (expected: a close or disconnect raced), or
 * undefined after a failure (recorded).
 */
export async function customerOp(sc: SoakChat, op: string, fields: Record<string, string | number>, o: CustomerOpOptions): Promise<Reply | 'ended' | undefined> {
  const deadline = Date.now() + o.retryWithinMs;
  for (let attempt = 0; ; attempt++) {
    const f = { ...fields };
    if (op === 'send' && typeof f['message'] === 'string' && attempt > 0) f['message'] = `${f['message']} ~r${attempt}`;
    o.stats.ops++;
    let r: Reply | undefined;
    let reason = 'customer transport';
    try {
      r = await sc.chat.op(o.gw(), op, f);
    } catch (err) {
      r = undefined;
      reason = 'customer transport';
      // The gateways never die in the soak: a gateway that does not answer is a failure, but the client
      // still retries so that the soak goes on.
      o.stats.fail(`${sc.id} ${op}: no answer from the gateway (${(err as Error).message})`);
    }
    if (r !== undefined) {
      if (!isEnvelope(r)) {
        o.stats.fail(`${sc.id} ${op}: not a Chat API envelope: HTTP ${r.status} ${r.contentType} ${r.raw.slice(0, 300)}`);
        return undefined;
      }
      const sc0 = r.body.statusCode as number;
      if (r.status >= 500 && r.status !== 503) {
        o.stats.fail(`${sc.id} ${op}: HTTP ${r.status} ${r.raw.slice(0, 300)}`);
        return undefined;
      }
      if (sc0 === 0) {
        o.stats.bump(o.stats.done, `customer ${op}`);
        if (r.body.chatEnded === true) sc.endedSeen = true;
        if (op === 'send') o.stats.customerSends++;
        return r;
      }
      if (sc0 === 2) {
        if (errorCode(r) === CHAT_ENDED) {
          sc.endedSeen = true;
          o.stats.bump(o.stats.expected, `customer ${op}: CHAT_ENDED`);
          if (op === 'send') sc.unconfirmed.push(String(f['message']));
          return 'ended';
        }
        o.stats.fail(`${sc.id} ${op}: statusCode 2: HTTP ${r.status} ${r.raw.slice(0, 300)}`);
        if (op === 'send') sc.unconfirmed.push(String(f['message']));
        return undefined;
      }
      reason = `customer ${op}: statusCode 1 (HTTP ${r.status}, code ${errorCode(r)})`;
    }
    if (op === 'send') sc.unconfirmed.push(String(f['message']));
    if (Date.now() > deadline) {
      o.stats.fail(`${sc.id} ${op}: still failing after ${o.retryWithinMs} ms: ${reason}${r === undefined ? '' : ` ${r.raw.slice(0, 300)}`}`);
      return undefined;
    }
    o.stats.retry(reason);
    await sleep(backoff(attempt, o.random));
  }
}

/**
 * Agents on the chat server nodes: logged in once per node process (tokens die with the process), routed
 * to the node that owns the chat: first the node the customer's latest alias names, after a failure the
 * owner the store names (when it runs), else any live node (which restores the session of a dead owner).
 */
export class SoakAgents {
  private readonly logins = new Map<string, Promise<NodeAgent>>();
  private db: pg.Client | undefined;

  constructor(
    private readonly cluster: () => Cluster,
    private readonly stats: SoakStats,
    private readonly random: () => number,
    private readonly retryWithinMs: number,
  ) {}

  async close(): Promise<void> {
    await this.db?.end().catch(() => undefined);
    this.db = undefined;
  }

  private liveUrl(dbid: string | undefined): string | undefined {
    if (dbid === undefined) return undefined;
    const p = this.cluster().nodes.get(dbid);
    return p !== undefined && p.exit === undefined ? p.url : undefined;
  }

  private async owner(chatId: string): Promise<string | undefined> {
    try {
      this.db ??= await this.cluster().pgClient();
      const r = await this.db.query<{ owner: string }>('SELECT owner FROM sessions WHERE chat_id = $1', [chatId]);
      return r.rows[0]?.owner;
    } catch {
      await this.close();
      return undefined;
    }
  }

  private async route(sc: SoakChat, attempt: number): Promise<string | undefined> {
    if (attempt === 0) {
      const byAlias = this.liveUrl(sc.chat.alias);
      if (byAlias !== undefined) return byAlias;
    }
    const byOwner = this.liveUrl(await this.owner(sc.chat.chatId));
    if (byOwner !== undefined) return byOwner;
    const live = this.cluster().liveDbids();
    return this.liveUrl(live[Math.floor(this.random() * live.length)]);
  }

  private at(url: string, agentId: 'alice' | 'bob'): Promise<NodeAgent> {
    const key = `${agentId} ${url}`;
    let a = this.logins.get(key);
    if (a === undefined) {
      const agent = new NodeAgent(url, agentId, agentId === 'alice' ? 'alice-secret' : 'bob-secret-1');
      a = agent.login().then(() => agent);
      a.catch(() => this.logins.delete(key));
      this.logins.set(key, a);
    }
    return a;
  }

  /**
   * One agent action on the chat. Returns 'ok' (200; or, after an attempt that may have gone through
   * without an answer, the error that its success explains), 'ended' (CHAT_ENDED: a disconnect or close
   * raced), or 'failed' (recorded).
   */
  async act(sc: SoakChat, action: 'accept' | 'resume' | 'send' | 'typing' | 'hold' | 'close', body: Record<string, unknown> = {}): Promise<'ok' | 'ended' | 'failed'> {
    const deadline = Date.now() + this.retryWithinMs;
    /** An earlier attempt may have been applied (the node died or the connection broke before the answer). */
    let ambiguous = false;
    for (let attempt = 0; ; attempt++) {
      const b = { ...body };
      if (action === 'send' && typeof b['text'] === 'string' && attempt > 0) b['text'] = `${b['text']} ~r${attempt}`;
      let reason = 'agent transport';
      const url = await this.route(sc, attempt);
      if (url === undefined) {
        reason = 'agent: no live node';
      } else {
        this.stats.ops++;
        let res: { status: number; body: unknown } | undefined;
        try {
          const agent = await this.at(url, sc.agentId);
          res = await agent.call('POST', `chats/${encodeURIComponent(sc.chat.chatId)}/${action}`, b);
        } catch (err) {
          res = undefined;
          ambiguous = true;
          reason = `agent transport (${(err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name})`;
        }
        if (res !== undefined) {
          const code = (res.body as { error?: { code?: string } } | undefined)?.error?.code;
          if (res.status === 200) {
            this.stats.bump(this.stats.done, `agent ${action}`);
            this.record(sc, res.body);
            if (action === 'send') {
              sc.agentAcked.push(String(b['text']));
              this.stats.agentSends++;
            }
            return 'ok';
          }
          if (code === undefined) {
            this.stats.fail(`${sc.id} agent ${action}: HTTP ${res.status} without an error body: ${JSON.stringify(res.body).slice(0, 300)}`);
            if (action === 'send') sc.unconfirmed.push(String(b['text']));
            return 'failed';
          }
          if (code === 'CHAT_ENDED') {
            sc.endedSeen = true;
            this.stats.bump(this.stats.expected, `agent ${action}: CHAT_ENDED`);
            if (action === 'send') sc.unconfirmed.push(String(b['text']));
            return 'ended';
          }
          if (ambiguous && code === 'AGENT_NOT_IN_CHAT' && action === 'hold') {
            // The hold went through on a node that died before answering: the agent is out already.
            this.stats.bump(this.stats.expected, `agent hold retried: AGENT_NOT_IN_CHAT`);
            return 'ok';
          }
          if (code === 'AGENT_AUTH_FAILED') {
            // A new process behind an old URL: log in again.
            this.logins.delete(`${sc.agentId} ${url}`);
            reason = 'agent: token of a previous process';
          } else if (code === 'NOT_OWNER' || code === 'UNAVAILABLE' || code === 'AGENT_CAPACITY') {
            reason = `agent ${action}: ${code}`;
          } else {
            this.stats.fail(`${sc.id} agent ${action} at ${url}: HTTP ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`);
            if (action === 'send') sc.unconfirmed.push(String(b['text']));
            return 'failed';
          }
        }
      }
      if (action === 'send') sc.unconfirmed.push(String(b['text']));
      if (Date.now() > deadline) {
        this.stats.fail(`${sc.id} agent ${action}: still failing after ${this.retryWithinMs} ms: ${reason}`);
        return 'failed';
      }
      this.stats.retry(reason);
      await sleep(backoff(attempt, this.random));
    }
  }

  /** An agent answer's events are told to the agent: remember them by index, flag contradictions. */
  private record(sc: SoakChat, body: unknown): void {
    const events = (body as { events?: WireEvent[] } | undefined)?.events ?? [];
    for (const ev of events) {
      const before = sc.agentTold.get(ev.index);
      if (before === undefined) sc.agentTold.set(ev.index, ev);
      else if (canonical(before) !== canonical(ev)) sc.agentConflicts.push(`agent told index ${ev.index}: ${canonical(before)} then ${canonical(ev)}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// The checks at the end.

export interface FinalTranscript {
  readonly reply: Reply;
  readonly messages: WireEvent[];
}

/** The whole transcript (refresh from position 1 with the session's secureKey) through gateway `gw`. */
export async function fetchTranscript(c: Cluster, sc: SoakChat, gw: number, withinMs: number): Promise<FinalTranscript | string> {
  const deadline = Date.now() + withinMs;
  let last = '';
  for (let attempt = 0; ; attempt++) {
    try {
      const r = await post(`${c.gateway(gw + attempt)}/genesys/2/chat/${SERVICE}/${encodeURIComponent(sc.chat.chatId)}/refresh`, {
        secureKey: sc.chat.secureKey,
        userId: sc.chat.userId,
        alias: sc.chat.alias,
        transcriptPosition: 1,
      });
      if (r.body?.statusCode === 0 && Array.isArray(r.body.messages)) return { reply: r, messages: r.body.messages as WireEvent[] };
      last = `HTTP ${r.status} ${r.raw.slice(0, 300)}`;
      if (r.body?.statusCode !== 1) return `final refresh of ${sc.id} (${sc.chat.chatId}): ${last}`;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > deadline) return `final refresh of ${sc.id} (${sc.chat.chatId}) kept failing: ${last}`;
    await sleep(Math.min(2000, 100 * 2 ** attempt));
  }
}

const isAdvice = (m: WireEvent): boolean => m.type === 'ParticipantLeft' && m.from.participantId === 1 && m.userData?.['quit-reason-advice'] === 'reconnect';

export interface TranscriptProblems {
  /** (1) indices 1..n once each, nextPosition n+1. */
  readonly indices: string[];
  /** (2) every event a customer or agent answer carried is there at its index, unchanged. */
  readonly told: string[];
  /** (3) every acknowledged message exactly once; no text twice; an unconfirmed attempt at most once. */
  readonly messages: string[];
  /** The end of the chat agrees with what the clients were told and did. */
  readonly end: string[];
}

export function noTranscriptProblems(): TranscriptProblems {
  return { indices: [], told: [], messages: [], end: [] };
}

/** Adds the problems of one chat's final transcript to `p`. */
export function checkTranscript(sc: SoakChat, t: FinalTranscript, p: TranscriptProblems): void {
  const who = `${sc.id} (${sc.chat.chatId})`;
  const msgs = t.messages;
  for (const x of indexProblems(msgs)) p.indices.push(`${who}: ${x}`);
  if (t.reply.body.nextPosition !== msgs.length + 1) p.indices.push(`${who}: nextPosition ${t.reply.body.nextPosition} for ${msgs.length} events`);
  const told: Array<[string, ReadonlyMap<number, WireEvent>]> = [
    ['customer', sc.chat.events],
    ['agent', sc.agentTold],
  ];
  for (const [by, events] of told) {
    for (const [index, ev] of events) {
      const now = msgs[index - 1];
      if (now === undefined || canonical(now) !== canonical(ev)) {
        p.told.push(`${who}: the ${by} was told index ${index} = ${canonical(ev)}; the transcript has ${now === undefined ? 'nothing' : canonical(now)}`);
      }
    }
  }
  for (const x of [...sc.chat.conflicts, ...sc.agentConflicts]) p.told.push(`${who}: ${x}`);
  const counts = messageCounts(msgs);
  for (const text of [...sc.chat.acked, ...sc.agentAcked]) {
    const n = counts.get(text) ?? 0;
    if (n !== 1) p.messages.push(`${who}: acknowledged message "${text}" is in the transcript ${n} times`);
  }
  for (const [text, n] of counts) if (n > 1) p.messages.push(`${who}: "${text}" is in the transcript ${n} times`);
  const ended = t.reply.body.chatEnded === true;
  if (sc.endedSeen && !ended) p.end.push(`${who}: a client was told the chat ended; the final refresh says chatEnded false`);
  if (ended && sc.endedBy === undefined) p.end.push(`${who}: the chat ended though nobody ended it: ${canonical(msgs.slice(-3))}`);
}

/** Unconfirmed attempts (no statusCode 0 / 200) that are in the transcript nevertheless (once). */
export function appliedUnconfirmed(sc: SoakChat, t: FinalTranscript): string[] {
  const counts = messageCounts(t.messages);
  return sc.unconfirmed.filter((text) => (counts.get(text) ?? 0) > 0);
}

export interface PushCheck {
  readonly problems: string[];
  /** Pushes carrying the reconnect advice of a planned shutdown. */
  readonly advice: number;
  /** Pushes to sessions whose Request Chat got no answer (created by an attempt that looked failed). */
  readonly orphan: number;
  /** Pushes checked against a transcript. */
  readonly checked: number;
}

/**
 * (4) Every push the receiver got for a session carries events consistent with the final transcript: the
 * same index holds the same event. The shutdown advice is no transcript event (it carries the last index
 * at its time, by design, docs/push.md); it must point into the transcript.
 */
export function pushProblems(pushes: readonly ReceivedPush[], byDevice: ReadonlyMap<string, SoakChat>, orphans: ReadonlySet<string>, finals: ReadonlyMap<SoakChat, FinalTranscript>): PushCheck {
  const problems: string[] = [];
  let advice = 0;
  let orphan = 0;
  let checked = 0;
  for (const [i, push] of pushes.entries()) {
    const body = push.body as { deviceId?: string; data?: { chatId?: string; messages?: WireEvent[]; nextPosition?: number; chatEnded?: boolean } } | undefined;
    const what = `push #${i} to ${body?.deviceId}`;
    const messages = body?.data?.messages;
    if (body?.data === undefined || !Array.isArray(messages)) {
      problems.push(`${what}: no payload: ${push.raw.slice(0, 300)}`);
      continue;
    }
    const adviceOnly = messages.length > 0 && messages.every(isAdvice);
    if (adviceOnly) advice++;
    const sc = body.deviceId === undefined ? undefined : byDevice.get(body.deviceId);
    if (sc === undefined || body.data.chatId !== sc.chat.chatId) {
      if (body.deviceId !== undefined && (orphans.has(body.deviceId) || sc !== undefined) && adviceOnly) {
        orphan++;
        continue;
      }
      problems.push(`${what}: for a session no client knows (${body.data.chatId}): ${push.raw.slice(0, 300)}`);
      continue;
    }
    const t = finals.get(sc);
    if (t === undefined) continue; // its transcript could not be fetched: reported there
    checked++;
    const n = t.messages.length;
    for (const m of messages) {
      if (isAdvice(m)) {
        if (!(m.index >= 1 && m.index <= n)) problems.push(`${what}: reconnect advice with index ${m.index}, transcript has ${n} events`);
        if (body.data.chatEnded !== false) problems.push(`${what}: reconnect advice with chatEnded ${body.data.chatEnded}`);
        continue;
      }
      const now = t.messages[m.index - 1];
      if (now === undefined || canonical(now) !== canonical(m)) {
        problems.push(`${what} (${sc.chat.chatId}): pushed index ${m.index} = ${canonical(m)}; the transcript has ${now === undefined ? 'nothing' : canonical(now)}`);
      }
    }
    const np = body.data.nextPosition;
    const top = Math.max(0, ...messages.filter((m) => !isAdvice(m)).map((m) => m.index));
    if (typeof np !== 'number' || np > n + 1 || np < top + 1) problems.push(`${what} (${sc.chat.chatId}): nextPosition ${np} (events up to ${top}, transcript ${n})`);
  }
  return { problems, advice, orphan, checked };
}
