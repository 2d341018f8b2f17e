/**
 * Parley `refresh` like a polling client that is up to date: N chats, each seeded with a few messages,
 * then every request is a refresh with `transcriptPosition` = that chat's current nextPosition, so the
 * reply carries no messages.
 */
import { measure, toRow } from '../lib/load.ts';
import { createChats, identityForm, mapLimit, opPath, postForm, reportServerLog, send, startParley, syncPosition } from '../lib/parley.ts';
import type { BenchContext, Row, Scenario } from '../lib/types.ts';

export const CHATS = 200;
export const SEED_MESSAGES = 5;

export const parleyRefresh: Scenario = {
  name: 'parley-refresh',
  async run(ctx: BenchContext): Promise<Row[]> {
    const server = await startParley(ctx);
    try {
      const t0 = performance.now();
      const chats = await createChats(server.url, CHATS);
      const jobs = chats.flatMap((c) => Array.from({ length: SEED_MESSAGES }, (_, k) => ({ c, k })));
      await mapLimit(jobs, 16, ({ c, k }) => send(server.url, c, `seed message ${k + 1}`));
      await mapLimit(chats, 16, (c) => syncPosition(server.url, c));
      const setupMs = Math.round(performance.now() - t0);
      ctx.log(`parley-refresh: Parley at ${server.url} (pid ${server.pid}), ${CHATS} chats x ${SEED_MESSAGES} messages in ${setupMs} ms`);

      const paths = chats.map((c) => opPath(c, 'refresh'));
      const forms = chats.map((c) => `${identityForm(c)}&transcriptPosition=${c.nextPosition}`);
      const probe = await postForm(server.url + (paths[0] as string), forms[0] as string);
      if (probe.status !== 200 || probe.body.statusCode !== 0) throw new Error(`probe refresh failed: HTTP ${probe.status} ${JSON.stringify(probe.body)}`);
      if ((probe.body.messages?.length ?? 0) !== 0) ctx.warn(`parley refresh: probe reply carried ${probe.body.messages?.length} messages, expected 0`);

      let seq = 0;
      const m = await measure(
        {
          url: server.url,
          serverPid: server.pid,
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          next: () => {
            const i = seq++ % chats.length;
            return { path: paths[i] as string, body: forms[i] as string };
          },
        },
        ctx.load,
      );
      const logLines = reportServerLog(ctx, 'parley refresh', server);
      return [
        toRow('parley refresh', `Chat API v2 refresh at nextPosition (empty reply), rotating over ${CHATS} chats`, m, {
          chats: CHATS,
          seedMessagesPerChat: SEED_MESSAGES,
          chatSetupMs: setupMs,
          replyBytes: probe.bytes,
          serverLogLines: logLines,
        }),
      ];
    } finally {
      await server.stop();
    }
  },
};
