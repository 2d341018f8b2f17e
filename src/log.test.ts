import { Writable } from 'node:stream';
import { expect, it } from 'vitest';
import { createLogger } from './log.ts';

it('redacts secrets wherever a log line carries them', async () => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  const log = createLogger({ destination: sink });
  log.info({ secureKey: 'k-1', session: { secureKey: 'k-2', chatId: 'c1' }, password: 'p-1', agent: { password: 'p-2' }, token: 't-1', headers: { authorization: 'Bearer t-2', apikey: 'a-1', 'x-api-key': 'a-2' } }, 'hello');
  log.child({ component: 'x' }).warn({ config: { apiKey: 'a-3' } }, 'child');
  log.error(
    { err: { config: { push: { signingSecret: 's-1' }, node: { internalToken: 'i-1' } } }, req: { headers: { 'x-parley-node-token': 'i-2', 'x-parley-session': 'b-1' } }, a: { b: { c: { secureKey: 'k-3' } } } },
    'deep',
  );
  await new Promise((r) => setTimeout(r, 20));
  const text = lines.join('');
  for (const secret of ['k-1', 'k-2', 'k-3', 'p-1', 'p-2', 't-1', 't-2', 'a-1', 'a-2', 'a-3', 's-1', 'i-1', 'i-2', 'b-1']) expect(text).not.toContain(secret);
  expect(text).toContain('"chatId":"c1"');
  expect(text).toContain('[redacted]');
});
