/**
 * The `parley` command. The only module that reads argv and the environment and exits the process.
 */
import { loadConfigFile } from './config/load.ts';
import { ParleyError } from './errors.ts';
import { createLogger } from './log.ts';
import { startChatServer } from './roles/chat-server.ts';
import { startGateway } from './roles/gateway.ts';
import { startReceiverOnly } from './roles/receiver-only.ts';
import { startAll } from './roles/start.ts';

const USAGE = `usage: parley <command> [--config FILE]

  start        every role in one process on the embedded store: chat server, Chat API v2 gateway,
               agent API and desk, notification receiver and customer chat page
  chat-server  one chat server node of a cluster (shared store in [store], registers as [node] app-dbid)
  gateway      one gateway (GMS) node of a cluster: Chat API v2 routed by alias, customhttp push
  receiver     the notification receiver and the customer page, against [receiver] gateway-url
  --config     INI file (default: config/parley.ini); PARLEY_<SECTION>_<KEY> variables override it`;

const COMMANDS = new Set(['start', 'chat-server', 'gateway', 'receiver']);

interface Started {
  readonly lines: string[];
  stop(): Promise<void>;
}

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
  if (!COMMANDS.has(command)) {
    process.stderr.write(`parley: unknown command "${command}"\n${USAGE}\n`);
    return 2;
  }
  const config = loadConfigFile(configPath, process.env);
  const log = createLogger({ level: process.env['PARLEY_LOG_LEVEL'] ?? 'info' });
  const started = await start(command, config, log);
  process.stdout.write(`${started.lines.join('\n')}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  log.info({}, 'shutting down');
  await started.stop();
  return 0;
}

async function start(command: string, config: ReturnType<typeof loadConfigFile>, log: ReturnType<typeof createLogger>): Promise<Started> {
  if (command === 'chat-server') {
    const n = await startChatServer(config, { log });
    return {
      lines: [`Parley chat server node ${config.node.appDbid} is running (pid ${process.pid})`, `  Internal API: ${n.url}`, `  Agent desk:   ${n.url}/desk/`, `  Health:       ${n.url}/health`],
      stop: () => n.shutdown(),
    };
  }
  if (command === 'gateway') {
    const g = await startGateway(config, { log });
    return { lines: [`Parley gateway is running`, `  Chat API v2:  ${g.url}/genesys/2/chat/{serviceName}`, `  Health:       ${g.url}/health`], stop: () => g.close() };
  }
  if (command === 'receiver') {
    const r = await startReceiverOnly(config, log);
    return {
      lines: [`Parley receiver is running (gateway ${config.receiver.gatewayUrl})`, `  Customer chat: ${r.url}/chat/`, `  Push endpoint: ${r.url}/receiver/push`],
      stop: () => r.close(),
    };
  }
  const running = await startAll(config, { log });
  const base = running.url;
  return {
    lines: [
      `Parley is running (app dbid ${config.node.appDbid}, store ${config.store.type === 'sqlite' ? config.store.path : 'postgres'})`,
      `  Customer chat: ${base}/chat/`,
      `  Agent desk:    ${base}/desk/   (agents: ${[...config.agents.keys()].join(', ')})`,
      `  Chat API v2:   ${base}/genesys/2/chat/{serviceName}   services: ${[...config.services.keys()].join(', ')}`,
      `  Agent API:     ${base}/agent/api/login   (WebSocket ${base.replace('http', 'ws')}/agent/api/ws)`,
      `  Push endpoint: ${base}/receiver/push`,
      `  Health:        ${base}/health   Metrics: ${base}/metrics`,
    ],
    async stop() {
      running.app.accepting = false;
      if (config.settings.shutdownNotifyFlexPush === 1) await running.app.node.notifyShutdown();
      await running.close();
    },
  };
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
