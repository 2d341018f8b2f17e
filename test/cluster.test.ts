/**
 * The cluster (Genesys Chat Server N+1 mode): real `parley chat-server` and `parley gateway` processes on
 * one PostgreSQL, with a fake push receiver. Nodes die (SIGKILL), stop in order (SIGTERM), restart with the
 * same app dbid; PostgreSQL restarts under load. Customers keep going with whatever alias they have, through
 * any gateway; nothing they were told is lost or told twice.
 *
 * One cluster (chat servers 201..203, 2 gateways) serves the whole file. Each test starts its own chat
 * sessions after `heal()`: a node that died in an earlier test is replaced by one with a fresh app dbid
 * (204, ...), so that there are always 3 running.
 */
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { beforeEach, describe, expect, it } from 'vitest';
import {
  AgentPool,
  canonical,
  ClusterChat,
  gatewayHealth,
  indexProblems,
  isEnvelope,
  messageCounts,
  sleep,
  useCluster,
  waitUntil,
  type Cluster,
  type Reply,
  type WireEvent,
} from './support/cluster.ts';

const cluster = useCluster({ chatServers: 3, gateways: 2, extraIni: '[settings]\nshutdown-notify-flex-push = 1\n' });

beforeEach(async () => {
  await cluster().heal();
}, 30_000);

/** Request Chat for `n` customers, through alternating gateways; every one answered statusCode 0. */
async function startChats(n: number, label: string): Promise<ClusterChat[]> {
  const chats = Array.from({ length: n }, (_, i) => new ClusterChat(cluster, `${label}-${i}`));
  const replies = await Promise.all(chats.map((c, i) => c.start(i)));
  for (const r of replies) expect(r.body?.statusCode, r.raw).toBe(0);
  return chats;
}

function groupByAlias(chats: readonly ClusterChat[]): Map<string, ClusterChat[]> {
  const m = new Map<string, ClusterChat[]>();
  for (const c of chats) m.set(c.alias, [...(m.get(c.alias) ?? []), c]);
  return m;
}

/** The alias with the most sessions among `chats`, and those sessions. */
function busiest(chats: readonly ClusterChat[]): { alias: string; chats: ClusterChat[] } {
  const best = [...groupByAlias(chats)].sort((a, b) => b[1].length - a[1].length)[0];
  if (best === undefined) throw new Error('no chats');
  return { alias: best[0], chats: best[1] };
}

/** Texts the agent sent that were answered 200, per chat. */
const agentAcked = new Map<ClusterChat, string[]>();

/** The agent on the owning node accepts and says something; the customer answers (and so hears of it). */
async function engage(chats: readonly ClusterChat[], agents: AgentPool, round: string): Promise<void> {
  const c = cluster();
  await Promise.all(
    chats.map(async (chat, i) => {
      const agent = await agents.at(await c.nodeUrl(chat.alias));
      const accepted = await agent.accept(chat.chatId);
      expect(accepted.status, JSON.stringify(accepted.body)).toBe(200);
      const text = `agent ${round} ${chat.deviceId}`;
      const sent = await agent.send(chat.chatId, text);
      expect(sent.status, JSON.stringify(sent.body)).toBe(200);
      agentAcked.set(chat, [...(agentAcked.get(chat) ?? []), text]);
      const r = await chat.op(i + 1, 'send', { message: `customer ${round} ${chat.deviceId}` });
      expect(r.body?.statusCode, r.raw).toBe(0);
    }),
  );
}

/**
 * The full transcript in `r` continues what the customer was told before (`before`): indices 1..n once
 * each, every event told before unchanged, every acknowledged message exactly once.
 */
function expectContinues(chat: ClusterChat, r: Reply, before: ReadonlyMap<number, WireEvent>): void {
  const ctx = `${chat.chatId} (${chat.deviceId}): ${r.raw.slice(0, 2000)}`;
  expect(r.body?.statusCode, ctx).toBe(0);
  const messages = r.body.messages as WireEvent[];
  expect(indexProblems(messages), ctx).toEqual([]);
  for (const [index, ev] of before) {
    expect(messages[index - 1] === undefined ? 'missing' : canonical(messages[index - 1]), `${ctx}\nindex ${index}`).toBe(canonical(ev));
  }
  const counts = messageCounts(messages);
  for (const t of [...chat.acked, ...(agentAcked.get(chat) ?? [])]) expect(counts.get(t) ?? 0, `${ctx}\n"${t}"`).toBe(1);
  for (const [t, n] of counts) expect(n, `${ctx}\n"${t}" is in the transcript ${n} times`).toBe(1);
  expect(chat.conflicts, ctx).toEqual([]);
}

/** A refresh from position 1 with `alias`, through alternating gateways, retried while statusCode 1. */
function fullRefresh(chat: ClusterChat, gw: number, alias = chat.alias, withinMs = 15_000): Promise<Reply> {
  return chat.retry(gw, 'refresh', {}, { alias, position: 1, withinMs });
}

/**
 * Fault injection in PostgreSQL: a deferred trigger on the events table sleeps at COMMIT (the end of a
 * send's single autocommit statement) while `test_fault.commit_delay_ms` > 0, so that a node can be killed
 * while its COMMIT is on the way. (The server
 * finishes a COMMIT whose client is gone: client_connection_check_interval is 0.)
 */
async function slowCommits(): Promise<{ set(ms: number): Promise<void>; committing(): Promise<number>; remove(): Promise<void> }> {
  const c = cluster();
  await c.sql(`
    CREATE TABLE IF NOT EXISTS test_fault (id integer PRIMARY KEY, commit_delay_ms integer NOT NULL);
    INSERT INTO test_fault VALUES (1, 0) ON CONFLICT (id) DO UPDATE SET commit_delay_ms = 0;
    CREATE OR REPLACE FUNCTION test_slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE d integer;
    BEGIN
      SELECT commit_delay_ms INTO d FROM test_fault WHERE id = 1;
      IF d > 0 THEN PERFORM pg_sleep(d / 1000.0); END IF;
      RETURN NULL;
    END $$;
    DROP TRIGGER IF EXISTS test_slow_commit ON events;
    CREATE CONSTRAINT TRIGGER test_slow_commit AFTER INSERT ON events DEFERRABLE INITIALLY DEFERRED
      FOR EACH ROW EXECUTE FUNCTION test_slow_commit();`);
  return {
    async set(ms) {
      await c.sql('UPDATE test_fault SET commit_delay_ms = $1 WHERE id = 1', [ms]);
    },
    async committing() {
      // A send is one autocommit statement (the store's RECORD_CHANGE), so its commit runs inside it.
      const rows = await c.sql<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND (query ILIKE 'commit%' OR query ILIKE '%INSERT INTO events%')`,
      );
      return rows[0]?.n ?? 0;
    },
    async remove() {
      await c.sql('DROP TRIGGER IF EXISTS test_slow_commit ON events; UPDATE test_fault SET commit_delay_ms = 0');
    },
  };
}

describe('a chat server node killed with SIGKILL', { timeout: 60_000 }, () => {
  it('every session of the dead node continues on another node with a new alias and its full transcript', async () => {
    const c = cluster();
    const agents = new AgentPool();
    const chats = await startChats(30, 'kill9');
    const spread = groupByAlias(chats);
    expect([...spread.keys()].sort()).toEqual(c.liveDbids());
    await engage(chats, agents, 'before');
    // The customers hear of everything so far (the agent's events reach them through the replies).
    for (const [i, chat] of chats.entries()) expect((await chat.op(i, 'refresh')).body?.statusCode).toBe(0);

    const victim = busiest(chats);
    const before = new Map(chats.map((chat) => [chat, new Map(chat.events)] as const));
    const oldAlias = new Map(chats.map((chat) => [chat, chat.alias] as const));
    const exit = await c.kill(victim.alias);
    expect(exit.signal).toBe('SIGKILL');

    // Every customer keeps going with the alias it had, through either gateway.
    const replies = await Promise.all(chats.map((chat, i) => fullRefresh(chat, i, oldAlias.get(chat))));
    for (const [i, chat] of chats.entries()) {
      const r = replies[i] as Reply;
      expectContinues(chat, r, before.get(chat) as Map<number, WireEvent>);
      if (oldAlias.get(chat) === victim.alias) {
        expect(r.body.alias).not.toBe(victim.alias);
        expect(c.liveDbids()).toContain(r.body.alias);
      } else {
        expect(r.body.alias).toBe(oldAlias.get(chat));
      }
    }

    // A new message succeeds on the new node, with the new alias.
    const sends = await Promise.all(chats.map((chat, i) => chat.retry(i + 1, 'send', { message: `customer after ${chat.deviceId}` })));
    for (const r of sends) expect(r.body?.statusCode, r.raw).toBe(0);

    // The agent on the new owner goes on; the pushes of its messages reach the receiver, naming the new alias.
    const moved = victim.chats;
    await Promise.all(
      moved.map(async (chat) => {
        const agent = await agents.at(await c.nodeUrl(chat.alias));
        const text = `agent after restore ${chat.deviceId}`;
        const sent = await agent.send(chat.chatId, text);
        expect(sent.status, JSON.stringify(sent.body)).toBe(200);
        agentAcked.set(chat, [...(agentAcked.get(chat) ?? []), text]);
      }),
    );
    for (const chat of moved) {
      const text = `agent after restore ${chat.deviceId}`;
      const push = await waitUntil(
        () => chat.pushes().find((p) => (p.body?.data?.messages as WireEvent[] | undefined)?.some((m) => m.text === text)),
        `the push of "${text}"`,
        10_000,
      );
      expect(push.body.data).toMatchObject({ chatId: chat.chatId, alias: chat.alias, secureKey: chat.secureKey });
    }

    // And the whole story once more, from either gateway.
    for (const [i, chat] of chats.entries()) {
      const r = await fullRefresh(chat, i + 1);
      expectContinues(chat, r, chat.events);
    }
  });

  it('keeps every send that was answered statusCode 0 when the node dies in the middle of sends', async () => {
    const c = cluster();
    const chats = await startChats(30, 'midsend');
    const victim = busiest(chats);
    const targets = victim.chats;
    expect(targets.length).toBeGreaterThanOrEqual(5);
    const PER_CHAT = 15;
    const total = targets.length * PER_CHAT;
    let answered = 0;
    let killed: Promise<unknown> | undefined;
    const results = await Promise.all(
      targets.flatMap((chat, ci) =>
        Array.from({ length: PER_CHAT }, async (_, k) => {
          const text = `burst ${chat.deviceId} #${k}`;
          let r: Reply | undefined;
          try {
            r = await chat.op(ci + k, 'send', { message: text }, { alias: victim.alias, position: 'omit' });
          } catch {
            r = undefined;
          }
          // SIGKILL once a quarter of the sends were answered: the rest are queued or on their way.
          if (++answered === Math.floor(total / 4)) killed = c.kill(victim.alias);
          return { chat, text, r };
        }),
      ),
    );
    await killed;
    expect(c.nodes.get(victim.alias)?.exit?.signal).toBe('SIGKILL');
    for (const { r } of results) if (r !== undefined) expect(isEnvelope(r), r.raw).toBe(true);
    const ok = results.filter((x) => x.r?.body?.statusCode === 0);
    expect(ok.length).toBeGreaterThanOrEqual(Math.floor(total / 4));

    for (const [i, chat] of targets.entries()) {
      const r = await fullRefresh(chat, i);
      expect(r.body?.statusCode, r.raw).toBe(0);
      expect(r.body.alias).not.toBe(victim.alias);
      const messages = r.body.messages as WireEvent[];
      expect(indexProblems(messages), r.raw).toEqual([]);
      const counts = messageCounts(messages);
      for (const x of ok.filter((y) => y.chat === chat)) {
        const n = counts.get(x.text) ?? 0;
        // Answered by the node before it died: it was sent once, it is there once. Answered by another node
        // (the gateway re-sent it after the node died): it is there; twice when the dead node had committed
        // it already (the BUG of the next test), so only "at least once" is checked here.
        if (x.r?.body?.alias === victim.alias) expect(n, `answered by ${victim.alias}: "${x.text}"`).toBe(1);
        else expect(n, `answered by ${x.r?.body?.alias}: "${x.text}"`).toBeGreaterThanOrEqual(1);
      }
      expect(chat.conflicts).toEqual([]);
    }
  });

  // Regression: found by this suite and fixed.
  it('does not store twice a send whose COMMIT went through on the node that died before answering', async () => {
    const c = cluster();
    const chats = await startChats(9, 'dup');
    const victim = busiest(chats);
    const fault = await slowCommits();
    let results: Array<{ chat: ClusterChat; text: string; r: Reply | undefined }> = [];
    let locker: Awaited<ReturnType<Cluster['pgClient']>> | undefined;
    try {
      await fault.set(800);
      const sends = victim.chats.map(async (chat, i) => {
        const text = `in flight ${chat.deviceId}`;
        const r = await chat.op(i, 'send', { message: text }, { alias: victim.alias, position: 'omit' }).catch(() => undefined);
        return { chat, text, r };
      });
      await waitUntil(async () => (await fault.committing()) >= victim.chats.length, 'every send to be in its COMMIT', 5000, 20);
      // Every read of a session waits until the dying node's COMMITs are through, so that the node that
      // restores a session sees what the dead node committed.
      locker = await c.pgClient();
      const lockerPid = (await locker.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
      await locker.query('BEGIN');
      const locked = locker.query('LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE');
      await waitUntil(
        async () => (await c.sql(`SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'`, [lockerPid])).length > 0,
        'the table lock to wait for the COMMITs',
        5000,
        20,
      );
      await c.kill(victim.alias);
      await fault.set(0);
      await locked;
      await locker.query('COMMIT');
      results = await Promise.all(sends);
    } finally {
      await locker?.end().catch(() => undefined);
      await fault.remove();
    }
    for (const [i, chat] of victim.chats.entries()) {
      const r = await fullRefresh(chat, i);
      expect(r.body?.statusCode, r.raw).toBe(0);
      const messages = r.body.messages as WireEvent[];
      expect(indexProblems(messages), r.raw).toEqual([]);
      const counts = messageCounts(messages);
      const mine = results.find((x) => x.chat === chat);
      if (mine?.r?.body?.statusCode === 0) expect(counts.get(mine.text) ?? 0, `answered "${mine.text}"`).toBe(1);
      for (const [t, n] of counts) expect(n, `"${t}" is in the transcript ${n} times`).toBe(1);
    }
  });

  // Regression: found by this suite and fixed.
  it('a session restored while the dead node was still committing takes new messages', async () => {
    const c = cluster();
    const chats = await startChats(9, 'stale-doc');
    const victim = busiest(chats);
    const fault = await slowCommits();
    try {
      await fault.set(800);
      const sends = victim.chats.map((chat, i) =>
        chat.op(i, 'send', { message: `committing ${chat.deviceId}` }, { alias: victim.alias, position: 'omit' }).catch(() => undefined),
      );
      await waitUntil(async () => (await fault.committing()) >= victim.chats.length, 'every send to be in its COMMIT', 5000, 20);
      await c.kill(victim.alias);
      await fault.set(0);
      // Whatever these were answered (statusCode 1: the restored session cannot be written).
      await Promise.all(sends);
    } finally {
      await fault.remove();
    }
    // The customers keep going.
    for (const [i, chat] of victim.chats.entries()) {
      const s = await chat.retry(i, 'send', { message: `next ${chat.deviceId}` }, { withinMs: 5000 });
      expect(s.body?.statusCode, s.raw).toBe(0);
      const r = await fullRefresh(chat, i);
      expect(r.body?.statusCode, r.raw).toBe(0);
      const messages = r.body.messages as WireEvent[];
      expect(indexProblems(messages), r.raw).toEqual([]);
      expect(r.body.nextPosition, r.raw).toBe(messages.length + 1);
    }
  });
});

describe('a chat server node stopped with SIGTERM (shutdown-notify-flex-push = 1)', { timeout: 60_000 }, () => {
  it('advises every push-subscribed session to reconnect, exits 0, and its sessions continue elsewhere', async () => {
    const c = cluster();
    const agents = new AgentPool();
    const chats = await startChats(12, 'sigterm');
    await engage(chats, agents, 'before');
    const victim = busiest(chats);
    const nodeUrl = await c.nodeUrl(victim.alias);
    const health = (await (await fetch(`${nodeUrl}/health`)).json()) as { flex_users: number };
    const before = new Map(chats.map((chat) => [chat, new Map(chat.events)] as const));
    const mark = c.receiver.received.length;

    const exit = await c.terminate(victim.alias);
    expect(exit, c.nodes.get(victim.alias)?.output()).toEqual({ code: 0, signal: null });

    const isAdvice = (m: WireEvent) =>
      m.type === 'ParticipantLeft' && m.from.participantId === 1 && m.userData?.['quit-reason-advice'] === 'reconnect';
    const advice = () => c.receiver.received.slice(mark).filter((p) => (p.body?.data?.messages as WireEvent[] | undefined)?.some(isAdvice));
    for (const chat of victim.chats) {
      const p = await waitUntil(() => advice().find((x) => x.body.deviceId === chat.deviceId), `the reconnect advice to ${chat.deviceId}`, 5000);
      expect(p.path).toBe('/push');
      expect(p.body.data).toMatchObject({ chatId: chat.chatId, alias: victim.alias, chatEnded: false });
    }
    // Every push-subscribed session of that node, not only this test's.
    const advisedChats = new Set(advice().map((p) => p.body.data.chatId as string));
    expect(advisedChats.size).toBe(health.flex_users);
    // Sessions of other nodes are not told to reconnect.
    for (const chat of chats.filter((x) => x.alias !== victim.alias)) expect(advisedChats.has(chat.chatId)).toBe(false);

    // The sessions continue on other nodes; the advice was no transcript event.
    for (const [i, chat] of chats.entries()) {
      const r = await fullRefresh(chat, i, chat.alias, 10_000);
      expectContinues(chat, r, before.get(chat) as Map<number, WireEvent>);
      expect(r.body.chatEnded).toBe(false);
      expect(r.body.alias).not.toBe(victim.alias);
      expect((r.body.messages as WireEvent[]).filter((m) => m.type === 'ParticipantLeft')).toEqual([]);
      expect((await chat.retry(i + 1, 'send', { message: `customer after sigterm ${chat.deviceId}` })).body?.statusCode).toBe(0);
    }
  });
});

describe('two gateways racing to restore the same session', { timeout: 60_000 }, () => {
  it('both end with statusCode 0 and the same new alias, without duplicates', async () => {
    const c = cluster();
    const agents = new AgentPool();
    const chats = await startChats(15, 'race');
    await engage(chats, agents, 'before');
    const victim = busiest(chats);
    expect(victim.chats.length).toBeGreaterThanOrEqual(3);
    const before = new Map(victim.chats.map((chat) => [chat, new Map(chat.events)] as const));
    await c.kill(victim.alias);

    await Promise.all(
      victim.chats.map(async (chat) => {
        for (let round = 0; round < 3; round++) {
          // The same request through both gateways at the same moment, with the dead alias.
          const [a, b] = await Promise.all([fullRefresh(chat, 0, victim.alias), fullRefresh(chat, 1, victim.alias)]);
          expect(a.body?.statusCode, a.raw).toBe(0);
          expect(b.body?.statusCode, b.raw).toBe(0);
          expect(a.body.alias, `${a.raw}\n${b.raw}`).toBe(b.body.alias);
          expect(a.body.alias).not.toBe(victim.alias);
          expectContinues(chat, a, before.get(chat) as Map<number, WireEvent>);
          expectContinues(chat, b, before.get(chat) as Map<number, WireEvent>);
          // And two messages at once, one through each gateway.
          const [x, y] = await Promise.all([
            chat.retry(0, 'send', { message: `race ${round} gw0 ${chat.deviceId}` }, { alias: victim.alias }),
            chat.retry(1, 'send', { message: `race ${round} gw1 ${chat.deviceId}` }, { alias: victim.alias }),
          ]);
          expect(x.body?.statusCode, x.raw).toBe(0);
          expect(y.body?.statusCode, y.raw).toBe(0);
          expect(x.body.alias).toBe(a.body.alias);
          expect(y.body.alias).toBe(a.body.alias);
        }
        const last = await fullRefresh(chat, 0);
        expectContinues(chat, last, chat.events);
      }),
    );
  });
});

describe('PostgreSQL restarted under load', { timeout: 60_000 }, () => {
  it('requests fail cleanly with statusCode 1, recover, and leave consistent transcripts', async () => {
    const c = cluster();
    const running = [...c.nodes.values(), ...c.gateways].filter((p) => p.exit === undefined);
    const chats = await startChats(8, 'pgrestart');
    const replies: Array<{ chat: ClusterChat; text: string; r?: Reply; transport?: string; at: number }> = [];
    let restartDone = 0;
    let stop = false;
    const okAfterRestart = new Map<ClusterChat, number>();

    const load = chats.map(async (chat, ci) => {
      for (let k = 0; !stop; k++) {
        const text = `load ${chat.deviceId} #${k}`;
        try {
          const r = await chat.op(ci + k, 'send', { message: text }, { position: 'omit' });
          replies.push({ chat, text, r, at: Date.now() });
          if (r.body?.statusCode === 0 && restartDone > 0) okAfterRestart.set(chat, (okAfterRestart.get(chat) ?? 0) + 1);
          if (r.body?.statusCode !== 0) await sleep(50);
        } catch (err) {
          replies.push({ chat, text, transport: (err as Error).message, at: Date.now() });
          await sleep(50);
        }
      }
    });

    await sleep(500);
    await c.pg.restart();
    restartDone = Date.now();
    try {
      await waitUntil(() => chats.every((chat) => (okAfterRestart.get(chat) ?? 0) >= 3), 'every client to succeed again after the restart', 30_000);
    } finally {
      stop = true;
      await Promise.all(load);
    }

    // Failures were clean: a Chat API envelope, retryable; no transport errors; nothing crashed.
    const failures = replies.filter((x) => x.r?.body?.statusCode !== 0);
    for (const f of failures) {
      expect(f.transport, f.text).toBeUndefined();
      const r = f.r as Reply;
      expect(isEnvelope(r), `${r.status} ${r.raw}`).toBe(true);
      expect(r.body.statusCode, r.raw).toBe(1);
    }
    for (const p of running) expect(p.exit, p.output()).toBeUndefined();

    // Transcripts: indices without gaps or duplicates; every acknowledged message exactly once.
    for (const [i, chat] of chats.entries()) {
      const r = await fullRefresh(chat, i);
      expect(r.body?.statusCode, r.raw).toBe(0);
      const messages = r.body.messages as WireEvent[];
      expect(indexProblems(messages), r.raw).toEqual([]);
      const counts = messageCounts(messages);
      for (const t of chat.acked) expect(counts.get(t) ?? 0, `acknowledged "${t}"`).toBe(1);
      for (const [t, n] of counts) expect(n, `"${t}"`).toBe(1);
      expect(chat.conflicts).toEqual([]);
    }
  });
});

describe('a stale alias', { timeout: 60_000 }, () => {
  it('an alias that names no node ("999") goes to a live node and answers with the current alias', async () => {
    const chats = await startChats(6, 'stale999');
    for (const [i, chat] of chats.entries()) {
      const owner = chat.alias;
      const before = new Map(chat.events);
      for (const gw of [i, i + 1]) {
        const r = await fullRefresh(chat, gw, '999', 5000);
        expect(r.body?.statusCode, r.raw).toBe(0);
        expect(r.body.alias).toBe(owner);
        expectContinues(chat, r, before);
      }
      const s = await chat.retry(i, 'send', { message: `after 999 ${chat.deviceId}` }, { alias: '999', withinMs: 5000 });
      expect(s.body?.statusCode, s.raw).toBe(0);
      expect(s.body.alias).toBe(owner);
    }
  });

  it('the alias of a node restarted since: the session continues where it is now', async () => {
    const c = cluster();
    const agents = new AgentPool();
    const chats = await startChats(15, 'restarted');
    await engage(chats, agents, 'before');
    const victim = busiest(chats);
    expect(victim.chats.length).toBeGreaterThanOrEqual(4);
    const half = Math.floor(victim.chats.length / 2);
    const moved = victim.chats.slice(0, half);
    const stayed = victim.chats.slice(half);
    await c.kill(victim.alias);
    // Half of the dead node's sessions are restored elsewhere before it comes back.
    for (const [i, chat] of moved.entries()) {
      const r = await fullRefresh(chat, i, victim.alias);
      expect(r.body?.statusCode, r.raw).toBe(0);
      expect(r.body.alias).not.toBe(victim.alias);
    }
    await c.restart(victim.alias);
    await c.waitForGateways();

    // A session restored elsewhere is served by its owner now, whatever alias the client has.
    for (const [i, chat] of moved.entries()) {
      const owner = chat.alias;
      const r = await fullRefresh(chat, i, victim.alias);
      expect(r.body?.alias, r.raw).toBe(owner);
      expectContinues(chat, r, chat.events);
    }
    // A session the restarted node still owns continues there, with its full transcript.
    for (const [i, chat] of stayed.entries()) {
      const r = await fullRefresh(chat, i, victim.alias);
      expect(r.body?.statusCode, r.raw).toBe(0);
      expectContinues(chat, r, chat.events);
      const s = await chat.retry(i + 1, 'send', { message: `after restart ${chat.deviceId}` });
      expect(s.body?.statusCode, s.raw).toBe(0);
    }
  });

  // Regression: found by this suite and fixed.
  it('a node that saw the old process die does not take sessions from the restarted node', async () => {
    const c = cluster();
    const agents = new AgentPool();
    const chats = await startChats(15, 'reborn');
    await engage(chats, agents, 'before');
    const victim = busiest(chats);
    expect(victim.chats.length).toBeGreaterThanOrEqual(2);
    const [moved, stayed] = victim.chats as [ClusterChat, ClusterChat];
    const other = c.liveDbids().find((d) => d !== victim.alias) as string;
    await c.kill(victim.alias);
    // One session is restored at once on `other` (its app asked there), which probes the dead node.
    const r1 = await fullRefresh(moved, 0, other);
    expect(r1.body?.alias, r1.raw).toBe(other);
    // The node comes back under its app dbid and loads the sessions it still owns, `stayed` among them.
    await c.restart(victim.alias);
    await c.waitForGateways();

    // A request of `stayed` reaches `other` (its app has that alias; a gateway that still took the node for
    // dead would send it anywhere too).
    const text = `via ${other} ${stayed.deviceId}`;
    const sent = await stayed.retry(1, 'send', { message: text }, { alias: other, withinMs: 5000 });
    expect(sent.body?.statusCode, sent.raw).toBe(0);
    // The customer's previous alias names the restarted node: the answer must be the session as it is now,
    // from its owner, with the message just acknowledged.
    const r = await fullRefresh(stayed, 0, victim.alias, 5000);
    expect(r.body?.statusCode, r.raw).toBe(0);
    const told = { alias: r.body.alias as string, sent: messageCounts(r.body.messages as WireEvent[]).get(text) ?? 0 };
    expect(told, r.raw).toEqual({ alias: sent.body.alias as string, sent: 1 });
    expectContinues(stayed, r, stayed.events);
  });
});

describe('a chat server node cut off from its peers and from the store', { timeout: 60_000 }, () => {
  it('stops answering from memory once its ownership lease lapses: its agent gets NOT_OWNER, not a stale transcript', async () => {
    const c = cluster();
    const agents = new AgentPool();
    const chats = await startChats(6, 'lease');
    const victim = busiest(chats);
    const chat = victim.chats[0] as ClusterChat;
    const agent = await agents.at(await c.nodeUrl(victim.alias));
    expect((await agent.accept(chat.chatId)).status).toBe(200);
    // The partition: peers reach the victim's registered address no more (a black hole that never answers,
    // so their health probe times out and they go by its heartbeat), and its heartbeats fail in the store.
    // Its own agent still reaches it.
    const held = new Set<Socket>();
    const hole = createServer((socket) => {
      held.add(socket);
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => hole.listen(0, '127.0.0.1', resolve));
    const [row] = await c.sql<{ url: string }>('SELECT url FROM nodes WHERE app_dbid = $1', [victim.alias]);
    await c.sql('UPDATE nodes SET url = $1 WHERE app_dbid = $2', [`http://127.0.0.1:${(hole.address() as AddressInfo).port}`, victim.alias]);
    await c.sql(`
      CREATE OR REPLACE FUNCTION test_no_heartbeat() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'heartbeat blocked by the test'; END $$;
      DROP TRIGGER IF EXISTS test_no_heartbeat ON nodes;
      CREATE TRIGGER test_no_heartbeat BEFORE UPDATE ON nodes FOR EACH ROW
        WHEN (OLD.app_dbid = '${victim.alias}') EXECUTE FUNCTION test_no_heartbeat();`);
    try {
      // The gateways judge it dead after dead-after (3 s) ...
      await waitUntil(
        async () => {
          for (const i of [0, 1]) if ((await gatewayHealth(c.gateway(i))).nodes.some((n) => n.app_dbid === victim.alias)) return false;
          return true;
        },
        `the gateways to give up on ${victim.alias}`,
        15_000,
        200,
      );
      // ... so the customer's next send goes to another node, which restores the session there.
      const text = `after the partition ${chat.deviceId}`;
      const r = await chat.retry(0, 'send', { message: text }, { withinMs: 20_000 });
      expect(r.body?.statusCode, r.raw).toBe(0);
      expect(r.body.alias).not.toBe(victim.alias);
      // The victim still holds the session in memory, without that message. Its lease (dead-after minus one
      // heartbeat interval, 2 s) has lapsed, so it asks the store, learns that the session moved, and says so.
      const view = await agent.call('GET', `chats/${encodeURIComponent(chat.chatId)}`);
      expect(view.status, JSON.stringify(view.body)).toBe(409);
      expect(JSON.stringify(view.body)).not.toContain(text);
    } finally {
      await c.sql('DROP TRIGGER IF EXISTS test_no_heartbeat ON nodes');
      if (row !== undefined) await c.sql('UPDATE nodes SET url = $1 WHERE app_dbid = $2', [row.url, victim.alias]);
      for (const socket of held) socket.destroy();
      await new Promise((resolve) => hole.close(resolve));
    }
    // The partition heals: its heartbeats move again and the gateways list it again.
    await c.waitForGateways();
  });
});
