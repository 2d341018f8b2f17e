/** Baseline: a bare node:http server (bench/server-bare.ts) answering ~300 bytes of JSON to a form POST. */
import { measure, toRow } from '../lib/load.ts';
import type { BenchContext, Row, Scenario } from '../lib/types.ts';

const BODY = 'secureKey=8f2d1c4b6a5e7d9c0b1a2f3e4d5c6b7a&userId=0A1B2C3D4E5F6A7B&alias=117&message=hello+from+the+bench';

export const bare: Scenario = {
  name: 'bare',
  async run(ctx: BenchContext): Promise<Row[]> {
    const server = await ctx.spawnServer('server-bare.ts');
    try {
      const probe = await fetch(`${server.url}/`, { method: 'POST', body: BODY, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
      const replyBytes = Buffer.byteLength(await probe.text());
      ctx.log(`bare: node:http at ${server.url} (pid ${server.pid}), reply ${replyBytes} bytes`);
      const m = await measure(
        { url: server.url, serverPid: server.pid, path: '/genesys/2/chat/bench/0001AaBbCcDdEeFf/send', body: BODY, headers: { 'content-type': 'application/x-www-form-urlencoded' } },
        ctx.load,
      );
      return [toRow('bare node:http', 'plain node:http, read POST body, ~300 B JSON reply', m, { replyBytes }, true)];
    } finally {
      await server.stop();
    }
  },
};
