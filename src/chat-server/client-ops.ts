/**
 * What a Chat API v2 client can do on a chat server node. The gateway calls these through the node link;
 * each returns the session and the part of the transcript the reply carries.
 */
import type { Clock } from '../clock.ts';
import * as core from '../chat/session.ts';
import {
  checkDelete,
  checkDownload,
  checkUploadAllowed,
  checkUploadSize,
  limitsUserData,
  type FileLimits,
} from '../chat/file-limits.ts';
import { constantTimeEqual } from '../chat/secure-compare.ts';
import { mentionsPush, parseSubscription, type PushSubscription } from '../chat/push-subscription.ts';
import { wake } from '../chat/routing.ts';
import { firstWanted, type Position } from '../chat/transcript.ts';
import { CLIENT_PARTICIPANT_ID, type Change, type ChatEvent, type FileMeta, type ReplyMessage, type Session } from '../chat/types.ts';
import { ParleyError } from '../errors.ts';
import type { IdSource } from '../ids.ts';
import type { LiveSession, LiveSessions } from './live-sessions.ts';

export interface ClientIdentity {
  readonly secureKey?: string | undefined;
  readonly userId?: string | undefined;
  /** Accepted and ignored: a stale alias is fine, the reply carries the current one. */
  readonly alias?: string | undefined;
  /** Idempotency key of the call, set by a gateway that may retry it on another node. */
  readonly requestId?: string | undefined;
}

export type RequestChatInput = Omit<core.OpenSessionInput, 'chatId' | 'secureKey' | 'userId' | 'alias' | 'serviceName'>;

/**
 * What makes a Request Chat safe to send again: the chat id the gateway chose for it and the call's
 * idempotency key. A gateway that got no answer (a timeout, a node that died after its commit) sends the
 * same call again, maybe to another node; the chat it opened the first time is then answered again, not
 * opened a second time.
 */
export interface RetryKey {
  readonly chatId: string;
  readonly requestId: string;
}

export type ClientOperation =
  | { readonly op: 'send'; readonly message: string; readonly messageType?: string | undefined }
  | { readonly op: 'refresh' }
  | { readonly op: 'startTyping' | 'stopTyping'; readonly message?: string | undefined }
  | { readonly op: 'disconnect' }
  | { readonly op: 'pushUrl'; readonly pushUrl: string }
  | { readonly op: 'updateNickname'; readonly nickname: string }
  | { readonly op: 'updateData'; readonly userData: Readonly<Record<string, string>> }
  | { readonly op: 'customNotice'; readonly message: string; readonly messageType?: string | undefined }
  | { readonly op: 'readReceipt'; readonly position: number }
  | { readonly op: 'fileLimits' }
  | { readonly op: 'fileDelete'; readonly fileId: string };

export interface ClientReply {
  readonly session: Session;
  readonly messages: readonly ReplyMessage[];
  readonly nextPosition: number;
  readonly userData?: Readonly<Record<string, string>>;
}

/** What a reply carries from before its operation: the events from `from` to `upTo` (none without `from`). */
interface Before {
  readonly from: number | undefined;
  readonly upTo: number;
  readonly events: readonly ChatEvent[];
}

const NOTHING_BEFORE: Before = { from: undefined, upTo: 0, events: [] };

export interface UploadInput {
  readonly fileName: string;
  readonly contentType: string;
  readonly bytes: Buffer;
  readonly description?: string | undefined;
}

/** What the push engine and the timers need to hear from client requests. */
export interface ClientHooks {
  /** A session was created. */
  created(session: Session): void;
  /** Any authorised request of the session (it resets the client's disconnect timeout, unparks pushes). */
  requested(chatId: string): void;
  /** A successful refresh with the session's tokens: it acknowledges the session's notifications. */
  refreshed(chatId: string): void;
  /** A Request Chat sent again found the chat it opened: its timers are set (again). */
  resumed?(session: Session): void;
}

export interface ClientOpsDeps {
  readonly sessions: LiveSessions;
  readonly clock: Clock;
  readonly ids: IdSource;
  readonly alias: string;
  readonly fileLimits: FileLimits;
  readonly push: { readonly enabled: boolean; readonly onJoin: boolean };
  /** Services whose chats are all async ([chat.<name>] async-mode). */
  readonly asyncServices: ReadonlySet<string>;
  /** How long a woken chat is offered only to its last agent. */
  readonly lastAgentMs: number;
  /** Is the agent online (a woken chat of an agent who is not goes to anyone at once)? */
  readonly agentOnline: (agentId: string) => boolean;
  readonly hooks?: ClientHooks;
  /** Admission control: throws UNAVAILABLE over the node's limits; else answers the release of the pending session. */
  readonly admit?: (withPush: boolean) => () => void;
}

export class ClientOps {
  /** Request Chats with a retry key still running, by chat id and request id. */
  private readonly opening = new Map<string, Promise<ClientReply>>();

  constructor(private readonly d: ClientOpsDeps) {}

  async requestChat(serviceName: string, input: RequestChatInput, retry?: RetryKey): Promise<ClientReply> {
    if (retry === undefined) return this.admitAndOpen(serviceName, input, undefined);
    // The same call arriving again while its first attempt still runs here: answered with that attempt's chat.
    const key = `${retry.chatId} ${retry.requestId}`;
    const running = this.opening.get(key);
    if (running !== undefined) return running;
    const attempt = (async () => (await this.openedBy(retry)) ?? this.admitAndOpen(serviceName, input, retry))();
    this.opening.set(key, attempt);
    try {
      return await attempt;
    } finally {
      this.opening.delete(key);
    }
  }

  private async admitAndOpen(serviceName: string, input: RequestChatInput, retry: RetryKey | undefined): Promise<ClientReply> {
    const subscription = this.subscription(input.userData ?? {});
    const release = this.d.admit?.(subscription !== undefined);
    try {
      return await this.open(serviceName, input, subscription, retry, release);
    } finally {
      release?.();
    }
  }

  private async open(
    serviceName: string,
    input: RequestChatInput,
    subscription: PushSubscription | undefined,
    retry: RetryKey | undefined,
    counted: (() => void) | undefined,
  ): Promise<ClientReply> {
    const asyncMode = this.d.asyncServices.has(serviceName) || isTrue(input.userData?.['GCTI_Chat_AsyncMode']);
    const change = core.openSession(
      {
        ...input,
        asyncMode,
        ...(subscription === undefined ? {} : { push: { subscription, active: this.d.push.onJoin } }),
        serviceName,
        chatId: retry?.chatId ?? this.d.ids.chatId(),
        secureKey: this.d.ids.secureKey(),
        userId: this.d.ids.userId(),
        alias: this.d.alias,
      },
      this.d.clock.now(),
    );
    let entry: LiveSession;
    let created: readonly ChatEvent[];
    try {
      // The pending admission ends the moment the node's counts include the session.
      entry = await this.d.sessions.create(core.rememberRequest(change, retry?.requestId), counted);
      created = change.events;
    } catch (err) {
      if (retry === undefined) throw err;
      // The first attempt of the same call, still running here or on another node, stored the chat first
      // (or this write was committed although it was reported failed).
      let done: ClientReply | undefined;
      try {
        done = await this.openedBy(retry);
      } catch (again) {
        // Another live node holds it: the gateway follows NOT_OWNER there.
        if (again instanceof ParleyError && again.code === 'NOT_OWNER') throw again;
        throw err;
      }
      if (done === undefined) throw err;
      // Its secureKey is this attempt's: this very write went through although it was reported failed, so
      // the chat is new here and nobody has announced it yet.
      if (done.session.secureKey === change.session.secureKey) this.d.hooks?.created(done.session);
      return done;
    }
    this.d.hooks?.created(entry.session);
    // A new chat: its whole transcript is what opening it appended.
    return this.reply(entry, { from: 1, upTo: 0, events: [] }, created);
  }

  /**
   * The reply to a Request Chat sent again: the chat its first attempt opened, or undefined when there is
   * none yet. A chat of that id opened by another call is refused (the key is not this call's).
   */
  private async openedBy(retry: RetryKey): Promise<ClientReply | undefined> {
    try {
      return await this.d.sessions.serial(retry.chatId, async (entry) => {
        if (!core.alreadyApplied(entry.session, retry.requestId)) throw new ParleyError('INVALID_PARAMETER', 'Bad retry key.');
        const before = await this.before(entry, 'all');
        if (entry.session.state !== 'ended') {
          // A request of the client like any other: push acknowledged again after a restore on this node.
          await this.touch(entry);
          // Its timers, in case the attempt that opened it stopped before it set them (a write reported
          // failed after its commit); setting them again is harmless.
          this.d.hooks?.resumed?.(entry.session);
        }
        return this.reply(entry, before);
      });
    } catch (err) {
      if (err instanceof ParleyError && err.code === 'UNKNOWN_CHAT') return undefined;
      throw err;
    }
  }

  async perform(chatId: string, serviceName: string, id: ClientIdentity, op: ClientOperation, position: Position): Promise<ClientReply> {
    return this.d.sessions.serial(chatId, async (entry) => {
      authorize(entry.session, serviceName, id);
      // No await when nothing is to be read (a client refreshing from its nextPosition): no extra turn.
      const read = op.op === 'fileLimits' ? NOTHING_BEFORE : this.before(entry, position);
      const before = read instanceof Promise ? await read : read;
      await this.touch(entry);
      if (op.op === 'refresh') {
        this.d.hooks?.refreshed(chatId);
        return this.reply(entry, before);
      }
      if (op.op === 'fileLimits') return this.limits(entry);
      if (op.op === 'disconnect' && entry.session.state === 'ended') return this.reply(entry, before);
      // A retry of a call the session already took (its first node died before answering): answer, don't repeat.
      if (core.alreadyApplied(entry.session, id.requestId)) return this.reply(entry, before);
      const was = entry.session;
      const change = this.wakeOnMessage(was, this.apply(was, op));
      await this.d.sessions.commit(entry, core.rememberRequest(change, id.requestId));
      // A subscription made or changed by Update Data: the disconnect timeout that applies changed with it.
      if (entry.session.push !== was.push && entry.session.state !== 'ended') this.d.hooks?.requested(chatId);
      return this.reply(entry, before, change.events);
    });
  }

  private apply(s: Session, op: Exclude<ClientOperation, { op: 'refresh' | 'fileLimits' }>): Change {
    const now = this.d.clock.now();
    const me = CLIENT_PARTICIPANT_ID;
    switch (op.op) {
      case 'send':
        if (op.message.trim() === '') throw new ParleyError('MISSING_PARAMETER', 'message is required.');
        return core.say(s, me, 'Message', { text: op.message, messageType: op.messageType }, now);
      case 'startTyping':
        return core.say(s, me, 'TypingStarted', { text: op.message }, now);
      case 'stopTyping':
        return core.say(s, me, 'TypingStopped', { text: op.message }, now);
      case 'disconnect':
        return core.clientDisconnect(s, now);
      case 'pushUrl':
        return core.say(s, me, 'PushUrl', { text: checkPushUrl(op.pushUrl) }, now);
      case 'updateNickname':
        return core.updateNickname(s, me, op.nickname, now);
      case 'updateData': {
        const merged = core.updateData(s, op.userData, now);
        if (!mentionsPush(op.userData)) return merged;
        const subscription = this.subscription(merged.session.userData);
        // A subscription asked for on a running session is acknowledged at once: the client is here.
        return subscription === undefined ? merged : core.subscribe(merged.session, { subscription, active: true }, now);
      }
      case 'customNotice':
        return core.say(s, me, 'CustomNotice', { text: op.message, messageType: op.messageType }, now);
      case 'readReceipt':
        return core.readReceipt(s, op.position, now);
      case 'fileDelete': {
        // An ended chat first (CHAT_ENDED, as for every change), then the file and the rights to delete it.
        core.assertOpen(s);
        const f = core.findFile(s, op.fileId);
        checkDelete(this.d.fileLimits, f, me);
        return core.deleteFile(s, me, op.fileId, now);
      }
    }
  }

  /** The push subscription the userData asks for; an error when it is malformed or push is disabled. */
  private subscription(userData: Readonly<Record<string, string>>) {
    const sub = parseSubscription(userData);
    if (sub !== undefined && !this.d.push.enabled) {
      throw new ParleyError('INVALID_PARAMETER', 'Push notifications are disabled on this chat server (flex-push-enabled=false).');
    }
    return sub;
  }

  /** Every request: acknowledges a pending push subscription and tells the hooks. */
  private async touch(entry: LiveSession): Promise<void> {
    if (entry.session.push !== undefined && !entry.session.push.active) {
      await this.d.sessions.commit(entry, core.activatePush(entry.session, this.d.clock.now()));
    }
    // An ended chat has no timers to reset (and must not get a timer entry back).
    if (entry.session.state !== 'ended') this.d.hooks?.requested(entry.session.chatId);
  }

  /** A customer message or file wakes a dormant chat: it goes back to the queue, to its last agent first. */
  private wakeOnMessage(before: Session, change: Change): Change {
    if (before.state !== 'dormant' || !change.events.some((e) => e.type === 'Message' || e.type === 'FileUploaded')) return change;
    return { session: wake(change.session, this.d.lastAgentMs, this.d.clock.now(), this.d.agentOnline).session, events: change.events };
  }

  /** The limits arrive as a Notice `file-client-cfg-get` that is not part of the transcript (wire facts §7). */
  private limits(entry: LiveSession): ClientReply {
    const s = entry.session;
    core.assertOpen(s);
    const client = core.clientOf(s);
    const userData = limitsUserData(this.d.fileLimits, s);
    const notice: ReplyMessage = {
      from: { nickname: client.nickname, participantId: client.participantId, type: client.type },
      type: 'Notice',
      text: 'file-client-cfg-get',
      utcTime: this.d.clock.now(),
      userData,
    };
    return { session: s, messages: [notice], nextPosition: s.lastIndex + 1, userData };
  }

  async upload(chatId: string, serviceName: string, id: ClientIdentity, file: UploadInput, position: Position): Promise<ClientReply> {
    return this.d.sessions.serial(chatId, async (entry) => {
      authorize(entry.session, serviceName, id);
      const before = await this.before(entry, position);
      if (core.alreadyApplied(entry.session, id.requestId)) {
        const known = [...entry.session.files].reverse().find((f) => f.name === file.fileName && f.size === file.bytes.length);
        return { ...(await this.reply(entry, before)), ...(known === undefined ? {} : { userData: { 'file-id': known.fileId } }) };
      }
      core.assertOpen(entry.session);
      // A request of the client like any other, refused or not: push acknowledged, disconnect timeout restarted.
      await this.touch(entry);
      // The session as the touch left it (its push acknowledgement must not be written back over).
      const s = entry.session;
      checkUploadAllowed(this.d.fileLimits, s, file.fileName);
      checkUploadSize(this.d.fileLimits, s, file.bytes.length);
      const now = this.d.clock.now();
      const meta: FileMeta = {
        fileId: this.d.ids.fileId(),
        name: file.fileName,
        contentType: file.contentType,
        size: file.bytes.length,
        uploadedBy: CLIENT_PARTICIPANT_ID,
        uploadedAt: now,
        downloads: 0,
        deleted: false,
        ...(file.description === undefined || file.description === '' ? {} : { description: file.description }),
      };
      const change = this.wakeOnMessage(s, core.addFile(s, meta, now));
      await this.d.sessions.commit(entry, core.rememberRequest(change, id.requestId), { fileId: meta.fileId, bytes: file.bytes });
      return { ...(await this.reply(entry, before, change.events)), userData: { 'file-id': meta.fileId } };
    });
  }

  /**
   * The events a reply from `position` carries that exist before the operation changes anything. Read
   * first, so that a failed read changes nothing (the client is told UNAVAILABLE: nothing was changed).
   */
  private before(entry: LiveSession, position: Position): Before | Promise<Before> {
    const from = firstWanted(position);
    const upTo = entry.session.lastIndex;
    if (from === undefined || from > upTo) return { from, upTo, events: [] };
    return this.d.sessions.transcript(entry, from).then((events) => ({ from, upTo, events }));
  }

  /**
   * The reply: the session as it is now, with the events read before the operation and those the
   * operation appended (`appended`, at the indexes after `before.upTo`).
   */
  private reply(entry: LiveSession, before: Before, appended: readonly ChatEvent[] = []): ClientReply | Promise<ClientReply> {
    const s = entry.session;
    const from = before.from;
    if (from === undefined) return { session: s, messages: [], nextPosition: s.lastIndex + 1 };
    const messages = [...before.events, ...appended.filter((e) => e.index >= from && e.index > before.upTo)];
    // Every event from `from` to lastIndex, or (should anything else have appended meanwhile) read again.
    if (messages.length === Math.max(0, s.lastIndex - Math.max(1, from) + 1)) return { session: s, messages, nextPosition: s.lastIndex + 1 };
    return this.d.sessions.transcript(entry, from).then((read) => ({ session: s, messages: read, nextPosition: s.lastIndex + 1 }));
  }

  async download(chatId: string, serviceName: string, id: ClientIdentity, fileId: string): Promise<{ meta: FileMeta; bytes: Buffer }> {
    return this.d.sessions.serial(chatId, async (entry) => {
      authorize(entry.session, serviceName, id);
      // A request of the client like any other: its disconnect timeout starts again.
      await this.touch(entry);
      const meta = core.findFile(entry.session, fileId);
      // The same call again (a gateway whose connection dropped asks once more): served, not counted twice.
      const again = core.alreadyApplied(entry.session, id.requestId);
      if (!again) checkDownload(this.d.fileLimits, meta);
      const bytes = await this.d.sessions.readFile(chatId, fileId);
      if (bytes === undefined) throw new ParleyError('UNKNOWN_FILE');
      if (!again) await this.d.sessions.commit(entry, core.rememberRequest(core.countDownload(entry.session, fileId, this.d.clock.now()), id.requestId));
      return { meta, bytes };
    });
  }
}

function isTrue(v: string | undefined): boolean {
  return v !== undefined && ['true', '1', 'yes'].includes(v.trim().toLowerCase());
}


/**
 * secureKey is the only required identity (wire facts §7); userId is checked when present; alias is not.
 * A session of another service is reported as unknown, so chat ids do not leak across services.
 */
export function authorize(s: Session, serviceName: string, id: ClientIdentity): void {
  if (s.serviceName !== serviceName) throw new ParleyError('UNKNOWN_CHAT');
  if (id.secureKey === undefined || id.secureKey === '') throw new ParleyError('MISSING_PARAMETER', 'secureKey is required.');
  const keyOk = constantTimeEqual(id.secureKey, s.secureKey);
  const userOk = id.userId === undefined || id.userId === '' || constantTimeEqual(id.userId, s.userId);
  if (!keyOk || !userOk) throw new ParleyError('ACCESS_DENIED');
}

function checkPushUrl(raw: string): string {
  const t = raw.trim();
  if (t === '') throw new ParleyError('MISSING_PARAMETER', 'pushUrl is required.');
  let u: URL;
  try {
    u = new URL(t);
  } catch {
    throw new ParleyError('INVALID_PARAMETER', 'pushUrl must be an absolute http(s) URL.');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new ParleyError('INVALID_PARAMETER', 'pushUrl must be an absolute http(s) URL.');
  }
  return t;
}
