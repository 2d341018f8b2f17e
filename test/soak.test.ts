/**
 * Soak: mixed Chat API v2 and agent traffic with push on a real cluster (PostgreSQL, chat servers 201..203,
 * 2 gateways, the fake push receiver, all on 127.0.0.1) for SOAK_SECONDS (default 30; `npm run soak` runs
 * 180), while one chat server is killed (SIGKILL) at about a third and restarted 2 s later under the same
 * app dbid, and another is stopped (SIGTERM, shutdown-notify-flex-push = 1) at about two thirds and
 * restarted. Then every transcript is checked against everything the clients were told.
 *
 * Traffic (bounded: CUSTOMERS customer loops, one agent loop per open chat):
 * - customers start push-subscribed chats (GCTI_GMS_PushResend, payload included; half of them async),
 *   send messages, type, refresh from their last nextPosition, always with their latest alias and through
 *   alternating gateways; most disconnect after a while, some abandon the chat; a new chat follows;
 * - agents (alice on even loops, bob on odd) on the node that owns the chat accept, reply, type, hold and
 *   resume async chats, and close some;
 * - statusCode 1 (and, for agents, NOT_OWNER, UNAVAILABLE or a dead node) is retried with backoff; a statusCode
 *   2, a body that is no envelope or a 5xx other than 503 is a failure unless a race explains it (CHAT_ENDED
 *   after a close or disconnect raced: counted, and checked against the final transcript).
 *
 * Checks, per chat, on the full transcript (refresh from position 1 with the secureKey, through both
 * gateways, which must agree): (1) indices 1..n; (2) every event any answer told a customer or an agent is
 * there at that index, unchanged; (3) every message answered statusCode 0 / 200 exactly once (a retried
 * attempt has its own text, so a duplicate is the server's); (4) every push the receiver got for the session
 * agrees with the transcript (same index, same event).
 *
 * SOAK_SEED fixes the random choices (timing aside); SOAK_VERBOSE=1 prints the counters by reason.
 */
import { describe, expect, it } from 'vitest';
import { canonical, ClusterChat, isEnvelope, sleep, useCluster, type Reply } from './support/cluster.ts';
import {
  appliedUnconfirmed,
  backoff,
  checkTranscript,
  customerOp,
  fetchTranscript,
  newSoakChat,
  noTranscriptProblems,
  pushProblems,
  seededRandom,
  SoakAgents,
  SoakStats,
  type CustomerOpOptions,
  type FinalTranscript,
  type PushCheck,
  type SoakChat,
  type TranscriptProblems,
} from './support/soak-clients.ts';

const SOAK_SECONDS = Number(process.env['SOAK_SECONDS'] ?? '30');
if (!Number.isFinite(SOAK_SECONDS) || SOAK_SECONDS < 9) throw new Error(`SOAK_SECONDS must be a number >= 9, got ${process.env['SOAK_SECONDS']}`);
const SOAK_MS = SOAK_SECONDS * 1000;
const SEED = Number(process.env['SOAK_SEED'] ?? String(Date.now() % 2 ** 31));
const VERBOSE = process.env['SOAK_VERBOSE'] === '1';
/** Customer loops (and at most as many agent loops). */
const CUSTOMERS = 20;
/** How long one operation retries statusCode 1 before it counts as failed (a node death takes seconds). */
const RETRY_WITHIN_MS = 45_000;
/** Settling (the last retries), waiting for the gateways, fetching every transcript twice. */
const SETTLE_MS = 100_000;

const cluster = useCluster({ chatServers: 3, gateways: 2, extraIni: '[settings]\nshutdown-notify-flex-push = 1\n' });

/** What the soak collected; the checks below read it. */
interface SoakResult {
  readonly stats: SoakStats;
  readonly chats: SoakChat[];
  readonly finals: Map<SoakChat, FinalTranscript>;
  readonly fetchProblems: string[];
  readonly transcripts: TranscriptProblems;
  readonly pushes: PushCheck;
  readonly pushesReceived: number;
  readonly ghosts: string[];
  readonly faults: string[];
  readonly seconds: number;
}

let result: SoakResult | undefined;

function soaked(): SoakResult {
  if (result === undefined) throw new Error('the soak did not run to its end (see the first test)');
  return result;
}

/** At most `n` lines of a list, for a failure message. */
function head(list: readonly string[], n = 25): string {
  return `${list.length} problem(s):\n${list.slice(0, n).join('\n')}${list.length > n ? `\n... and ${list.length - n} more` : ''}`;
}

describe(`soak: ${SOAK_SECONDS} s of mixed traffic with push through a SIGKILL and a SIGTERM`, () => {
  it('runs the traffic and the faults, then fetches every transcript', { timeout: SOAK_MS + SETTLE_MS + 30_000 }, async () => {
    const c = cluster();
    const random = seededRandom(SEED);
    const stats = new SoakStats();
    const agents = new SoakAgents(cluster, stats, random, RETRY_WITHIN_MS);
    const chats: SoakChat[] = [];
    const byDevice = new Map<string, SoakChat>();
    /** Devices of Request Chat attempts without a statusCode 0 answer (a session may exist nevertheless). */
    const orphans = new Set<string>();
    const faults: string[] = [];
    let gwNext = 0;
    let stopping = false;
    const t0 = Date.now();
    const opts: CustomerOpOptions = { stats, random, gw: () => gwNext++, retryWithinMs: RETRY_WITHIN_MS };
    const pause = (lo: number, hi: number) => sleep(lo + random() * (hi - lo));

    async function startChat(slot: number, n: number): Promise<SoakChat | undefined> {
      const deadline = Date.now() + RETRY_WITHIN_MS;
      for (let attempt = 0; !stopping; attempt++) {
        const asyncMode = random() < 0.5;
        const chat = new ClusterChat(cluster, `soak-s${slot}-c${n}${attempt === 0 ? '' : `-a${attempt}`}`);
        stats.ops++;
        let r: Reply | undefined;
        let reason = 'request chat: transport';
        try {
          r = await chat.start(opts.gw(), { 'userData[GCTI_GMS_PushIncludePayload]': 'true', ...(asyncMode ? { 'userData[GCTI_Chat_AsyncMode]': 'true' } : {}) });
        } catch (err) {
          orphans.add(chat.deviceId);
          stats.fail(`${chat.deviceId} request chat: no answer from the gateway (${(err as Error).message})`);
        }
        if (r !== undefined) {
          if (!isEnvelope(r) || (r.status >= 500 && r.status !== 503) || r.body.statusCode === 2) {
            stats.fail(`${chat.deviceId} request chat: HTTP ${r.status} ${r.contentType} ${r.raw.slice(0, 300)}`);
            return undefined;
          }
          if (r.body.statusCode === 0) {
            const sc = newSoakChat(chat, slot % 2 === 0 ? 'alice' : 'bob', asyncMode);
            chats.push(sc);
            byDevice.set(chat.deviceId, sc);
            stats.chatsStarted++;
            return sc;
          }
          // statusCode 1: the gateway tried several nodes; one of them may have created the session.
          orphans.add(chat.deviceId);
          reason = `request chat: statusCode 1 (HTTP ${r.status})`;
        }
        if (Date.now() > deadline) {
          stats.fail(`${chat.deviceId} request chat: still failing after ${RETRY_WITHIN_MS} ms: ${reason}`);
          return undefined;
        }
        stats.retry(reason);
        await sleep(backoff(attempt, random));
      }
      return undefined;
    }

    async function agentLoop(sc: SoakChat): Promise<void> {
      await pause(200, 1500);
      if (stopping || sc.done) return;
      let r = await agents.act(sc, 'accept');
      if (r !== 'ok') {
        sc.agent = 'gone';
        return;
      }
      sc.agent = 'in';
      let sent = 0;
      while (!stopping && !sc.done) {
        await pause(300, 1200);
        if (stopping || sc.done) break;
        const x = random();
        if (sc.agent === 'held') {
          if (x >= 0.5) continue;
          r = await agents.act(sc, 'resume');
          if (r === 'ok') sc.agent = 'in';
        } else if (x < 0.55) {
          r = await agents.act(sc, 'send', { text: `agent ${sc.agentId} ${sc.id} #${sent++}` });
        } else if (x < 0.7) {
          r = await agents.act(sc, 'typing', { typing: true, text: 'let me check' });
          if (r === 'ok') r = await agents.act(sc, 'typing', { typing: false });
        } else if (x < 0.8 && sc.asyncMode) {
          r = await agents.act(sc, 'hold');
          if (r === 'ok') sc.agent = 'held';
        } else if (x < 0.85 && sent >= 3) {
          sc.endedBy ??= 'agent';
          r = await agents.act(sc, 'close');
          if (r === 'ok') {
            sc.agent = 'gone';
            return;
          }
        } else {
          continue;
        }
        if (r !== 'ok') break;
      }
    }

    async function customerLoop(slot: number): Promise<void> {
      for (let n = 0; !stopping; n++) {
        const sc = await startChat(slot, n);
        if (sc === undefined) {
          await pause(500, 1000);
          continue;
        }
        const agent = agentLoop(sc);
        const budget = 6 + Math.floor(random() * 24);
        for (let k = 0; k < budget && !stopping && !sc.done; k++) {
          await pause(150, 600);
          if (stopping) break;
          const x = random();
          let r: Reply | 'ended' | undefined;
          if (x < 0.45) {
            r = await customerOp(sc, 'send', { message: `customer ${sc.id} #${k}` }, opts);
          } else if (x < 0.6) {
            r = await customerOp(sc, 'startTyping', { message: `draft ${k}` }, opts);
            if (r !== undefined && r !== 'ended' && r.body.chatEnded !== true) {
              await pause(50, 200);
              r = await customerOp(sc, 'stopTyping', {}, opts);
            }
          } else {
            r = await customerOp(sc, 'refresh', {}, opts);
          }
          if (r === 'ended' || (r !== undefined && r.body.chatEnded === true)) sc.done = true;
        }
        if (!sc.done && !stopping) {
          if (random() < 0.8) {
            sc.endedBy ??= 'customer';
            await customerOp(sc, 'disconnect', {}, opts);
          } else {
            stats.bump(stats.expected, 'customer abandoned a chat (left open)');
          }
        }
        sc.done = true;
        await agent;
      }
    }

    /** The alias with the most open chats of this soak, among the running nodes. */
    function busiest(except?: string): string {
      const counts = new Map(c.liveDbids().filter((d) => d !== except).map((d) => [d, 0] as [string, number]));
      for (const sc of chats) if (!sc.done && counts.has(sc.chat.alias)) counts.set(sc.chat.alias, (counts.get(sc.chat.alias) ?? 0) + 1);
      const best = [...counts].sort((a, b) => b[1] - a[1])[0];
      if (best === undefined) throw new Error('no running chat server');
      return best[0];
    }

    async function runFaults(): Promise<void> {
      await sleep(Math.max(0, t0 + SOAK_MS / 3 - Date.now()));
      const victim = busiest();
      const killed = await c.kill(victim);
      stats.kills++;
      faults.push(`t=${((Date.now() - t0) / 1000).toFixed(1)}s SIGKILL ${victim}: ${killed.signal}`);
      if (killed.signal !== 'SIGKILL') stats.fail(`node ${victim} was to die by SIGKILL: ${JSON.stringify(killed)}`);
      await sleep(2000);
      await c.restart(victim);
      faults.push(`t=${((Date.now() - t0) / 1000).toFixed(1)}s restarted ${victim}`);

      await sleep(Math.max(0, t0 + (2 * SOAK_MS) / 3 - Date.now()));
      const other = busiest(victim);
      const node = c.nodes.get(other);
      const health = node === undefined ? undefined : ((await (await fetch(`${node.url}/health`)).json()) as { flex_users?: number });
      const stopped = await c.terminate(other);
      stats.terminations++;
      faults.push(`t=${((Date.now() - t0) / 1000).toFixed(1)}s SIGTERM ${other} (flex users ${health?.flex_users}): exit ${JSON.stringify(stopped)}`);
      if (stopped.code !== 0 || stopped.signal !== null) stats.fail(`node ${other} should exit 0 on SIGTERM: ${JSON.stringify(stopped)}\n${node?.output().slice(-2000)}`);
      await c.restart(other);
      faults.push(`t=${((Date.now() - t0) / 1000).toFixed(1)}s restarted ${other}`);
    }

    const faulting = runFaults();
    faulting.catch(() => undefined); // awaited below; no unhandled rejection while the traffic runs
    const loops = Array.from({ length: CUSTOMERS }, (_, slot) => customerLoop(slot));
    let stoppedAt: number;
    try {
      await sleep(SOAK_MS);
      stopping = true;
      stoppedAt = Date.now();
      // Let the operations in flight finish their retries, and the faults their restarts.
      await Promise.all([faulting, ...loops]);
    } finally {
      // Also when a fault failed: the loops stop instead of running on against a dead cluster.
      stopping = true;
      await agents.close();
    }
    await c.waitForGateways(['201', '202', '203'], 30_000);
    const settleMs = Date.now() - stoppedAt;

    // The full transcript of every chat, through both gateways (they must agree).
    const finals = new Map<SoakChat, FinalTranscript>();
    const fetchProblems: string[] = [];
    const ghosts: string[] = [];
    const transcripts = noTranscriptProblems();
    for (let i = 0; i < chats.length; i += CUSTOMERS) {
      await Promise.all(
        chats.slice(i, i + CUSTOMERS).map(async (sc, j) => {
          const [a, b] = await Promise.all([fetchTranscript(c, sc, j, 30_000), fetchTranscript(c, sc, j + 1, 30_000)]);
          if (typeof a === 'string') return void fetchProblems.push(a);
          if (typeof b === 'string') return void fetchProblems.push(b);
          if (canonical(a.messages) !== canonical(b.messages) || a.reply.body.chatEnded !== b.reply.body.chatEnded) {
            fetchProblems.push(`${sc.id} (${sc.chat.chatId}): the gateways answer different transcripts:\n${a.reply.raw.slice(0, 1000)}\n${b.reply.raw.slice(0, 1000)}`);
          }
          finals.set(sc, a);
          checkTranscript(sc, a, transcripts);
          for (const text of appliedUnconfirmed(sc, a)) ghosts.push(`${sc.id}: "${text}"`);
        }),
      );
    }
    const pushesReceived = c.receiver.received.length;
    const pushes = pushProblems(c.receiver.received.slice(), byDevice, orphans, finals);
    const seconds = (Date.now() - t0) / 1000;
    result = { stats, chats, finals, fetchProblems, transcripts, pushes, pushesReceived, ghosts, faults, seconds };

    const expected = [...stats.expected.values()].reduce((a, b) => a + b, 0);
    console.log(
      `soak: ${SOAK_SECONDS}s window, seed ${SEED}: ${stats.ops} operations (${stats.chatsStarted} chats, ${stats.customerSends} customer + ${stats.agentSends} agent messages acknowledged), ` +
        `${stats.retries} retries, ${expected} expected domain errors, ${stats.failures.length} failures, kills: ${stats.kills} SIGKILL + ${stats.terminations} SIGTERM, ` +
        `${pushesReceived} pushes received (${pushes.checked} checked, ${pushes.advice} reconnect advice), settle ${(settleMs / 1000).toFixed(1)}s, duration ${seconds.toFixed(1)}s`,
    );
    if (VERBOSE) {
      console.log(`soak faults: ${faults.join('; ')}`);
      console.log(`soak operations done: ${JSON.stringify(Object.fromEntries(stats.done))}`);
      const told = chats.reduce((a, sc) => a + sc.chat.events.size, 0);
      const agentTold = chats.reduce((a, sc) => a + sc.agentTold.size, 0);
      console.log(`soak events told: ${told} to customers, ${agentTold} to agents; transcripts: ${[...finals.values()].reduce((a, t) => a + t.messages.length, 0)} events`);
      console.log(`soak retries by reason: ${JSON.stringify(Object.fromEntries(stats.retryReasons))}`);
      console.log(`soak expected: ${JSON.stringify(Object.fromEntries(stats.expected))}`);
      console.log(`soak unconfirmed attempts applied nevertheless: ${ghosts.length}${ghosts.length === 0 ? '' : ` (${ghosts.slice(0, 10).join(', ')})`}`);
    }

    expect(stats.kills, faults.join('\n')).toBe(1);
    expect(stats.terminations, faults.join('\n')).toBe(1);
    expect(stats.chatsStarted).toBeGreaterThanOrEqual(CUSTOMERS);
    expect(stats.customerSends).toBeGreaterThan(0);
    expect(stats.agentSends).toBeGreaterThan(0);
    expect(fetchProblems, head(fetchProblems)).toEqual([]);
  });

  it('no request failed: statusCode 1 was retried until it succeeded; no statusCode 2, 5xx or non-envelope a race does not explain', () => {
    const { stats } = soaked();
    expect(stats.failures, head(stats.failures)).toEqual([]);
  });

  it('(1) every transcript has indices 1..n without gaps or duplicates', () => {
    const { transcripts } = soaked();
    expect(transcripts.indices, head(transcripts.indices)).toEqual([]);
  });

  it('(2) every event an answer told a customer or an agent is in the transcript at that index, unchanged', () => {
    const { transcripts } = soaked();
    expect(transcripts.told, head(transcripts.told)).toEqual([]);
  });

  it('(3) every message answered statusCode 0 (or 200 to the agent) is in the transcript exactly once', () => {
    const { transcripts } = soaked();
    expect(transcripts.messages, head(transcripts.messages)).toEqual([]);
  });

  it('the end of every chat agrees with what the clients were told and did', () => {
    const { transcripts } = soaked();
    expect(transcripts.end, head(transcripts.end)).toEqual([]);
  });

  it('(4) every push the receiver got agrees with the final transcript of its session', () => {
    const { pushes } = soaked();
    expect(pushes.problems, head(pushes.problems)).toEqual([]);
    expect(pushes.checked).toBeGreaterThan(0);
    // The SIGTERMed node advised its push-subscribed sessions to reconnect.
    expect(pushes.advice).toBeGreaterThan(0);
  });
});
