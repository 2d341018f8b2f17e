/**
 * buildApp: wires every role of one process (chat server node, gateway, agent API) over one store and
 * returns an HTTP handler. It never listens; `roles/start.ts` does.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { AgentDirectory } from './chat-server/agent-directory.ts';
import { AGENT_API_PREFIX, createAgentApi } from './chat-server/agent-api.ts';
import { AgentOps } from './chat-server/agent-ops.ts';
import { createAgentStream } from './chat-server/agent-stream.ts';
import { ClientOps } from './chat-server/client-ops.ts';
import { LiveSessions } from './chat-server/live-sessions.ts';
import type { Clock } from './clock.ts';
import type { Config } from './config/catalogue.ts';
import { ParleyError } from './errors.ts';
import { CHAT_API_PREFIX, createChatApi } from './gateway/chat-api.ts';
import { handleCors } from './http/cors.ts';
import { sendJson } from './http/respond.ts';
import type { IdSource } from './ids.ts';
import type { Logger } from './log.ts';
import type { Store } from './store/port.ts';

export interface AppDeps {
  readonly store: Store;
  readonly clock: Clock;
  readonly ids: IdSource;
  readonly log: Logger;
}

export interface App {
  handle(req: IncomingMessage, res: ServerResponse): void;
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  readonly sessions: LiveSessions;
  close(): Promise<void>;
}

export async function buildApp(config: Config, deps: AppDeps): Promise<App> {
  const alias = config.node.appDbid;
  const sessions = new LiveSessions(deps.store, alias);
  await sessions.loadOpen();
  const client = new ClientOps({ sessions, clock: deps.clock, ids: deps.ids, alias, fileLimits: config.fileTransfer });
  const directory = new AgentDirectory(config.agents, deps.clock, deps.ids);
  const agentOps = new AgentOps(sessions, deps.clock);
  const chatApi = createChatApi({
    node: client,
    services: new Set(config.services.keys()),
    apiKey: config.http.apiKey,
    limits: {
      maxBodySize: config.http.maxBodySize,
      maxFieldLength: config.http.maxFieldLength,
      maxFileSize: config.fileTransfer.uploadMaxFileSize,
    },
    onError: (err) => {
      if (err.spec.http >= 500) deps.log.error({ err, code: err.code, cause: err.cause }, 'chat api request failed');
    },
  });
  const agentApi = createAgentApi({ directory, ops: agentOps });
  const agentStream = createAgentStream({ directory, ops: agentOps, sessions });
  const cors = config.http.corsAllowedOrigins;

  function handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname;
    if (path.startsWith(CHAT_API_PREFIX)) {
      if (handleCors(req, res, cors)) return;
      void chatApi(req, res, path, url.searchParams);
      return;
    }
    if (path.startsWith(AGENT_API_PREFIX)) {
      void agentApi(req, res, path, url.searchParams);
      return;
    }
    if (path === '/health' && req.method === 'GET') {
      sendJson(res, 200, { status: 'ok', app_dbid: alias, process_os_pid: process.pid, sessions: sessions.size });
      return;
    }
    req.resume();
    const err = new ParleyError('NOT_FOUND');
    sendJson(res, 404, { error: { code: err.code, message: err.message } });
  }

  function upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (path === `${AGENT_API_PREFIX}ws`) agentStream.handleUpgrade(req, socket, head);
    else socket.destroy();
  }

  return {
    handle,
    upgrade,
    sessions,
    async close() {
      agentStream.close();
      await deps.store.close();
    },
  };
}
