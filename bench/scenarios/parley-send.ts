/**
 * Parley `send`: N chats are opened with Request Chat, then every request is a valid Chat API v2 send
 * (`secureKey, userId, alias, message`) rotating over the chats, each message numbered. No
 * transcriptPosition, so the reply carries `messages: []` like a real GMS send reply.
 */
import { measure, toRow } from '../lib/load.ts';
import { createChats, identityForm, mapLimit, opPath, postForm, reportServerLog, startParley, syncPosition } from '../lib/parley.ts';
import type { BenchContext, Row, Scenario } from '../lib/types.ts';

export const CHATS = 200;

export const parleySend: Scenario = {
  name: 'parley-send',
  async run(ctx: BenchContext): Promise<Row[]> {
    const server = await startParley(ctx);
    try {
      const t0 = performance.now();
      const chats = await createChats(server.url, CHATS);
      const setupMs = Math.round(performance.now() - t0);
      ctx.log(`parley-send: Parley at ${server.url} (pid ${server.pid}), ${CHATS} chats created in ${setupMs} ms`);

      const paths = chats.map((c) => opPath(c, 'send'));
      const forms = chats.map((c) => `${identityForm(c)}&message=hello+from+the+bench+`);
      const probe = await postForm(server.url + (paths[0] as string), `${forms[0]}probe`);
      if (probe.status !== 200 || probe.body.statusCode !== 0) throw new Error(`probe send failed: HTTP ${probe.status} ${JSON.stringify(probe.body)}`);

      await mapLimit(chats, 16, (c) => syncPosition(server.url, c));
      const startPositions = chats.map((c) => c.nextPosition);

      let seq = 0;
      const m = await measure(
        {
          url: server.url,
          serverPid: server.pid,
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          next: () => {
            const i = seq++ % chats.length;
            return { path: paths[i] as string, body: `${forms[i]}${seq}` };
          },
        },
        ctx.load,
      );

      // Sanity check: every 2xx autocannon counted (warm-up + measured) must be a stored event.
      await mapLimit(chats, 16, (c) => syncPosition(server.url, c));
      const stored = chats.reduce((sum, c, i) => sum + c.nextPosition - (startPositions[i] ?? 0), 0);
      const answered2xx = Object.entries(m.statusCodes).reduce((s, [code, n]) => (code.startsWith('2') ? s + n : s), 0);
      if (stored < answered2xx) ctx.warn(`parley send: ${stored} messages stored but ${answered2xx} measured 2xx replies`);
      const logLines = reportServerLog(ctx, 'parley send', server);
      return [
        toRow('parley send', `Chat API v2 send, form-urlencoded, rotating over ${CHATS} chats`, m, {
          chats: CHATS,
          chatSetupMs: setupMs,
          replyBytes: probe.bytes,
          messagesStored: stored,
          serverLogLines: logLines,
        }),
      ];
    } finally {
      await server.stop();
    }
  },
};
