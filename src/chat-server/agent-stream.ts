/**
 * The agent event stream: one WebSocket per desk at `/agent/api/ws`.
 *
 * Client frames: `{"type":"auth","token":"..."}` first (within 10 s), then `{"type":"sync","chatId":"...","from":n}`
 * to catch up after a reconnect, or `{"type":"ping"}`. Server frames: `ready` (agent + overview), `events`
 * (new transcript events of the agent's chats), `chat` (a waiting chat appeared or changed), `sync`,
 * `pong`, `error`. A malformed frame gets an `error` frame; ten of them close the socket.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Clock } from '../clock.ts';
import { offeredTo } from '../chat/routing.ts';
import type { ChatEvent, Session } from '../chat/types.ts';
import { ParleyError, publicAdvice, toParleyError } from '../errors.ts';
import { parseFrame } from '../http/ws-frame.ts';
import type { AgentAccount, AgentDirectory } from './agent-directory.ts';
import { publicAgent, viewJson } from './agent-api.ts';
import { isIn, summarize, type AgentOps } from './agent-ops.ts';
import type { LiveSessions } from './live-sessions.ts';
import { sendBounded } from '../http/ws-send.ts';
import { watchLiveness } from '../http/ws-liveness.ts';

const AUTH_TIMEOUT_MS = 10_000;
const MAX_BAD_FRAMES = 10;
const MAX_FRAME = 64 * 1024;

interface Desk {
  readonly ws: WebSocket;
  agent?: AgentAccount;
  token?: string;
  /** The token this socket counts as a desk of (the agent's presence), until it closes. */
  present?: string;
  bad: number;
}

export interface AgentStreamOptions {
  readonly clock: Clock;
  readonly directory: AgentDirectory;
  readonly ops: AgentOps;
  readonly sessions: LiveSessions;
  /** How often a desk socket is pinged (default: src/http/ws-liveness.ts); tests use less. */
  readonly livenessMs?: number;
}

export function createAgentStream(o: AgentStreamOptions) {
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME });
  const desks = new Set<Desk>();

  const unsubscribe = o.sessions.subscribe((session, events) => {
    for (const desk of desks) {
      if (desk.agent === undefined) continue;
      // A token signed out or expired since the desk authenticated stops the pushes too, not only its frames.
      try {
        o.directory.verify(desk.token);
      } catch {
        desk.agent = undefined;
        desk.ws.close(4401, 'auth failed');
        continue;
      }
      deliver(desk, desk.agent, session, events, o.clock.now());
    }
  });

  wss.on('connection', (ws: WebSocket) => {
    const desk: Desk = { ws, bad: 0 };
    desks.add(desk);
    // A desk gone without closing (a laptop asleep, a lost network) is dropped after a missed pong.
    watchLiveness(ws, o.livenessMs);
    const timer = setTimeout(() => {
      if (desk.agent === undefined) ws.close(4401, 'auth required');
    }, AUTH_TIMEOUT_MS);
    ws.on('message', (data, isBinary) => {
      void onFrame(desk, isBinary ? undefined : data.toString()).catch((e: unknown) => reject(desk, toParleyError(e)));
    });
    ws.on('close', () => {
      clearTimeout(timer);
      desks.delete(desk);
      if (desk.present !== undefined) o.directory.deskClosed(desk.present);
    });
    ws.on('error', () => ws.terminate());
  });

  async function onFrame(desk: Desk, text: string | undefined): Promise<void> {
    const msg = parseFrame(text);
    if (msg.type === 'auth') {
      const token = typeof msg['token'] === 'string' ? msg['token'] : undefined;
      const agent = o.directory.verify(token);
      desk.agent = agent;
      desk.token = token;
      // The agent is online while a desk socket is open (agent-directory.ts); a second auth moves it.
      if (desk.present !== token && token !== undefined && desk.ws.readyState === desk.ws.OPEN) {
        if (desk.present !== undefined) o.directory.deskClosed(desk.present);
        o.directory.deskOpened(token);
        desk.present = token;
      }
      return send(desk, { type: 'ready', agent: publicAgent(agent), overview: await o.ops.overview(agent) });
    }
    if (desk.agent === undefined) throw new ParleyError('AGENT_AUTH_FAILED', 'Send an auth frame first.');
    // Re-checked on every frame, so an expired or signed-out token stops working on an open socket too.
    const agent = o.directory.verify(desk.token);
    if (msg.type === 'ping') return send(desk, { type: 'pong' });
    if (msg.type === 'sync') {
      const chatId = msg['chatId'];
      const from = msg['from'];
      if (typeof chatId !== 'string' || typeof from !== 'number' || !Number.isInteger(from) || from < 0) {
        throw new ParleyError('INVALID_PARAMETER', 'sync needs chatId (string) and from (integer >= 0).');
      }
      return send(desk, { type: 'sync', ...viewJson(await o.ops.transcript(agent, chatId, from), from) });
    }
    throw new ParleyError('INVALID_PARAMETER', 'Unknown frame type.');
  }

  function reject(desk: Desk, err: ParleyError): void {
    desk.bad += 1;
    send(desk, { type: 'error', error: { code: err.code, message: publicAdvice(err) } });
    if (err.code === 'AGENT_AUTH_FAILED') desk.ws.close(4401, 'auth failed');
    else if (desk.bad >= MAX_BAD_FRAMES) desk.ws.close(4400, 'too many bad frames');
  }

  return {
    handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
      wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
    },
    close(): void {
      unsubscribe();
      for (const d of desks) d.ws.terminate();
      wss.close();
    },
  };
}

/**
 * Events go to the agents who are or were in the chat; every agent hears of every change of a chat's
 * place (queue, offer, workbin, end) as a `chat` frame with `offered` computed for that agent, so a desk
 * can keep its queue and workbin lists without polling.
 */
function deliver(desk: Desk, agent: AgentAccount, session: Session, events: readonly ChatEvent[], now: number): void {
  // Events go to the agents responsible for the chat now: in it, holding it in their workbin, or the agent
  // it is routed back to; and to an agent whose own leaving this change records. Not to agents who handed
  // it on.
  const me = (pid: number) => session.participants.some((p) => p.participantId === pid && p.agentId === agent.agentId);
  const responsible =
    isIn(session, agent.agentId) || session.workbin?.agentId === agent.agentId || (session.state === 'waiting' && session.routing?.agentId === agent.agentId);
  const justLeft = events.some((e) => e.type === 'ParticipantLeft' && me(e.from.participantId));
  // The customer ended the chat (or timed out): the agents still in it were let go by this change, which
  // carries only the customer's ParticipantLeft.
  const endedWithMe =
    session.state === 'ended' && session.participants.some((p) => p.agentId === agent.agentId && p.leftAt !== undefined && p.leftAt === session.endedAt);
  if ((responsible || justLeft || endedWithMe) && events.length > 0) send(desk, { type: 'events', chat: summarize(session), events });
  const placeChanged = events.length === 0 || session.state !== 'active' || events.some((e) => e.type === 'ParticipantJoined' || e.type === 'ParticipantLeft');
  if (placeChanged) send(desk, { type: 'chat', chat: summarize(session), offered: offeredTo(session, agent.agentId, now) });
}

function send(desk: Desk, frame: unknown): void {
  sendBounded(desk.ws, JSON.stringify(frame));
}
