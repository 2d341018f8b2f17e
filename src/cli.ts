/**
 * The `parley` command. The only module that reads argv and the environment and exits the process.
 *   parley start [--config FILE]     every role in one process (chat server, gateway, agent API)
 */
import { loadConfigFile } from './config/load.ts';
import { ParleyError } from './errors.ts';
import { createLogger } from './log.ts';
import { startReceiverOnly } from './roles/receiver-only.ts';
import { startAll } from './roles/start.ts';

const USAGE = `usage: parley <start|receiver> [--config FILE]

  start     run every role in one process: chat server, Chat API v2 gateway, agent API and desk,
            notification receiver and customer chat page
  receiver  run only the notification receiver and the customer page, against [receiver] gateway-url
  --config  INI file (default: config/parley.ini); PARLEY_<SECTION>_<KEY> variables override it`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h') {
    process.stdout.write(`${USAGE}\n`);
    return command === undefined ? 2 : 0;
  }
  let configPath = 'config/parley.ini';
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    if (a === '--config' && rest[i + 1] !== undefined) configPath = rest[++i] as string;
    else {
      process.stderr.write(`parley: unknown argument "${a}"\n${USAGE}\n`);
      return 2;
    }
  }
  if (command !== 'start' && command !== 'receiver') {
    process.stderr.write(`parley: unknown command "${command}"\n${USAGE}\n`);
    return 2;
  }
  const config = loadConfigFile(configPath, process.env);
  const log = createLogger({ level: process.env['PARLEY_LOG_LEVEL'] ?? 'info' });
  const running = command === 'receiver' ? await startReceiverOnly(config, log) : await startAll(config, { log });
  const base = running.url;
  const lines =
    command === 'receiver'
      ? [`Parley receiver is running (gateway ${config.receiver.gatewayUrl})`, `  Customer chat: ${base}/chat/`, `  Push endpoint: ${base}/receiver/push`]
      : [
          `Parley is running (app dbid ${config.node.appDbid}, store ${config.store.path})`,
          `  Customer chat: ${base}/chat/`,
          `  Agent desk:    ${base}/desk/   (agents: ${[...config.agents.keys()].join(', ')})`,
          `  Chat API v2:   ${base}/genesys/2/chat/{serviceName}   services: ${[...config.services.keys()].join(', ')}`,
          `  Agent API:     ${base}/agent/api/login   (WebSocket ${base.replace('http', 'ws')}/agent/api/ws)`,
          `  Push endpoint: ${base}/receiver/push`,
          `  Health:        ${base}/health   Metrics: ${base}/metrics`,
        ];
  process.stdout.write(`${lines.join('\n')}\n`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  log.info({}, 'shutting down');
  await running.close();
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof ParleyError && err.code === 'CONFIG_INVALID') {
      process.stderr.write(`parley: invalid configuration\n${err.message}\n`);
      process.exit(78);
    }
    process.stderr.write(`parley: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
