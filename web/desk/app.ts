/**
 * The Parley agent desk: sign in, see the queue, my chats and the workbin live over the agent WebSocket,
 * talk to customers, hold / transfer / leave / close, and read the contact history.
 *
 * State lives in plain objects below; rendering is direct DOM (dom.ts). The transcript of a chat merges
 * events by index, so live frames, catch-up syncs after a reconnect and REST answers never duplicate.
 */
import { AgentApi, ApiError, type ChatAction } from './api.ts';
import { byId, clear, h } from './dom.ts';
import { Transcript, offeredTo, since, typingAfter, type Typing } from './model.ts';
import { dateTime, renderEvent, speak, type FileOpener } from './render.ts';
import { DeskSocket, type SocketStatus } from './socket.ts';
import { TypingNotifier } from './typing.ts';
import type { Agent, ChatEvent, ChatSummary, Overview, ServerFrame } from './types.ts';

const STORE_KEY = 'parley.desk.session';

interface Entry {
  summary: ChatSummary;
  transcript?: Transcript;
  /** The transcript is being fetched: live events are kept, gaps are not chased yet. */
  loading: boolean;
  typing?: Typing;
  unread: number;
  draft: string;
  notifier?: TypingNotifier;
  /** When the chat entered the queue as this desk saw it. */
  waitingSince?: number;
  /** Without a transcript: the highest event index already counted as unread (an event is counted once). */
  counted?: number;
}

type ListName = 'waiting' | 'mine' | 'workbin';
type Relation = 'mine' | 'offered' | 'workbin' | 'other';

type View = { kind: 'none' } | { kind: 'chat'; chatId: string; fromHistory: boolean } | { kind: 'history' };

interface ChatDom {
  chatId: string;
  relation: Relation;
  title: HTMLElement;
  sub: HTMLElement;
  actions: HTMLElement;
  banner: HTMLElement;
  log: HTMLOListElement;
  typing: HTMLElement;
  flash: HTMLElement;
  textarea?: HTMLTextAreaElement;
  sendButton?: HTMLButtonElement;
  /** What the action buttons are now (labels and disabled states). */
  actionsKey?: string;
}

const api = new AgentApi();
let agent: Agent | undefined;
const chats = new Map<string, Entry>();
const lists: Record<ListName, string[]> = { waiting: [], mine: [], workbin: [] };
let view: View = { kind: 'none' };
let chatDom: ChatDom | undefined;
let busy = false;
let historyChats: ChatSummary[] | undefined;
let historyError = '';
/** `ready` frames seen since sign-in (the first one is the initial load). */
let overviews = 0;

const socket = new DeskSocket(() => api.token, {
  frame: onFrame,
  status: showStatus,
  authFailed: () => expire(),
});

// ---------------------------------------------------------------------------------------------------
// Sign-in and session

function saveSession(token: string, a: Agent): void {
  try {
    sessionStorage.setItem(STORE_KEY, JSON.stringify({ token, agent: a }));
  } catch {
    // Private mode without storage: the session lasts for this page only.
  }
}

function loadSession(): { token: string; agent: Agent } | undefined {
  try {
    const raw = sessionStorage.getItem(STORE_KEY);
    if (raw === null) return undefined;
    const v = JSON.parse(raw) as { token?: unknown; agent?: unknown };
    if (typeof v.token !== 'string' || typeof v.agent !== 'object' || v.agent === null) return undefined;
    return { token: v.token, agent: v.agent as Agent };
  } catch {
    return undefined;
  }
}

function clearSession(): void {
  try {
    sessionStorage.removeItem(STORE_KEY);
  } catch {
    // nothing kept
  }
}

function showSignIn(message = ''): void {
  byId('desk').hidden = true;
  byId('signin').hidden = false;
  document.title = 'Sign in · Parley agent desk';
  byId('signin-error').textContent = message;
  const id = byId<HTMLInputElement>('agent-id');
  (id.value === '' ? id : byId<HTMLInputElement>('password')).focus();
}

async function onSignIn(ev: Event): Promise<void> {
  ev.preventDefault();
  const idInput = byId<HTMLInputElement>('agent-id');
  const pwInput = byId<HTMLInputElement>('password');
  const err = byId('signin-error');
  const button = byId<HTMLButtonElement>('signin-submit');
  const agentId = idInput.value.trim();
  if (agentId === '' || pwInput.value === '') {
    err.textContent = 'Enter your agent ID and password.';
    (agentId === '' ? idInput : pwInput).focus();
    return;
  }
  err.textContent = '';
  button.disabled = true;
  button.textContent = 'Signing in…';
  try {
    const r = await AgentApi.login(agentId, pwInput.value);
    pwInput.value = '';
    saveSession(r.token, r.agent);
    enterDesk(r.token, r.agent);
    // The form is gone: start keyboard users at the chat lists.
    byId('chats-nav').focus();
  } catch (e) {
    err.textContent =
      e instanceof ApiError && e.code === 'AGENT_AUTH_FAILED' ? 'Wrong agent ID or password.' : e instanceof ApiError ? e.message : 'Sign-in failed.';
    pwInput.select();
    pwInput.focus();
  } finally {
    button.disabled = false;
    button.textContent = 'Sign in';
  }
}

function enterDesk(token: string, a: Agent): void {
  api.token = token;
  agent = a;
  byId('signin').hidden = true;
  byId('desk').hidden = false;
  byId('me-name').textContent = `${a.name} (${a.agentId})`;
  view = { kind: 'none' };
  renderLists();
  renderMain();
  socket.start();
}

function resetDesk(): void {
  socket.stop();
  for (const e of chats.values()) e.notifier?.dispose();
  chats.clear();
  lists.waiting = [];
  lists.mine = [];
  lists.workbin = [];
  view = { kind: 'none' };
  chatDom = undefined;
  historyChats = undefined;
  overviews = 0;
  agent = undefined;
  api.token = '';
  clear(byId('main'));
}

async function signOut(): Promise<void> {
  const pending = api.logout().catch(() => undefined);
  resetDesk();
  clearSession();
  showSignIn('You are signed out.');
  await pending;
}

/** The token stopped working (expired, signed out elsewhere, server restarted): back to the sign-in form. */
function expire(): void {
  if (agent === undefined) return;
  resetDesk();
  clearSession();
  showSignIn('Your session has ended. Sign in again.');
}

api.onUnauthorized = () => expire();

// ---------------------------------------------------------------------------------------------------
// Live state

function me(): string {
  return agent?.agentId ?? '';
}

function entryOf(s: ChatSummary): Entry {
  let e = chats.get(s.chatId);
  if (e === undefined) {
    e = { summary: s, loading: false, unread: 0, draft: '' };
    chats.set(s.chatId, e);
  } else if (s.lastIndex > e.summary.lastIndex || (s.lastIndex === e.summary.lastIndex && s.updatedAt >= e.summary.updatedAt)) {
    e.summary = s;
  }
  return e;
}

function listOf(chatId: string): ListName | undefined {
  for (const name of ['mine', 'waiting', 'workbin'] as const) if (lists[name].includes(chatId)) return name;
  return undefined;
}

function relationOf(chatId: string): Relation {
  switch (listOf(chatId)) {
    case 'mine':
      return 'mine';
    case 'waiting':
      return 'offered';
    case 'workbin':
      return 'workbin';
    default:
      return 'other';
  }
}

/** Puts a chat into the list it belongs to now; `offered` comes from the server when known. */
function place(s: ChatSummary, offered?: boolean, quiet = false): void {
  const e = entryOf(s);
  const cur = listOf(s.chatId);
  const sum = e.summary;
  let next: ListName | undefined;
  const isOffered = offered ?? (cur === 'waiting' || offeredTo(sum, me(), Date.now()));
  if (sum.state === 'waiting' && isOffered) next = 'waiting';
  else if (sum.state === 'active' && sum.agents.includes(me())) next = 'mine';
  else if (sum.state === 'dormant' && sum.workbinAgentId === me()) next = 'workbin';
  if (next === cur) {
    if (next === 'workbin') sortWorkbin();
    return;
  }
  if (cur !== undefined) lists[cur] = lists[cur].filter((id) => id !== s.chatId);
  if (next === 'waiting') {
    e.waitingSince = sum.queuedAt ?? sum.updatedAt;
    lists.waiting.push(s.chatId);
    lists.waiting.sort((a, b) => (chats.get(a)?.waitingSince ?? 0) - (chats.get(b)?.waitingSince ?? 0));
    if (!quiet) announce(`New chat in the queue: ${sum.nickname}${sum.subject === '' ? '' : `, ${sum.subject}`}`);
  } else if (next === 'mine') {
    lists.mine.push(s.chatId);
  } else if (next === 'workbin') {
    lists.workbin.push(s.chatId);
    sortWorkbin();
  }
  if (cur === 'mine') {
    e.notifier?.dispose();
    e.notifier = undefined;
    if (sum.state === 'ended' && !quiet) announce(`The chat with ${sum.nickname} has ended.`);
  }
}

function sortWorkbin(): void {
  lists.workbin.sort((a, b) => (chats.get(b)?.summary.updatedAt ?? 0) - (chats.get(a)?.summary.updatedAt ?? 0));
}

/** Forgets chats that are in no list and not on screen. */
function prune(): void {
  const shown = view.kind === 'chat' ? view.chatId : undefined;
  for (const [id, e] of chats) {
    if (id !== shown && listOf(id) === undefined) {
      e.notifier?.dispose();
      chats.delete(id);
    }
  }
}

/**
 * Chats caught up after a reconnect: their sync answers are taken like live events (unread counts and
 * announcements), since they are what the agent missed.
 */
const catchingUp = new Set<string>();

/** `reconnected`: the overview of a `ready` frame after the desk was offline (what came meanwhile is unread). */
function applyOverview(o: Overview, reconnected = false): void {
  const before = new Set(lists.waiting);
  // What the desk had seen of its chats before this overview (after a reconnect: what it may have missed).
  const seen = new Map(lists.mine.map((id) => [id, chats.get(id)?.summary.lastIndex ?? 0] as const));
  lists.waiting = [];
  lists.mine = [];
  lists.workbin = [];
  for (const s of o.waiting) place(s, true, true);
  for (const s of o.mine) place(s, false, true);
  for (const s of o.workbin ?? []) place(s, false, true);
  prune();
  const fresh = lists.waiting.filter((id) => !before.has(id)).length;
  if (overviews++ > 0 && fresh > 0) announce(`${fresh} new ${fresh === 1 ? 'chat' : 'chats'} in the queue.`);
  else if (overviews === 1 && lists.waiting.length > 0) announce(`${lists.waiting.length} ${lists.waiting.length === 1 ? 'chat' : 'chats'} waiting in the queue.`);
  // Catch up every transcript the desk holds, from the first event it has not seen; and my chats whose
  // transcript it never loaded but that moved meanwhile (for their unread count).
  for (const [id, e] of chats) {
    if (e.transcript === undefined) {
      const had = seen.get(id);
      if (reconnected && had !== undefined && listOf(id) === 'mine' && e.summary.lastIndex > had && socket.send({ type: 'sync', chatId: id, from: had + 1 })) {
        e.counted = Math.max(e.counted ?? 0, had);
        catchingUp.add(id);
      }
      continue;
    }
    if (listOf(id) !== undefined) {
      if (socket.send({ type: 'sync', chatId: id, from: e.transcript.contiguous + 1 })) {
        if (reconnected) catchingUp.add(id);
      } else void loadTranscript(id);
    } else if (e.summary.state !== 'ended') {
      void refreshSummary(id);
    }
  }
}

/** The chat on screen left every list while the desk was offline: fetch what it is now (if still readable). */
async function refreshSummary(chatId: string): Promise<void> {
  try {
    const v = await api.transcript(chatId, (chats.get(chatId)?.transcript?.contiguous ?? 0) + 1);
    mergeEvents(v.chat, v.events, false);
  } catch (e) {
    const entry = chats.get(chatId);
    if (entry !== undefined && e instanceof ApiError && e.code === 'AGENT_NOT_IN_CHAT') {
      entry.summary = { ...entry.summary, state: 'active' };
    }
  }
  renderAll();
}

function onFrame(f: ServerFrame): void {
  if (agent === undefined) return;
  switch (f.type) {
    case 'ready':
      agent = f.agent;
      applyOverview(f.overview, overviews > 0);
      if (f.overview.workbin === undefined) void api.overview().then((o) => applyOverview(o), () => undefined).then(renderAll);
      renderAll();
      return;
    case 'chat': {
      const wasShownRelation = view.kind === 'chat' && view.chatId === f.chat.chatId ? relationOf(f.chat.chatId) : undefined;
      place(f.chat, f.offered);
      // A chat this desk has a transcript of moved on without events frames for it (offered to this agent,
      // not yet taken: the customer wrote more): fetch what is new.
      const known = chats.get(f.chat.chatId);
      if (known?.transcript !== undefined && !known.loading && f.chat.lastIndex > known.transcript.contiguous) {
        if (!socket.send({ type: 'sync', chatId: f.chat.chatId, from: known.transcript.contiguous + 1 })) void loadTranscript(f.chat.chatId);
      }
      prune();
      renderLists();
      // Even another chat's move can matter on screen (capacity for Accept).
      if (view.kind === 'chat' && (wasShownRelation !== undefined || relationOf(view.chatId) === 'offered')) renderMain();
      return;
    }
    case 'events':
      mergeEvents(f.chat, f.events, true);
      return;
    case 'sync':
      mergeEvents(f.chat, f.events, catchingUp.delete(f.chat.chatId));
      return;
    case 'error':
      // A sync of a chat that is no longer readable, or a stray frame: nothing to show.
      return;
    case 'pong':
      return;
  }
}

/**
 * New events of a chat (a live frame, a catch-up sync or an action's answer). Events of chats the
 * desk does not track are ignored: the server also streams chats this agent left long ago.
 */
function mergeEvents(s: ChatSummary, events: readonly ChatEvent[], live: boolean): void {
  const tracked = listOf(s.chatId) !== undefined || (view.kind === 'chat' && view.chatId === s.chatId);
  const before = tracked ? relationOf(s.chatId) : undefined;
  if (!tracked) {
    // A chat this desk knew nothing of became ours or offered to us (woken, transferred to us).
    if (s.state === 'active' && s.agents.includes(me())) place(s);
    else if (s.state === 'dormant' && s.workbinAgentId === me()) place(s);
    else if (s.state === 'waiting' && offeredTo(s, me(), Date.now())) place(s);
    else return;
  } else {
    place(s);
  }
  const e = chats.get(s.chatId);
  if (e === undefined) return;
  const shown = view.kind === 'chat' && view.chatId === s.chatId;
  if (e.transcript === undefined) {
    if (live) {
      // No transcript to drop repeats: an event a catch-up and a live frame both carry is counted once.
      noteUnseen(e, events.filter((ev) => ev.index > (e.counted ?? 0)), shown);
      for (const ev of events) e.counted = Math.max(e.counted ?? 0, ev.index);
    }
    if (shown) void loadTranscript(s.chatId);
    renderLists();
    return;
  }
  const first = [...events].sort((a, b) => a.index - b.index)[0];
  const gap = live && !e.loading && first !== undefined && e.transcript.hasGapBefore(first.index);
  const r = e.transcript.merge(events);
  if (r.appended) for (const ev of r.added) e.typing = typingAfter(e.typing, ev);
  else e.typing = e.transcript.events.reduce<Typing | undefined>((t, ev) => typingAfter(t, ev), undefined);
  if (live) noteUnseen(e, r.added, shown);
  if (gap && !socket.send({ type: 'sync', chatId: s.chatId, from: e.transcript.contiguous + 1 })) void loadTranscript(s.chatId);
  renderLists();
  if (shown) {
    if (before !== relationOf(s.chatId) || chatDom === undefined || chatDom.chatId !== s.chatId) renderMain();
    else {
      updateChatHead(e);
      if (r.appended) appendEvents(r.added);
      else renderTranscript(e);
      renderTyping(e);
    }
  }
}

function noteUnseen(e: Entry, events: readonly ChatEvent[], shown: boolean): void {
  if (shown && document.visibilityState === 'visible') return;
  for (const ev of events) {
    const said = speak(ev);
    if (said === undefined) continue;
    if (listOf(e.summary.chatId) === 'mine') e.unread++;
    if (!shown) announce(said);
  }
}

async function loadTranscript(chatId: string): Promise<void> {
  const e = chats.get(chatId);
  if (e === undefined || e.loading) return;
  e.loading = true;
  e.transcript ??= new Transcript();
  try {
    const v = await api.transcript(chatId, 1);
    e.loading = false;
    mergeEvents(v.chat, v.events, false);
  } catch (err) {
    e.loading = false;
    if (view.kind === 'chat' && view.chatId === chatId && chatDom !== undefined) {
      chatDom.flash.textContent = err instanceof ApiError && err.code === 'AGENT_NOT_IN_CHAT' ? 'This chat is handled by another agent; its transcript is private.' : `The transcript could not be loaded: ${errorText(err)}`;
      chatDom.log.setAttribute('aria-busy', 'false');
    }
    if (err instanceof ApiError && err.code === 'AGENT_NOT_IN_CHAT') e.transcript = undefined;
  }
}

// ---------------------------------------------------------------------------------------------------
// Rendering: lists

/** Lists and the open chat; the history table is rebuilt only when asked (it would lose the focus). */
function renderAll(): void {
  renderLists();
  if (view.kind !== 'history') renderMain();
}

function renderLists(): void {
  if (agent === undefined) return;
  const focused = document.activeElement instanceof HTMLElement ? document.activeElement.dataset['listChat'] : undefined;
  renderList('waiting', 'queue');
  renderList('mine', 'mine');
  renderList('workbin', 'workbin');
  byId('me-load').textContent = `${lists.mine.length} of ${agent.maxChats} chats`;
  const hist = byId('history-open');
  if (view.kind === 'history') hist.setAttribute('aria-current', 'page');
  else hist.removeAttribute('aria-current');
  document.title = `${lists.waiting.length > 0 ? `(${lists.waiting.length}) ` : ''}Parley agent desk`;
  if (focused !== undefined) document.querySelector<HTMLElement>(`[data-list-chat="${CSS.escape(focused)}"]`)?.focus();
}

function renderList(name: ListName, domName: string): void {
  const ul = byId(`${domName}-list`);
  const ids = lists[name];
  byId(`${domName}-count`).textContent = String(ids.length);
  byId(`${domName}-empty`).hidden = ids.length > 0;
  const shown = view.kind === 'chat' ? view.chatId : undefined;
  const items = ids.flatMap((id) => {
    const e = chats.get(id);
    if (e === undefined) return [];
    const s = e.summary;
    const line2: Array<Node | string> = [];
    if (name === 'waiting') {
      line2.push(h('span', { class: 'wait', 'data-since': e.waitingSince ?? s.updatedAt }, waitText(e.waitingSince ?? s.updatedAt)));
      if (s.routedTo === me()) line2.push(h('span', { class: 'tag tag-back' }, 'for you'));
    } else if (name === 'workbin') {
      const ago = since(Date.now() - s.updatedAt);
      line2.push(h('span', { class: 'held', title: dateTime(s.updatedAt) }, ago === 'just now' ? 'on hold, just now' : `on hold ${ago}`));
    } else {
      line2.push(h('span', { class: 'service' }, s.serviceName));
    }
    if (s.asyncMode) line2.push(h('span', { class: 'tag' }, 'async'));
    return [
      h(
        'li',
        {},
        h(
          'button',
          {
            type: 'button',
            class: `chat-item${id === shown ? ' current' : ''}`,
            'data-chat-id': id,
            'data-list-chat': `${name}:${id}`,
            'aria-current': id === shown ? 'true' : undefined,
            onclick: () => select(id, false),
          },
          h(
            'span',
            { class: 'line1' },
            h('span', { class: 'nick' }, s.nickname),
            e.unread > 0 ? h('span', { class: 'badge' }, String(e.unread), h('span', { class: 'visually-hidden' }, ' unread')) : '',
          ),
          h('span', { class: 'subject' }, s.subject === '' ? 'No subject' : s.subject),
          h('span', { class: 'line2' }, ...line2),
        ),
      ),
    ];
  });
  ul.replaceChildren(...items);
}

function waitText(t: number): string {
  const s = since(Date.now() - t);
  return s === 'just now' ? 'waiting, just now' : `waiting ${s}`;
}

function tickWaits(): void {
  for (const el of document.querySelectorAll<HTMLElement>('.wait[data-since]')) el.textContent = waitText(Number(el.dataset['since']));
}

// ---------------------------------------------------------------------------------------------------
// Rendering: the main pane

function select(chatId: string, fromHistory: boolean, s?: ChatSummary): void {
  const prev = view.kind === 'chat' ? chats.get(view.chatId) : undefined;
  if (prev !== undefined && chatDom?.textarea !== undefined) prev.draft = chatDom.textarea.value;
  if (prev !== undefined && prev.summary.chatId !== chatId) void prev.notifier?.stop();
  if (s !== undefined) entryOf(s);
  const e = chats.get(chatId);
  if (e === undefined) return;
  view = { kind: 'chat', chatId, fromHistory };
  e.unread = 0;
  prune();
  renderLists();
  renderMain();
  if (e.transcript === undefined || (fromHistory && !e.loading)) void loadTranscript(chatId);
  // Straight to what the agent does next: the reply box, or Accept / Resume.
  const next = chatDom?.textarea ?? chatDom?.actions.querySelector('button') ?? byId('main');
  next.focus();
}

function renderMain(): void {
  const main = byId('main');
  if (view.kind === 'history') {
    chatDom = undefined;
    renderHistory(main);
    return;
  }
  if (view.kind === 'none') {
    chatDom = undefined;
    main.replaceChildren(
      h(
        'div',
        { class: 'placeholder' },
        h('h2', {}, 'No chat open'),
        h('p', {}, lists.waiting.length > 0 ? 'Pick a chat from the queue to see it and accept it.' : 'Waiting chats appear in the queue as soon as customers start them.'),
      ),
    );
    return;
  }
  const e = chats.get(view.chatId);
  if (e === undefined) {
    view = { kind: 'none' };
    renderMain();
    return;
  }
  const relation = relationOf(view.chatId);
  if (chatDom !== undefined && chatDom.chatId === view.chatId && chatDom.relation === relation) {
    updateChatHead(e);
    return;
  }
  if (chatDom?.textarea !== undefined && chatDom.chatId === view.chatId) e.draft = chatDom.textarea.value;
  buildChat(main, e, relation);
}

function buildChat(main: HTMLElement, e: Entry, relation: Relation): void {
  const s = e.summary;
  const title = h('h2', { id: 'chat-title' }, s.nickname);
  const sub = h('p', { class: 'chat-sub' });
  const actions = h('div', { class: 'actions', role: 'group', 'aria-label': 'Chat actions' });
  const banner = h('p', { class: 'banner' });
  const log = h('ol', { class: 'transcript', role: 'log', 'aria-live': 'polite', 'aria-label': `Conversation with ${s.nickname}`, tabindex: '0' });
  const typing = h('p', { class: 'typing', 'aria-live': 'polite' });
  const flash = h('p', { class: 'flash', role: 'alert' });
  const dom: ChatDom = { chatId: s.chatId, relation, title, sub, actions, banner, log, typing, flash };
  const parts: Node[] = [
    h('header', { class: 'chat-head' }, h('div', { class: 'chat-id' }, title, sub), actions),
    banner,
    log,
    typing,
    flash,
  ];
  if (relation === 'mine') {
    const textarea = h('textarea', {
      id: 'reply',
      rows: '3',
      placeholder: 'Write a reply. Enter sends; Shift+Enter starts a new line.',
      'aria-describedby': 'reply-hint',
    });
    textarea.value = e.draft;
    const sendButton = h('button', { type: 'submit', class: 'primary' }, 'Send');
    textarea.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        void sendReply();
      }
    });
    textarea.addEventListener('input', () => {
      const cur = chats.get(s.chatId);
      if (cur === undefined || relationOf(s.chatId) !== 'mine') return;
      cur.draft = textarea.value;
      notifierOf(cur).input(textarea.value);
    });
    const form = h(
      'form',
      { class: 'composer', 'aria-label': 'Reply' },
      h('label', { for: 'reply', class: 'visually-hidden' }, `Reply to ${s.nickname}`),
      textarea,
      sendButton,
      h('p', { id: 'reply-hint', class: 'visually-hidden' }, 'Enter sends, Shift+Enter starts a new line.'),
    );
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      void sendReply();
    });
    parts.push(form);
    dom.textarea = textarea;
    dom.sendButton = sendButton;
  }
  chatDom = dom;
  main.replaceChildren(h('section', { class: `chat chat-${relation}`, 'aria-labelledby': 'chat-title', 'data-chat-id': s.chatId }, ...parts));
  updateChatHead(e);
  renderTranscript(e);
  renderTyping(e);
}

function stateText(s: ChatSummary): string {
  switch (s.state) {
    case 'waiting':
      return 'Waiting';
    case 'active':
      return 'Active';
    case 'dormant':
      return 'On hold';
    case 'ended':
      return 'Ended';
  }
}

function updateChatHead(e: Entry): void {
  const d = chatDom;
  if (d === undefined || agent === undefined) return;
  const s = e.summary;
  d.title.textContent = s.nickname;
  d.sub.replaceChildren(
    s.subject === '' ? 'No subject' : s.subject,
    ' · ',
    s.serviceName,
    ' · ',
    h('span', { class: `state state-${s.state}` }, stateText(s)),
    s.asyncMode ? ' · async' : '',
  );
  const btn = (label: string, action: () => void, cls = '') => h('button', { type: 'button', class: cls, disabled: busy, onclick: action }, label);
  const acts: HTMLElement[] = [];
  let bannerText = '';
  switch (d.relation) {
    case 'mine':
      if (s.asyncMode) acts.push(btn('Hold', () => void act('hold')));
      acts.push(btn('Transfer…', () => void openTransfer()));
      acts.push(btn('Leave', () => void act('leave')));
      acts.push(btn('Close chat', () => void act('close'), 'danger'));
      if (s.agents.length > 1) bannerText = `Also in this chat: ${s.agents.filter((a) => a !== me()).join(', ')}.`;
      break;
    case 'offered': {
      const full = lists.mine.length >= agent.maxChats;
      acts.push(h('button', { type: 'button', class: 'primary', disabled: busy || full, onclick: () => void act('accept') }, 'Accept'));
      const ago = since(Date.now() - (e.waitingSince ?? s.updatedAt));
      const wait = ago === 'just now' ? 'Just joined the queue.' : `In the queue for ${ago}.`;
      bannerText = full
        ? `${wait} You are at your limit of ${agent.maxChats} ${agent.maxChats === 1 ? 'chat' : 'chats'}; finish one to accept this.`
        : `${wait} ${s.routedTo === me() ? 'Offered to you first. ' : ''}Accept to join the conversation.`;
      break;
    }
    case 'workbin':
      acts.push(h('button', { type: 'button', class: 'primary', disabled: busy, onclick: () => void act('resume') }, 'Resume'));
      bannerText = `On hold in your workbin since ${dateTime(s.updatedAt)}. Resume to continue; a customer message brings it back to your queue.`;
      break;
    case 'other':
      if (s.state === 'ended') bannerText = 'This chat has ended. The transcript is read-only.';
      else if (s.state === 'dormant') bannerText = `On hold${s.workbinAgentId === undefined ? '' : ` in ${s.workbinAgentId}’s workbin`}. The transcript is read-only.`;
      else if (s.state === 'active') bannerText = 'Another agent is handling this chat.';
      else bannerText = 'Waiting in the queue for another agent.';
      break;
  }
  if (view.kind === 'chat' && view.fromHistory) acts.push(btn('Back to contact history', () => showHistory()));
  // Rebuild the buttons only when they change, and keep the keyboard focus on the same button.
  const key = acts.map((b) => `${b.textContent ?? ''}:${b.hasAttribute('disabled')}`).join('|');
  if (key !== d.actionsKey) {
    d.actionsKey = key;
    const focused = d.actions.contains(document.activeElement) ? document.activeElement?.textContent : undefined;
    d.actions.replaceChildren(...acts);
    if (focused !== undefined) acts.find((b) => b.textContent === focused && !b.hasAttribute('disabled'))?.focus();
  }
  if (d.banner.textContent !== bannerText) d.banner.textContent = bannerText;
  d.banner.hidden = bannerText === '';
  if (d.sendButton !== undefined) d.sendButton.disabled = busy;
}

function renderTranscript(e: Entry): void {
  const d = chatDom;
  if (d === undefined) return;
  if (e.transcript === undefined || (e.loading && e.transcript.events.length === 0)) {
    d.log.setAttribute('aria-busy', 'true');
    d.log.replaceChildren(h('li', { class: 'event loading' }, 'Loading the transcript…'));
    return;
  }
  d.log.setAttribute('aria-busy', 'false');
  const open = fileOpener(e.summary.chatId);
  const items = e.transcript.events.flatMap((ev) => renderEvent(ev, agent?.name ?? '', open) ?? []);
  d.log.replaceChildren(...items);
  scrollToEnd(d.log);
}

function appendEvents(events: readonly ChatEvent[]): void {
  const d = chatDom;
  if (d === undefined) return;
  d.log.querySelector('.loading')?.remove();
  d.log.setAttribute('aria-busy', 'false');
  const nearEnd = d.log.scrollHeight - d.log.scrollTop - d.log.clientHeight < 80;
  const open = view.kind === 'chat' ? fileOpener(view.chatId) : undefined;
  for (const ev of events) {
    const li = renderEvent(ev, agent?.name ?? '', open);
    if (li !== undefined) d.log.append(li);
  }
  if (nearEnd) scrollToEnd(d.log);
}

/** Opens a customer's file: fetched with the agent's token and handed to the browser as a download. */
function fileOpener(chatId: string): FileOpener {
  return (fileId, name, button) => {
    button.disabled = true;
    button.textContent = 'Opening…';
    api.file(chatId, fileId).then(
      (blob) => {
        const url = URL.createObjectURL(blob);
        const a = h('a', { href: url, download: name, hidden: '' });
        document.body.append(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(url), 60_000);
        button.disabled = false;
        button.textContent = 'Open';
      },
      (err: unknown) => {
        button.disabled = false;
        button.textContent = 'Open';
        const text = err instanceof ApiError && err.code === 'UNKNOWN_FILE' ? `“${name}” is no longer available.` : `“${name}” could not be opened: ${errorText(err)}`;
        if (chatDom !== undefined) chatDom.flash.textContent = text;
        announce(text);
      },
    );
  };
}

function scrollToEnd(el: HTMLElement): void {
  el.scrollTop = el.scrollHeight;
}

function renderTyping(e: Entry): void {
  const d = chatDom;
  if (d === undefined) return;
  const t = e.typing;
  if (t === undefined || e.summary.state === 'ended') {
    d.typing.replaceChildren();
    d.typing.classList.remove('on');
    return;
  }
  d.typing.classList.add('on');
  d.typing.replaceChildren(
    h('span', { class: 'dots', 'aria-hidden': 'true' }, h('span', {}), h('span', {}), h('span', {})),
    `${t.nickname} is typing…`,
    t.text === '' ? '' : h('q', { class: 'preview' }, t.text),
  );
}

// ---------------------------------------------------------------------------------------------------
// Actions

function notifierOf(e: Entry): TypingNotifier {
  const chatId = e.summary.chatId;
  e.notifier ??= new TypingNotifier((typing) => api.act(chatId, 'typing', { typing }));
  return e.notifier;
}

function errorText(e: unknown): string {
  return e instanceof ApiError ? e.message : e instanceof Error ? e.message : String(e);
}

async function sendReply(): Promise<void> {
  const d = chatDom;
  if (d?.textarea === undefined || d.relation !== 'mine') return;
  const e = chats.get(d.chatId);
  const text = d.textarea.value;
  if (e === undefined || text.trim() === '') return;
  const textarea = d.textarea;
  textarea.value = '';
  e.draft = '';
  d.flash.textContent = '';
  try {
    await notifierOf(e).stop();
    const v = await api.act(d.chatId, 'send', { text });
    mergeEvents(v.chat, v.events, false);
  } catch (err) {
    if (textarea.value === '') textarea.value = text;
    e.draft = textarea.value;
    if (chatDom?.chatId === e.summary.chatId) chatDom.flash.textContent = `Not sent: ${errorText(err)}`;
  }
}

const DONE: Partial<Record<ChatAction, (nick: string) => string>> = {
  accept: (n) => `You joined the chat with ${n}.`,
  resume: (n) => `You resumed the chat with ${n}.`,
  hold: (n) => `The chat with ${n} is on hold in your workbin.`,
  leave: (n) => `You left the chat with ${n}.`,
  close: (n) => `The chat with ${n} is closed.`,
  transfer: (n) => `The chat with ${n} was transferred.`,
};

async function act(action: ChatAction, body: Record<string, unknown> = {}): Promise<boolean> {
  const d = chatDom;
  if (d === undefined || busy) return false;
  const chatId = d.chatId;
  const e = chats.get(chatId);
  if (e === undefined) return false;
  busy = true;
  d.flash.textContent = '';
  updateChatHead(e);
  try {
    if (action !== 'accept' && action !== 'resume') await e.notifier?.stop();
    const v = await api.act(chatId, action, body);
    busy = false;
    e.transcript ??= new Transcript();
    mergeEvents(v.chat, v.events, false);
    announce(DONE[action]?.(e.summary.nickname) ?? '');
    if (action === 'leave' || action === 'transfer') {
      view = { kind: 'none' };
      prune();
    }
    renderAll();
    if (chatDom?.textarea !== undefined) chatDom.textarea.focus();
    else if (action === 'leave' || action === 'transfer') byId('main').focus();
    // Hold, close: no reply box any more; the focus stays in the chat (its first action, or the pane).
    else if (document.activeElement === null || document.activeElement === document.body) {
      (chatDom?.actions.querySelector<HTMLButtonElement>('button:not([disabled])') ?? byId('main')).focus();
    }
    return true;
  } catch (err) {
    busy = false;
    if (chatDom?.chatId === chatId) {
      updateChatHead(e);
      chatDom.flash.textContent = errorText(err);
    }
    // The chat may have moved meanwhile (taken by another agent, ended): the socket tells where.
    if (err instanceof ApiError && (err.code === 'CHAT_ALREADY_TAKEN' || err.code === 'CHAT_ENDED')) {
      void api.overview().then(
        (o) => {
          applyOverview(o);
          renderLists();
          renderMain();
        },
        () => undefined,
      );
    }
    return false;
  }
}

async function openTransfer(): Promise<void> {
  const d = chatDom;
  if (d === undefined) return;
  const dialog = byId<HTMLDialogElement>('transfer-dialog');
  const select = byId<HTMLSelectElement>('transfer-target');
  const err = byId('transfer-error');
  err.textContent = '';
  select.replaceChildren(h('option', { value: '' }, 'Back to the queue (any agent)'));
  dialog.showModal();
  select.focus();
  err.textContent = (await fillTransferTargets()) ?? '';
}

/** Loads of the transfer targets started; only the latest one fills the list. */
let targetLoads = 0;

/**
 * The agents to transfer to, with their presence and load as the server sees them now (`keep` stays
 * selected). Answers why the list could not be loaded, if it could not.
 */
async function fillTransferTargets(keep = ''): Promise<string | undefined> {
  const load = ++targetLoads;
  const select = byId<HTMLSelectElement>('transfer-target');
  try {
    const agents = await api.agents();
    // A later load (a refusal while the first load was under way) fills the list, once.
    if (load !== targetLoads) return undefined;
    select.replaceChildren(h('option', { value: '' }, 'Back to the queue (any agent)'));
    for (const a of agents) {
      if (a.agentId === me()) continue;
      const chats = `${a.activeChats}/${a.maxChats} chats`;
      select.append(h('option', { value: a.agentId }, `${a.name} (${a.agentId}) — ${a.online ? 'online' : 'offline'}, ${chats}`));
    }
    if ([...select.options].some((o) => o.value === keep)) select.value = keep;
    return undefined;
  } catch (e) {
    return load === targetLoads ? `The agent list could not be loaded: ${errorText(e)}` : undefined;
  }
}

async function submitTransfer(ev: Event): Promise<void> {
  ev.preventDefault();
  const dialog = byId<HTMLDialogElement>('transfer-dialog');
  const target = byId<HTMLSelectElement>('transfer-target').value;
  const ok = await act('transfer', target === '' ? {} : { toAgentId: target });
  if (ok) {
    dialog.close();
    return;
  }
  // Refused (the agent went offline, is full, ...): the list is reloaded, so that it shows why.
  const why = chatDom?.flash.textContent ?? 'The transfer failed.';
  const failed = await fillTransferTargets(target);
  byId('transfer-error').textContent = failed === undefined ? why : `${why} ${failed}`;
}

// ---------------------------------------------------------------------------------------------------
// Contact history

function showHistory(): void {
  const prev = view.kind === 'chat' ? chats.get(view.chatId) : undefined;
  if (prev !== undefined && chatDom?.textarea !== undefined) prev.draft = chatDom.textarea.value;
  void prev?.notifier?.stop();
  view = { kind: 'history' };
  prune();
  renderLists();
  renderMain();
  byId('main').focus();
  void loadHistory();
}

async function loadHistory(): Promise<void> {
  historyError = '';
  try {
    historyChats = await api.history(100);
  } catch (e) {
    historyError = errorText(e);
  }
  if (view.kind === 'history') renderMain();
}

function renderHistory(main: HTMLElement): void {
  const head = h(
    'header',
    { class: 'history-head' },
    h('h2', { id: 'history-title' }, 'Contact history'),
    h('button', { type: 'button', onclick: () => void loadHistory() }, 'Refresh'),
  );
  let body: Node;
  if (historyError !== '') body = h('p', { class: 'flash', role: 'alert' }, `The history could not be loaded: ${historyError}`);
  else if (historyChats === undefined) body = h('p', { class: 'empty' }, 'Loading…');
  else if (historyChats.length === 0) body = h('p', { class: 'empty' }, 'No finished or dormant chats yet.');
  else {
    const rows = historyChats.map((s) =>
      h(
        'tr',
        { 'data-chat-id': s.chatId },
        h('th', { scope: 'row' }, s.nickname),
        h('td', {}, s.subject === '' ? '—' : s.subject),
        h('td', {}, s.serviceName),
        h('td', {}, h('span', { class: `state state-${s.state}` }, stateText(s))),
        h('td', {}, dateTime(s.updatedAt)),
        h('td', {}, h('button', { type: 'button', 'aria-label': `Open the transcript with ${s.nickname}`, onclick: () => select(s.chatId, true, s) }, 'Open transcript')),
      ),
    );
    body = h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { class: 'history' },
        h('caption', { class: 'visually-hidden' }, 'Most recent ended and dormant chats, newest first'),
        h('thead', {}, h('tr', {}, ...['Customer', 'Subject', 'Service', 'State', 'Last activity'].map((t) => h('th', { scope: 'col' }, t)), h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')))),
        h('tbody', {}, ...rows),
      ),
    );
  }
  main.replaceChildren(h('section', { class: 'history-view', 'aria-labelledby': 'history-title' }, head, body));
}

// ---------------------------------------------------------------------------------------------------
// Status and announcements

function showStatus(s: SocketStatus): void {
  const el = byId('conn');
  el.className = `conn conn-${s}`;
  byId('conn-text').textContent = s === 'live' ? 'Live' : s === 'connecting' ? 'Connecting…' : 'Offline, reconnecting…';
}

let announceTimer: ReturnType<typeof setTimeout> | undefined;
function announce(text: string): void {
  if (text === '') return;
  const el = byId('announcer');
  el.textContent = '';
  if (announceTimer !== undefined) clearTimeout(announceTimer);
  announceTimer = setTimeout(() => {
    el.textContent = text;
  }, 50);
}

// ---------------------------------------------------------------------------------------------------
// Start

declare global {
  interface Window {
    /** For tests and support: drop the event stream as a network failure would. */
    __parleyDesk?: { dropSocket(downMs?: number): void; readonly live: boolean };
  }
}

function boot(): void {
  byId('signin-form').addEventListener('submit', (ev) => void onSignIn(ev));
  byId('signout').addEventListener('click', () => void signOut());
  byId('history-open').addEventListener('click', () => showHistory());
  byId('transfer-form').addEventListener('submit', (ev) => void submitTransfer(ev));
  byId('transfer-cancel').addEventListener('click', () => byId<HTMLDialogElement>('transfer-dialog').close());
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && view.kind === 'chat') {
      const e = chats.get(view.chatId);
      if (e !== undefined && e.unread > 0) {
        e.unread = 0;
        renderLists();
      }
    }
  });
  setInterval(tickWaits, 15_000);
  window.__parleyDesk = {
    dropSocket: (downMs = 0) => socket.drop(downMs),
    get live() {
      return socket.open;
    },
  };

  const saved = loadSession();
  if (saved === undefined) {
    showSignIn();
    return;
  }
  // The token may have expired or the server restarted: check it before showing the desk.
  api.token = saved.token;
  api
    .me()
    .then((a) => {
      saveSession(saved.token, a);
      enterDesk(saved.token, a);
    })
    .catch((e: unknown) => {
      if (e instanceof ApiError && e.status === 401) {
        clearSession();
        showSignIn('Your session has ended. Sign in again.');
      } else {
        enterDesk(saved.token, saved.agent);
      }
    });
}

boot();
